// Device memory lending over the CUDA driver, loaded with dlopen (device_lender.h).
#include "poolshimd/device_lender.h"

#include <cuda.h>
#include <dlfcn.h>

#include <cstring>

#include "poolshimd/log.h"

namespace poolshim::daemon {
namespace {

struct driver {
  CUresult (*init)(unsigned);
  CUresult (*device_get_count)(int*);
  CUresult (*device_get)(CUdevice*, int);
  CUresult (*device_get_uuid)(CUuuid*, CUdevice);
  CUresult (*device_get_attribute)(int*, CUdevice_attribute, CUdevice);
  CUresult (*primary_retain)(CUcontext*, CUdevice);
  CUresult (*ctx_set_current)(CUcontext);
  CUresult (*mem_create)(CUmemGenericAllocationHandle*, size_t, const CUmemAllocationProp*, unsigned long long);
  CUresult (*mem_export)(void*, CUmemGenericAllocationHandle, CUmemAllocationHandleType, unsigned long long);
  CUresult (*mem_release)(CUmemGenericAllocationHandle);
  CUresult (*mem_alloc)(CUdeviceptr*, size_t);
  CUresult (*mem_free)(CUdeviceptr);
  CUresult (*ipc_get_mem_handle)(CUipcMemHandle*, CUdeviceptr);
  CUresult (*event_create)(CUevent*, unsigned);
  CUresult (*event_destroy)(CUevent);
  CUresult (*ipc_get_event_handle)(CUipcEventHandle*, CUevent);
};
driver g_cu{};

template <class F>
bool sym(void* lib, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(lib, name));
  return *out != nullptr;
}

std::string cu_error(const char* what, CUresult r) {
  return std::string(what) + " failed (CUresult " + std::to_string(r) + ")";
}

}  // namespace

bool device_lender::load(std::string* why) {
  if (loaded_) return true;
  if (failed_) {
    *why = "the CUDA driver could not be loaded earlier";
    return false;
  }
  failed_ = true;
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    *why = std::string("dlopen libcuda.so.1: ") + dlerror();
    return false;
  }
  if (!sym(lib, "cuInit", &g_cu.init) || !sym(lib, "cuDeviceGetCount", &g_cu.device_get_count) ||
      !sym(lib, "cuDeviceGet", &g_cu.device_get) || !sym(lib, "cuDeviceGetUuid_v2", &g_cu.device_get_uuid) ||
      !sym(lib, "cuDeviceGetAttribute", &g_cu.device_get_attribute) ||
      !sym(lib, "cuDevicePrimaryCtxRetain", &g_cu.primary_retain) ||
      !sym(lib, "cuCtxSetCurrent", &g_cu.ctx_set_current) || !sym(lib, "cuMemCreate", &g_cu.mem_create) ||
      !sym(lib, "cuMemExportToShareableHandle", &g_cu.mem_export) || !sym(lib, "cuMemRelease", &g_cu.mem_release) ||
      !sym(lib, "cuMemAlloc_v2", &g_cu.mem_alloc) || !sym(lib, "cuMemFree_v2", &g_cu.mem_free) ||
      !sym(lib, "cuIpcGetMemHandle", &g_cu.ipc_get_mem_handle) || !sym(lib, "cuEventCreate", &g_cu.event_create) ||
      !sym(lib, "cuEventDestroy_v2", &g_cu.event_destroy) ||
      !sym(lib, "cuIpcGetEventHandle", &g_cu.ipc_get_event_handle)) {
    *why = "libcuda.so.1 lacks the VMM or IPC entry points";
    return false;
  }
  if (CUresult r = g_cu.init(0); r != CUDA_SUCCESS) {
    *why = cu_error("cuInit", r);
    return false;
  }
  int n = 0;
  if (CUresult r = g_cu.device_get_count(&n); r != CUDA_SUCCESS) {
    *why = cu_error("cuDeviceGetCount", r);
    return false;
  }
  for (int i = 0; i < n && device_count_ < 16; ++i) {
    CUdevice d = 0;
    CUuuid u{};
    if (g_cu.device_get(&d, i) != CUDA_SUCCESS || g_cu.device_get_uuid(&u, d) != CUDA_SUCCESS) continue;
    device_state& s = devices_[device_count_++];
    std::memcpy(s.uuid, u.bytes, sizeof s.uuid);
    s.ordinal = d;
    s.lent = 0;
    int rdma = 0;
    s.rdma = g_cu.device_get_attribute(&rdma, CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED, d) ==
                 CUDA_SUCCESS &&
             rdma != 0;
  }
  loaded_ = true;
  failed_ = false;
  return true;
}

// The device's primary context current on this (the daemon's only CUDA-calling) thread; retained
// once per device for the daemon's life.
bool device_lender::make_current(int index, std::string* why) {
  device_state& dev = devices_[index];
  if (dev.ctx == nullptr) {
    CUcontext ctx = nullptr;
    if (CUresult r = g_cu.primary_retain(&ctx, dev.ordinal); r != CUDA_SUCCESS) {
      *why = cu_error("cuDevicePrimaryCtxRetain", r);
      return false;
    }
    dev.ctx = ctx;
  }
  if (CUresult r = g_cu.ctx_set_current(static_cast<CUcontext>(dev.ctx)); r != CUDA_SUCCESS) {
    *why = cu_error("cuCtxSetCurrent", r);
    return false;
  }
  return true;
}

bool device_lender::lend(const unsigned char (&uuid)[16], std::uint64_t bytes, std::uint64_t* handle, int* device,
                         int* fd, std::string* why) {
  if (!enabled()) {
    *why = "device lending is off (poolshimd --device-limit)";
    return false;
  }
  if (!load(why)) return false;
  device_state* dev = nullptr;
  for (int i = 0; i < device_count_; ++i)
    if (std::memcmp(devices_[i].uuid, uuid, sizeof uuid) == 0) {
      dev = &devices_[i];
      *device = i;
    }
  if (dev == nullptr) {
    *why = "no device with that UUID here";
    return false;
  }
  if (dev->lent + bytes > limit_) {
    *why = "the device limit would be exceeded";
    return false;
  }
  if (!make_current(*device, why)) return false;
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = dev->ordinal;
  prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  // RDMA-capable where the device supports it, so NICs can register what clients pool.
  prop.allocFlags.gpuDirectRDMACapable = dev->rdma ? 1 : 0;
  CUmemGenericAllocationHandle h = 0;
  if (CUresult r = g_cu.mem_create(&h, bytes, &prop, 0); r != CUDA_SUCCESS) {
    *why = cu_error("cuMemCreate", r);
    return false;
  }
  int exported = -1;
  if (CUresult r = g_cu.mem_export(&exported, h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0); r != CUDA_SUCCESS) {
    g_cu.mem_release(h);
    *why = cu_error("cuMemExportToShareableHandle", r);
    return false;
  }
  dev->lent += bytes;
  lent_ += bytes;
  *handle = h;
  *fd = exported;
  return true;
}

void device_lender::give_back(std::uint64_t handle, std::uint64_t bytes, int device) noexcept {
  if (!loaded_ || device < 0 || device >= device_count_) return;
  (void)g_cu.mem_release(static_cast<CUmemGenericAllocationHandle>(handle));  // freed once the client let go too
  lent_ -= bytes;
  devices_[device].lent -= bytes;
}

}  // namespace poolshim::daemon

namespace poolshim::daemon {

device_lender::result device_lender::allocate_named(const unsigned char (&uuid)[16], std::uint64_t bytes,
                                                    named_allocation* out, std::string* why) {
  if (!load(why)) return result::no_device;
  int index = -1;
  for (int i = 0; i < device_count_; ++i)
    if (std::memcmp(devices_[i].uuid, uuid, sizeof uuid) == 0) index = i;
  if (index < 0) {
    *why = "no device with that UUID here";
    return result::no_device;
  }
  device_state& dev = devices_[index];
  if (limit_ != 0 && dev.lent + bytes > limit_) {
    *why = "the device limit would be exceeded";
    return result::no_memory;
  }
  if (!make_current(index, why)) return result::failed;
  CUdeviceptr p = 0;
  if (CUresult r = g_cu.mem_alloc(&p, bytes); r != CUDA_SUCCESS) {
    *why = cu_error("cuMemAlloc", r);
    return r == CUDA_ERROR_OUT_OF_MEMORY ? result::no_memory : result::failed;
  }
  CUevent ev = nullptr;
  CUipcMemHandle mh{};
  CUipcEventHandle eh{};
  CUresult r = g_cu.ipc_get_mem_handle(&mh, p);
  const char* step = "cuIpcGetMemHandle";
  if (r == CUDA_SUCCESS) {
    step = "cuEventCreate";
    r = g_cu.event_create(&ev, CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS);
  }
  if (r == CUDA_SUCCESS) {
    step = "cuIpcGetEventHandle";
    r = g_cu.ipc_get_event_handle(&eh, ev);
  }
  if (r != CUDA_SUCCESS) {
    if (ev != nullptr) g_cu.event_destroy(ev);
    g_cu.mem_free(p);
    *why = cu_error(step, r);
    return result::failed;
  }
  static_assert(sizeof mh == sizeof out->mem_handle && sizeof eh == sizeof out->event_handle);
  out->ptr = p;
  out->event = reinterpret_cast<std::uint64_t>(ev);
  out->bytes = bytes;
  out->device = index;
  std::memcpy(out->mem_handle, &mh, sizeof mh);
  std::memcpy(out->event_handle, &eh, sizeof eh);
  dev.lent += bytes;
  lent_ += bytes;
  return result::ok;
}

// Called once no process holds the buffer (every opener closed its mapping or exited): freeing
// before the importers close is undefined (CUDA_FACTS section 8).
void device_lender::free_named(const named_allocation& a) noexcept {
  if (!loaded_ || a.device < 0 || a.device >= device_count_) return;
  std::string why;
  if (make_current(a.device, &why)) {
    (void)g_cu.event_destroy(reinterpret_cast<CUevent>(a.event));
    (void)g_cu.mem_free(static_cast<CUdeviceptr>(a.ptr));
  } else {
    log::warn("poolshimd: a device buffer of {} bytes could not be freed: {}", a.bytes, why);
  }
  lent_ -= a.bytes;  // counted off either way: the limit must not stay used up for good
  devices_[a.device].lent -= a.bytes;
}

bool device_lender::device_uuid(int index, unsigned char (&uuid)[16], std::string* why) {
  if (!load(why)) return false;
  if (index < 0 || index >= device_count_) {
    *why = "the daemon sees " + std::to_string(device_count_) + " device" + (device_count_ == 1 ? "" : "s") +
           ", not a device " + std::to_string(index);
    return false;
  }
  std::memcpy(uuid, devices_[index].uuid, sizeof uuid);
  return true;
}

}  // namespace poolshim::daemon

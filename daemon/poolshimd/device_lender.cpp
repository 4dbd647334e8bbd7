// Device memory lending over the CUDA driver, loaded with dlopen (device_lender.h).
#include "poolshimd/device_lender.h"

#include <cuda.h>
#include <dlfcn.h>

#include <cstring>

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
      !sym(lib, "cuMemExportToShareableHandle", &g_cu.mem_export) || !sym(lib, "cuMemRelease", &g_cu.mem_release)) {
    *why = "libcuda.so.1 lacks the VMM entry points";
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
  CUcontext ctx = nullptr;
  if (CUresult r = g_cu.primary_retain(&ctx, dev->ordinal);
      r != CUDA_SUCCESS || g_cu.ctx_set_current(ctx) != CUDA_SUCCESS) {
    *why = cu_error("cuDevicePrimaryCtxRetain", r);
    return false;
  }
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

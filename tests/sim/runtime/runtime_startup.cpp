// The start-up and launch entry points nvcc's generated host code calls (crt/host_runtime.h):
// fat-binary, kernel and variable registration, the <<<>>> configuration stack and launches.
// Kernels cannot run on a simulator: launching a registered kernel fails as a GPU without a
// matching image does (cudaErrorNoKernelImageForDevice, 209), anything else as an unknown
// function (cudaErrorInvalidDeviceFunction, 98).
#include <algorithm>
#include <atomic>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "runtime_internal.h"

namespace poolshim::sim_rt {
namespace {

struct managed_var {
  void** host_pointer_slot;  // nvcc's host shadow: a pointer the program dereferences
  size_t size;
};

// The handle __cudaRegisterFatBinary returns points at `fatbin`, the first member, so that it is a
// genuine void** (generated code only stores it, but it must not point at garbage).
struct module {
  const void* fatbin;
  std::vector<managed_var> managed;
  bool managed_ready = false;
  CUlibrary library = nullptr;  // cuLibraryLoadData's handle, once loaded
  bool load_tried = false;      // loaded, or the driver refused it (then launches still fail 209)
};

struct kernel_entry {
  const void* host_function;
  module* owner;
};

// Registration runs in static constructors and __cudaUnregisterFatBinary from atexit, so the
// registry is never destroyed. Registration does not touch the driver: cudart defers that to its
// start-up (or, for a fat binary registered later, to the next call), where each fat binary becomes
// a driver library (cuLibraryLoadData), unloaded at exit or when it is unregistered.
struct registry {
  std::mutex mutex;
  std::vector<module*> modules;                            // in registration order
  std::unordered_map<const void*, kernel_entry*> kernels;  // by host stub address
  std::unordered_set<const void*> kernel_handles;          // what __cudaGetKernel handed out
};
registry& kernels() noexcept {
  alignas(registry) static unsigned char storage[sizeof(registry)];
  static registry* r = new (storage) registry;
  return *r;
}

module* as_module(void** handle) noexcept { return reinterpret_cast<module*>(handle); }

bool registered(const registry& reg, const module* m) noexcept {
  return std::find(reg.modules.begin(), reg.modules.end(), m) != reg.modules.end();
}

// Set when a fat binary is registered; load_registered_fat_binaries clears it.
std::atomic<bool> g_fat_binaries_pending{false};
// Set by unload_fat_binaries (process exit): nothing is loaded after it.
bool g_fat_binaries_unloaded = false;  // guarded by the registry's mutex

// What cuLibraryLoadData gets: the fat binary itself. nvcc hands __cudaRegisterFatBinary its
// wrapper (fatbinary_section.h's __fatBinC_Wrapper_t: magic 0x466243B1, version, data, ...), whose
// `data` is the image; anything else is passed as it is.
const void* fat_binary_image(const void* registered_pointer) noexcept {
  struct wrapper {
    int magic;
    int version;
    const unsigned long long* data;
    void* filename_or_fatbins;
  };
  constexpr int fatbinc_magic = 0x466243B1;
  const auto* w = static_cast<const wrapper*>(registered_pointer);
  if (w != nullptr && w->magic == fatbinc_magic && w->data != nullptr) return w->data;
  return registered_pointer;
}

struct launch_config {
  dim3 grid;
  dim3 block;
  size_t shared_mem;
  cudaStream_t stream;
};
thread_local std::vector<launch_config> t_launch_configs;

// Managed variables get their memory on first host access (nvcc calls __cudaInitModule then). The
// initial value lives in the device image, which a simulator cannot read: the memory starts zeroed.
cudaError_t init_managed_vars(module* m) {
  registry& reg = kernels();
  std::lock_guard lock(reg.mutex);
  if (!registered(reg, m)) return cudaErrorInvalidResourceHandle;
  if (m->managed_ready) return cudaSuccess;
  const driver_table& d = driver();
  for (managed_var& v : m->managed) {
    CUdeviceptr p = 0;
    CUresult r = d.cuMemAllocManaged(&p, v.size, CU_MEM_ATTACH_GLOBAL);
    if (r == CUDA_SUCCESS) r = d.cuMemsetD8(p, 0, v.size);
    if (r != CUDA_SUCCESS) return from_driver(r);
    *v.host_pointer_slot = from_dptr(p);
  }
  m->managed_ready = true;
  return from_driver(d.cuCtxSynchronize(nullptr));  // the memset must land before the host reads
}

template <default_stream S>
cudaError_t launch_kernel_handle(cudaKernel_t kernel, dim3, dim3, void**, size_t, cudaStream_t) {
  return api(needs::context, [&]() -> cudaError_t {
    registry& reg = kernels();
    std::lock_guard lock(reg.mutex);
    return reg.kernel_handles.count(kernel) != 0 ? cudaErrorNoKernelImageForDevice : cudaErrorInvalidDeviceFunction;
  });
}

template <default_stream S>
cudaError_t launch_kernel_function(const void* func, dim3, dim3, void**, size_t, cudaStream_t) {
  return api(needs::context, [&]() -> cudaError_t {
    registry& reg = kernels();
    std::lock_guard lock(reg.mutex);
    return reg.kernels.count(func) != 0 ? cudaErrorNoKernelImageForDevice : cudaErrorInvalidDeviceFunction;
  });
}

}  // namespace

// A fat binary the driver refuses stays registered: its kernels launch as 209, as before.
void load_registered_fat_binaries() noexcept {
  // A load first: this runs at the start of every runtime call, from any number of threads.
  if (!g_fat_binaries_pending.load(std::memory_order_acquire)) return;
  if (!g_fat_binaries_pending.exchange(false, std::memory_order_acq_rel)) return;
  const driver_table& d = driver();
  registry& reg = kernels();
  std::lock_guard lock(reg.mutex);
  if (g_fat_binaries_unloaded) return;
  for (module* m : reg.modules) {
    if (m->load_tried) continue;
    m->load_tried = true;
    CUlibrary library = nullptr;
    if (d.cuLibraryLoadData(&library, fat_binary_image(m->fatbin), nullptr, nullptr, 0, nullptr, nullptr, 0) ==
        CUDA_SUCCESS)
      m->library = library;
  }
}

void unload_fat_binaries() noexcept {
  const driver_table& d = driver();
  registry& reg = kernels();
  std::lock_guard lock(reg.mutex);
  g_fat_binaries_unloaded = true;
  for (module* m : reg.modules) {
    if (m->library == nullptr) continue;
    (void)d.cuLibraryUnload(m->library);
    m->library = nullptr;
  }
}

}  // namespace poolshim::sim_rt

using namespace poolshim::sim_rt;

POOLSHIM_RT_API void** CUDARTAPI __cudaRegisterFatBinary(void* fatCubin) {
  try {
    module* m = new module{fatCubin, {}, false, nullptr, false};
    registry& reg = kernels();
    std::lock_guard lock(reg.mutex);
    reg.modules.push_back(m);
    g_fat_binaries_pending.store(true, std::memory_order_release);
    return reinterpret_cast<void**>(m);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

POOLSHIM_RT_API void CUDARTAPI __cudaRegisterFatBinaryEnd(void**) {}

// A library still loaded (a dlclose'd module's fat binary, or any unregistered before the exit
// handler ran) is unloaded here.
POOLSHIM_RT_API void CUDARTAPI __cudaUnregisterFatBinary(void** fatCubinHandle) {
  module* m = as_module(fatCubinHandle);
  registry& reg = kernels();
  std::lock_guard lock(reg.mutex);
  auto pos = std::find(reg.modules.begin(), reg.modules.end(), m);
  if (pos == reg.modules.end()) return;
  reg.modules.erase(pos);
  // Not in a forked child: the library is the parent's (and the driver refuses the child anyway).
  if (m->library != nullptr && in_initialising_process()) (void)driver().cuLibraryUnload(m->library);
  for (auto it = reg.kernels.begin(); it != reg.kernels.end();) {
    if (it->second->owner == m) {
      reg.kernel_handles.erase(it->second);
      delete it->second;
      it = reg.kernels.erase(it);
    } else {
      ++it;
    }
  }
  delete m;  // managed memory is left to process exit, as the driver state is by then
}

POOLSHIM_RT_API void CUDARTAPI __cudaRegisterFunction(void** fatCubinHandle, const char* hostFun, char*, const char*,
                                                      int, uint3*, uint3*, dim3*, dim3*, int*) {
  try {
    registry& reg = kernels();
    std::lock_guard lock(reg.mutex);
    kernel_entry*& slot = reg.kernels[hostFun];
    if (slot != nullptr) {
      reg.kernel_handles.erase(slot);
      delete slot;
    }
    slot = new kernel_entry{hostFun, as_module(fatCubinHandle)};
  } catch (const std::bad_alloc&) {
    // An unregistered kernel launches as cudaErrorInvalidDeviceFunction, which is fair here.
  }
}

// No symbol API (cudaMemcpyToSymbol and friends) is implemented, so __device__ variables need no
// record.
POOLSHIM_RT_API void CUDARTAPI __cudaRegisterVar(void**, char*, char*, const char*, int, size_t, int, int) {}

POOLSHIM_RT_API void CUDARTAPI __cudaRegisterManagedVar(void** fatCubinHandle, void** hostVarPtrAddress, char*,
                                                        const char*, int, size_t size, int, int) {
  try {
    registry& reg = kernels();
    std::lock_guard lock(reg.mutex);
    as_module(fatCubinHandle)->managed.push_back({hostVarPtrAddress, size});
  } catch (const std::bad_alloc&) {
  }
}

// Returns nvcc's "managed runtime initialised" flag: nonzero once the managed variables have memory.
POOLSHIM_RT_API char CUDARTAPI __cudaInitModule(void** fatCubinHandle) {
  cudaError_t e = api(needs::context, [&]() -> cudaError_t { return init_managed_vars(as_module(fatCubinHandle)); });
  return e == cudaSuccess ? 1 : 0;
}

// `k<<<g, b, s, st>>>(...)` is `__cudaPushCallConfiguration(g, b, s, st) ? (void)0 : stub(...)`, and
// the stub pops the configuration: 0 means "go ahead".
POOLSHIM_RT_API unsigned CUDARTAPI __cudaPushCallConfiguration(dim3 gridDim, dim3 blockDim, size_t sharedMem,
                                                               struct CUstream_st* stream) {
  try {
    t_launch_configs.push_back({gridDim, blockDim, sharedMem, stream});
    return 0;
  } catch (const std::bad_alloc&) {
    leave(cudaErrorMemoryAllocation);
    return 1;
  }
}

POOLSHIM_RT_API cudaError_t CUDARTAPI __cudaPopCallConfiguration(dim3* gridDim, dim3* blockDim, size_t* sharedMem,
                                                                 void* stream) {
  if (t_launch_configs.empty()) return leave(cudaErrorMissingConfiguration);
  const launch_config c = t_launch_configs.back();
  t_launch_configs.pop_back();
  *gridDim = c.grid;
  *blockDim = c.block;
  *sharedMem = c.shared_mem;
  *static_cast<cudaStream_t*>(stream) = c.stream;
  return cudaSuccess;
}

// The generated stub resolves its kernel handle once, then launches through it.
POOLSHIM_RT_API cudaError_t CUDARTAPI __cudaGetKernel(cudaKernel_t* kernel, const void* func) {
  return api(needs::context, [&]() -> cudaError_t {
    if (kernel == nullptr) return cudaErrorInvalidValue;
    registry& reg = kernels();
    std::lock_guard lock(reg.mutex);
    auto it = reg.kernels.find(func);
    if (it == reg.kernels.end()) return cudaErrorInvalidDeviceFunction;
    reg.kernel_handles.insert(it->second);
    *kernel = reinterpret_cast<cudaKernel_t>(it->second);
    return cudaSuccess;
  });
}

POOLSHIM_RT_STREAM_PAIR(__cudaLaunchKernel, _ptsz, launch_kernel_handle,
                        (cudaKernel_t kernel, dim3 gridDim, dim3 blockDim, void** args, size_t sharedMem,
                         cudaStream_t stream),
                        (kernel, gridDim, blockDim, args, sharedMem, stream))

POOLSHIM_RT_STREAM_PAIR(cudaLaunchKernel, _ptsz, launch_kernel_function,
                        (const void* func, dim3 gridDim, dim3 blockDim, void** args, size_t sharedMem,
                         cudaStream_t stream),
                        (func, gridDim, blockDim, args, sharedMem, stream))

// The core of the simulator's libcudart: reaching the driver the way NVIDIA's cudart does (dlopen
// libcuda.so.1, dlsym cuGetProcAddress_v2, every other entry point through it, once, on first
// use), the per-thread last error, the process-wide sticky error, and the per-thread current
// device with its primary context (cudaSetDevice, cudaGetDevice, cudaDeviceReset).
#include <dlfcn.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <mutex>
#include <vector>

#include "runtime_internal.h"

namespace poolshim::sim_rt {
namespace {

struct driver_state {
  driver_table legacy;
  driver_table per_thread;
  cudaError_t load_error = cudaErrorInsufficientDriver;  // libcuda.so.1 and its entry points
  cudaError_t init_error = cudaErrorInsufficientDriver;  // cuInit(0)
};

driver_state g_driver;  // trivially destructible: usable from atexit handlers
std::once_flag g_driver_once;

// A fixture's diagnostics go straight to fd 2: this may run inside a program's static constructors.
void say(const char* a, const char* b) noexcept {
  const char prefix[] = "poolshim sim libcudart: ";
  ssize_t ignored = write(2, prefix, sizeof prefix - 1);
  ignored = write(2, a, std::strlen(a));
  ignored = write(2, b, std::strlen(b));
  ignored = write(2, "\n", 1);
  (void)ignored;
}

bool fetch(PFN_cuGetProcAddress_v12000 lookup, const char* name, int version, void** slot, cuuint64_t flags) noexcept {
  CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
  CUresult r = lookup(name, slot, version, flags, &status);
  if (r != CUDA_SUCCESS || status != CU_GET_PROC_ADDRESS_SUCCESS || *slot == nullptr) {
    *slot = nullptr;
    say("libcuda.so.1 does not provide ", name);
    return false;
  }
  return true;
}

void load_driver() noexcept {
  driver_state& s = g_driver;
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return;  // no driver: cudaErrorInsufficientDriver, as cudart reports it
  auto lookup = reinterpret_cast<PFN_cuGetProcAddress_v12000>(dlsym(lib, "cuGetProcAddress_v2"));
  if (lookup == nullptr) return;
  s.legacy.get_proc_address = lookup;
  s.per_thread.get_proc_address = lookup;

  bool complete = true;
#define POOLSHIM_RT_FETCH(name, pfn, version, has_per_thread)                                                       \
  complete &= fetch(lookup, #name, version, reinterpret_cast<void**>(&s.legacy.name), CU_GET_PROC_ADDRESS_DEFAULT); \
  if (has_per_thread) {                                                                                             \
    complete &= fetch(lookup, #name, version, reinterpret_cast<void**>(&s.per_thread.name),                         \
                      CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM);                                               \
  } else {                                                                                                          \
    s.per_thread.name = s.legacy.name;                                                                              \
  }
  POOLSHIM_RT_DRIVER_ENTRIES(POOLSHIM_RT_FETCH)
#undef POOLSHIM_RT_FETCH
  // NVIDIA's cudart 13.0, run here on a libcuda.so.1 that lacks entry points it looks up, answers
  // every call with cudaErrorCallRequiresNewerDriver; without libcuda.so.1 at all, with
  // cudaErrorInsufficientDriver. This runtime does the same.
  s.load_error = complete ? cudaSuccess : cudaErrorCallRequiresNewerDriver;
  if (!complete) return;
  s.init_error = from_driver(s.legacy.cuInit(0));
}

driver_state& loaded_driver() noexcept {
  std::call_once(g_driver_once, load_driver);
  return g_driver;
}

// First sticky error of the process (0 = none). Once set, every runtime call returns it.
std::atomic<int> g_sticky{0};

bool is_sticky(cudaError_t e) noexcept {
  switch (e) {
    case cudaErrorIllegalAddress:       // 700
    case cudaErrorLaunchTimeout:        // 702
    case cudaErrorAssert:               // 710
    case cudaErrorHardwareStackError:   // 714
    case cudaErrorIllegalInstruction:   // 715
    case cudaErrorMisalignedAddress:    // 716
    case cudaErrorInvalidAddressSpace:  // 717
    case cudaErrorInvalidPc:            // 718
    case cudaErrorLaunchFailure:        // 719
    case cudaErrorTensorMemoryLeak:     // 721
    case cudaErrorContained:            // 226
    case cudaErrorExternalDevice:       // 911
      return true;
    default:
      return false;
  }
}

struct thread_state {
  cudaError_t last_error = cudaSuccess;
  int device = 0;                 // chosen by cudaSetDevice; 0 until then
  CUcontext bound_ctx = nullptr;  // the context ensure_context last accepted on this thread ...
  std::uint64_t bound_epoch = 0;  // ... and the reset epoch it was accepted in
};
thread_local thread_state t_state;

// Primary contexts this runtime retained, one slot per device ordinal. A reset releases the slot;
// handles from before a reset are remembered so that a thread still holding one current is
// rebound to the fresh primary context instead of using a destroyed one.
constexpr int max_devices = 64;
struct primary_slot {
  CUcontext live = nullptr;
  bool retained = false;
  std::vector<CUcontext> retired;
};
struct primary_registry {
  std::mutex mutex;
  std::array<primary_slot, max_devices> slots;
};
// Built in static storage and never destroyed: atexit handlers and late threads still use it.
primary_registry& primaries() noexcept {
  alignas(primary_registry) static unsigned char storage[sizeof(primary_registry)];
  static primary_registry* r = new (storage) primary_registry;
  return *r;
}
std::atomic<std::uint64_t> g_reset_epoch{1};

bool is_stale_primary(CUcontext ctx) noexcept {
  primary_registry& reg = primaries();
  std::lock_guard lock(reg.mutex);
  for (const primary_slot& s : reg.slots) {
    if (ctx == s.live) return !s.retained;
    for (CUcontext old : s.retired)
      if (ctx == old) return true;
  }
  return false;
}

// A context the program made current through the driver API is used as it is, as cudart does;
// otherwise the current device's primary context is retained (once) and made current.
CUresult ensure_context() noexcept {
  const driver_table& d = g_driver.legacy;
  thread_state& t = t_state;
  CUcontext current = nullptr;
  CUresult r = d.cuCtxGetCurrent(&current);
  if (r != CUDA_SUCCESS) return r;
  const std::uint64_t epoch = g_reset_epoch.load(std::memory_order_acquire);
  if (current != nullptr && current == t.bound_ctx && t.bound_epoch == epoch) return CUDA_SUCCESS;
  if (current == nullptr || is_stale_primary(current)) {
    r = primary_context(t.device, &current);
    if (r != CUDA_SUCCESS) return r;
    r = d.cuCtxSetCurrent(current);
    if (r != CUDA_SUCCESS) return r;
  }
  t.bound_ctx = current;
  t.bound_epoch = epoch;
  return CUDA_SUCCESS;
}

}  // namespace

const driver_table& driver(default_stream s) noexcept {
  return s == default_stream::per_thread ? g_driver.per_thread : g_driver.legacy;
}

// The driver and runtime enums give the same number to every condition they share (CUDA 13.0
// headers, checked code by code), so the mapping is the identity for each code the runtime also
// defines. The driver's codes without a runtime twin (202 CONTEXT_ALREADY_CURRENT, 916
// KEY_ROTATION, and any newer one) become cudaErrorUnknown.
cudaError_t from_driver(CUresult r) noexcept {
  const int code = static_cast<int>(r);
  return error_name(code) != nullptr ? static_cast<cudaError_t>(code) : cudaErrorUnknown;
}

cudaError_t enter(needs n) noexcept {
  if (int sticky = g_sticky.load(std::memory_order_acquire); sticky != 0) return static_cast<cudaError_t>(sticky);
  if (n == needs::nothing) return cudaSuccess;
  driver_state& s = loaded_driver();
  if (s.load_error != cudaSuccess) return s.load_error;
  if (s.init_error != cudaSuccess) return s.init_error;
  if (n == needs::context) return from_driver(ensure_context());
  return cudaSuccess;
}

cudaError_t leave(cudaError_t e) noexcept {
  if (e != cudaSuccess) {
    if (is_sticky(e)) {
      int none = 0;
      g_sticky.compare_exchange_strong(none, static_cast<int>(e), std::memory_order_acq_rel);
    }
    t_state.last_error = e;
  }
  return e;
}

cudaError_t driver_load_error() noexcept { return loaded_driver().load_error; }

int current_device() noexcept {
  const driver_table& d = g_driver.legacy;
  CUcontext current = nullptr;
  if (d.cuCtxGetCurrent(&current) == CUDA_SUCCESS && current != nullptr && !is_stale_primary(current)) {
    CUdevice dev = 0;
    // CUdevice is the device ordinal in every driver (cuDeviceGet(&d, i) gives i).
    if (d.cuCtxGetDevice(&dev, nullptr) == CUDA_SUCCESS) return static_cast<int>(dev);
  }
  return t_state.device;
}

CUresult primary_context(int device, CUcontext* ctx) noexcept {
  if (device < 0 || device >= max_devices) return CUDA_ERROR_INVALID_DEVICE;
  const driver_table& d = g_driver.legacy;
  primary_registry& reg = primaries();
  std::lock_guard lock(reg.mutex);
  primary_slot& slot = reg.slots[static_cast<std::size_t>(device)];
  if (!slot.retained) {
    CUdevice dev = 0;
    CUresult r = d.cuDeviceGet(&dev, device);
    if (r != CUDA_SUCCESS) return r;
    CUcontext fresh = nullptr;
    r = d.cuDevicePrimaryCtxRetain(&fresh, dev);
    if (r != CUDA_SUCCESS) return r;
    if (slot.live != nullptr && slot.live != fresh) slot.retired.push_back(slot.live);
    slot.live = fresh;
    slot.retained = true;
  }
  *ctx = slot.live;
  return CUDA_SUCCESS;
}

}  // namespace poolshim::sim_rt

using namespace poolshim::sim_rt;

// The last error is per thread; a sticky error outlives every attempt to clear it.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaGetLastError(void) {
  if (int sticky = g_sticky.load(std::memory_order_acquire); sticky != 0) return static_cast<cudaError_t>(sticky);
  cudaError_t e = t_state.last_error;
  t_state.last_error = cudaSuccess;
  return e;
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaPeekAtLastError(void) {
  if (int sticky = g_sticky.load(std::memory_order_acquire); sticky != 0) return static_cast<cudaError_t>(sticky);
  return t_state.last_error;
}

// Since CUDA 12 cudaSetDevice initialises the device's primary context at once.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaSetDevice(int device) {
  return api(needs::driver, [&]() -> cudaError_t {
    const driver_table& d = driver();
    int count = 0;
    CUresult r = d.cuDeviceGetCount(&count);
    if (r != CUDA_SUCCESS) return from_driver(r);
    if (device < 0 || device >= count) return cudaErrorInvalidDevice;
    CUcontext ctx = nullptr;
    r = primary_context(device, &ctx);
    if (r == CUDA_SUCCESS) r = d.cuCtxSetCurrent(ctx);
    if (r != CUDA_SUCCESS) return from_driver(r);
    t_state.device = device;
    t_state.bound_ctx = ctx;
    t_state.bound_epoch = g_reset_epoch.load(std::memory_order_acquire);
    return cudaSuccess;
  });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaGetDevice(int* device) {
  return api(needs::driver, [&]() -> cudaError_t {
    if (device == nullptr) return cudaErrorInvalidValue;
    *device = current_device();
    return cudaSuccess;
  });
}

// cuDevicePrimaryCtxReset_v2 destroys the context's state but, per cuda.h, leaves our retain in
// place, so the retain is released here too (best effort: the state is gone either way); the next
// call that needs a context retains afresh.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaDeviceReset(void) {
  return api(needs::driver, [&]() -> cudaError_t {
    const driver_table& d = driver();
    const int ordinal = current_device();
    if (ordinal < 0 || ordinal >= max_devices) return cudaErrorInvalidDevice;
    CUdevice dev = 0;
    CUresult r = d.cuDeviceGet(&dev, ordinal);
    if (r != CUDA_SUCCESS) return from_driver(r);
    r = d.cuDevicePrimaryCtxReset(dev);
    if (r != CUDA_SUCCESS) return from_driver(r);
    CUcontext reset_ctx = nullptr;
    {
      primary_registry& reg = primaries();
      std::lock_guard lock(reg.mutex);
      primary_slot& slot = reg.slots[static_cast<std::size_t>(ordinal)];
      if (slot.retained) {
        (void)d.cuDevicePrimaryCtxRelease(dev);
        slot.retained = false;
      }
      reset_ctx = slot.live;
      g_reset_epoch.fetch_add(1, std::memory_order_acq_rel);
    }
    CUcontext current = nullptr;
    if (reset_ctx != nullptr && d.cuCtxGetCurrent(&current) == CUDA_SUCCESS && current == reset_ctx)
      d.cuCtxSetCurrent(nullptr);
    t_state.bound_ctx = nullptr;
    return cudaSuccess;
  });
}

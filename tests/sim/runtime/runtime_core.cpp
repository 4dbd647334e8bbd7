// The core of the simulator's libcudart: reaching the driver the way NVIDIA's cudart 13.0 does
// (dlopen libcuda.so.1, dlsym cuGetProcAddress_v2, then exactly cudart 13.0's 440 lookups through
// it, once, on first use), its start-up (cuInit, device enumeration, fat binaries) and its exit
// (libraries unloaded, primary contexts released), the per-thread last error, the process-wide
// sticky error, and the per-thread current device with its primary context (cudaSetDevice,
// cudaGetDevice, cudaDeviceReset).
#include <dlfcn.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <type_traits>
#include <vector>

#include "runtime_internal.h"

namespace poolshim::sim_rt {
namespace {

// Every entry point the runtime uses is one of the record's lookups: a (name, version, flags) that
// NVIDIA's cudart 13.0 never asks for does not compile.
#define POOLSHIM_RT_IN_RECORD(name, pfn, version, per_thread_version)                                                 \
  static_assert(lookup_index(#name, version, CU_GET_PROC_ADDRESS_DEFAULT) >= 0,                                       \
                "cudart 13.0 never looks up " #name " at " #version " (tests/sim/fixtures/cudart-13.0-lookups.tsv)"); \
  static_assert(per_thread_version == 0 ||                                                                            \
                    lookup_index(#name, per_thread_version, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) >= 0,      \
                "cudart 13.0 never looks up " #name " per-thread at " #per_thread_version);
POOLSHIM_RT_DRIVER_ENTRIES(POOLSHIM_RT_IN_RECORD)
#undef POOLSHIM_RT_IN_RECORD

struct driver_state {
  driver_table legacy;
  driver_table per_thread;
  std::array<void*, cudart_lookup_count> answers{};      // each lookup's answer (nullptr: none)
  cudaError_t load_error = cudaErrorInsufficientDriver;  // libcuda.so.1 and its entry points
  cudaError_t init_error = cudaErrorInsufficientDriver;  // cuInit(0) and the start-up enumeration
};

driver_state g_driver;  // trivially destructible: usable from atexit handlers
std::once_flag g_driver_once;
std::once_flag g_init_once;

constexpr int max_devices = 64;
int g_device_count = 0;  // found at start-up
std::array<CUdevice, max_devices> g_devices{};

// Set by the exit handler: from then on calls that need the driver return cudaErrorCudartUnloading.
std::atomic<bool> g_unloading{false};
pid_t g_init_pid = 0;  // the process whose start-up registered the exit handler

// A fixture's diagnostics go straight to fd 2: this may run inside a program's static constructors.
void say(const char* a, const char* b) noexcept {
  const char prefix[] = "poolshim sim libcudart: ";
  ssize_t ignored = write(2, prefix, sizeof prefix - 1);
  ignored = write(2, a, std::strlen(a));
  ignored = write(2, b, std::strlen(b));
  ignored = write(2, "\n", 1);
  (void)ignored;
}

// Takes entry `slot` from the answer to lookup `Index` (a constant: the static_asserts above
// guarantee it is in range), or, for kShared, the legacy table's entry. A lookup the driver did
// not answer leaves the entry empty.
constexpr int kShared = -2;
constexpr int per_thread_index(const char* name, int per_thread_version) noexcept {
  return per_thread_version == 0
             ? kShared
             : lookup_index(name, per_thread_version, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM);
}

template <int Index, class Pfn>
bool take(const driver_state& s, Pfn& slot, std::type_identity_t<Pfn> legacy, const char* name) noexcept {
  if constexpr (Index == kShared) {
    slot = legacy;
    return true;
  } else {
    static_assert(Index >= 0 && Index < cudart_lookup_count);
    slot = reinterpret_cast<Pfn>(s.answers[Index]);
    if (slot != nullptr) return true;
    say("libcuda.so.1 does not provide ", name);
    return false;
  }
}

void load_driver() noexcept {
  driver_state& s = g_driver;
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return;  // no driver: cudaErrorInsufficientDriver, as cudart reports it
  auto lookup = reinterpret_cast<PFN_cuGetProcAddress_v12000>(dlsym(lib, "cuGetProcAddress_v2"));
  if (lookup == nullptr) return;
  s.legacy.get_proc_address = lookup;
  s.per_thread.get_proc_address = lookup;

  // Every lookup of the record, in its order, each answer kept: names this runtime never uses
  // (cuGL*, ...) may well be answered SYMBOL_NOT_FOUND, which is no error here.
  for (int i = 0; i < cudart_lookup_count; ++i) {
    const driver_lookup& l = cudart_lookups[i];
    CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    void* answer = nullptr;
    CUresult r = lookup(l.symbol, &answer, l.version, l.flags, &status);
    s.answers[static_cast<std::size_t>(i)] =
        r == CUDA_SUCCESS && status == CU_GET_PROC_ADDRESS_SUCCESS ? answer : nullptr;
  }

  bool complete = true;
#define POOLSHIM_RT_TAKE(name, pfn, version, per_thread_version)                                                 \
  complete &= take<lookup_index(#name, version, CU_GET_PROC_ADDRESS_DEFAULT)>(s, s.legacy.name, nullptr, #name); \
  complete &=                                                                                                    \
      take<per_thread_index(#name, per_thread_version)>(s, s.per_thread.name, s.legacy.name, #name " (per-thread)");
  POOLSHIM_RT_DRIVER_ENTRIES(POOLSHIM_RT_TAKE)
#undef POOLSHIM_RT_TAKE
  // NVIDIA's cudart 13.0, run here on a libcuda.so.1 that lacks entry points it looks up, answers
  // every call with cudaErrorCallRequiresNewerDriver; without libcuda.so.1 at all, with
  // cudaErrorInsufficientDriver. This runtime does the same.
  s.load_error = complete ? cudaSuccess : cudaErrorCallRequiresNewerDriver;
}

driver_state& loaded_driver() noexcept {
  std::call_once(g_driver_once, load_driver);
  return g_driver;
}

void release_primary_contexts() noexcept;

// At exit, as NVIDIA's cudart does: the fat binaries' libraries are unloaded, then every primary
// context this runtime still holds a retain on is released (a cudaDeviceReset already dropped its
// own). Registered with atexit only after the driver was loaded and initialised, so it runs before
// whatever the driver registered while it was loaded. A forked child inherits the registration but
// not the parent's libraries or retains: there it does nothing.
void at_exit() noexcept {
  if (!in_initialising_process()) return;
  if (g_unloading.exchange(true, std::memory_order_acq_rel)) return;
  unload_fat_binaries();
  release_primary_contexts();
}

// Start-up, at the first call that needs the driver: cuDriverGetVersion and cuInit, then every
// device as cudart enumerates it (cuDeviceGetCount; per device cuDeviceGet, cuDeviceGetName,
// cuDeviceTotalMem, cuDeviceGetUuid and the attributes of cudaDeviceProp), then the registered
// fat binaries (cuLibraryLoadData), then the exit handler.
void init_runtime() noexcept {
  driver_state& s = g_driver;
  const driver_table& d = s.legacy;
  int version = 0;
  (void)d.cuDriverGetVersion(&version);
  s.init_error = from_driver(d.cuInit(0));
  if (s.init_error != cudaSuccess) return;
  int count = 0;
  CUresult r = d.cuDeviceGetCount(&count);
  if (r == CUDA_SUCCESS && count > max_devices) count = max_devices;
  for (int i = 0; r == CUDA_SUCCESS && i < count; ++i) {
    r = d.cuDeviceGet(&g_devices[static_cast<std::size_t>(i)], i);
    cudaDeviceProp props{};
    if (r == CUDA_SUCCESS) r = read_device_properties(props, g_devices[static_cast<std::size_t>(i)]);
  }
  if (r != CUDA_SUCCESS) {
    s.init_error = from_driver(r);
    return;
  }
  g_device_count = count;
  load_registered_fat_binaries();
  g_init_pid = getpid();
  std::atexit(at_exit);
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
struct primary_slot {
  CUcontext live = nullptr;
  bool retained = false;
  CUdevice device = 0;  // what `live` was retained for
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
// `current` is what cuCtxGetCurrent, the first driver call of every runtime call, returned.
CUresult ensure_context(CUcontext current) noexcept {
  const driver_table& d = g_driver.legacy;
  thread_state& t = t_state;
  CUresult r = CUDA_SUCCESS;
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
  std::call_once(g_init_once, init_runtime);
  if (s.init_error != cudaSuccess) return s.init_error;
  if (g_unloading.load(std::memory_order_acquire)) return cudaErrorCudartUnloading;
  load_registered_fat_binaries();  // any registered since start-up (a dlopen'ed library's)
  CUcontext current = nullptr;
  CUresult r = s.legacy.cuCtxGetCurrent(&current);
  if (n == needs::context) return from_driver(r == CUDA_SUCCESS ? ensure_context(current) : r);
  return cudaSuccess;  // a driver failure shows in the call's own driver calls
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

int device_count() noexcept { return g_device_count; }

bool in_initialising_process() noexcept { return g_init_pid != 0 && getpid() == g_init_pid; }

// The device handles are the ones the start-up enumeration got (no cuDeviceGet per retain, as in
// cudart). After the exit handler nothing is retained any more.
CUresult primary_context(int device, CUcontext* ctx) noexcept {
  if (device < 0 || device >= g_device_count) return CUDA_ERROR_INVALID_DEVICE;
  const driver_table& d = g_driver.legacy;
  primary_registry& reg = primaries();
  std::lock_guard lock(reg.mutex);
  if (g_unloading.load(std::memory_order_acquire)) return CUDA_ERROR_DEINITIALIZED;
  primary_slot& slot = reg.slots[static_cast<std::size_t>(device)];
  if (!slot.retained) {
    const CUdevice dev = g_devices[static_cast<std::size_t>(device)];
    CUcontext fresh = nullptr;
    CUresult r = d.cuDevicePrimaryCtxRetain(&fresh, dev);
    if (r != CUDA_SUCCESS) return r;
    if (slot.live != nullptr && slot.live != fresh) slot.retired.push_back(slot.live);
    slot.live = fresh;
    slot.device = dev;
    slot.retained = true;
  }
  *ctx = slot.live;
  return CUDA_SUCCESS;
}

namespace {
// The exit handler's second half: one cuDevicePrimaryCtxRelease (the CUDA 7.0 ABI, as cudart 13.0
// calls it) per retain this runtime still holds.
void release_primary_contexts() noexcept {
  const driver_table& d = g_driver.legacy;
  primary_registry& reg = primaries();
  std::lock_guard lock(reg.mutex);
  for (primary_slot& slot : reg.slots) {
    if (!slot.retained) continue;
    (void)d.cuDevicePrimaryCtxRelease(slot.device);
    slot.retained = false;
  }
  g_reset_epoch.fetch_add(1, std::memory_order_acq_rel);
}
}  // namespace

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
// Driver calls as cudart 13.0's: (cuCtxGetCurrent,) cuDevicePrimaryCtxRetain on first use of the
// device, cuCtxSetCurrent, cuCtxGetDevice.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaSetDevice(int device) {
  return api(needs::driver, [&]() -> cudaError_t {
    const driver_table& d = driver();
    if (device < 0 || device >= device_count()) return cudaErrorInvalidDevice;
    CUcontext ctx = nullptr;
    CUresult r = primary_context(device, &ctx);
    if (r == CUDA_SUCCESS) r = d.cuCtxSetCurrent(ctx);
    CUdevice dev = 0;
    if (r == CUDA_SUCCESS) r = d.cuCtxGetDevice(&dev, nullptr);
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

// cuDevicePrimaryCtxReset (the CUDA 7.0 ABI, as cudart 13.0 looks it up) destroys the context's
// state but, per cuda.h, leaves our retain in place, so the retain is released here too (best
// effort: the state is gone either way); the next call that needs a context retains afresh, and
// the exit handler releases only what is retained then.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaDeviceReset(void) {
  return api(needs::driver, [&]() -> cudaError_t {
    const driver_table& d = driver();
    const int ordinal = current_device();
    if (ordinal < 0 || ordinal >= device_count()) return cudaErrorInvalidDevice;
    const CUdevice dev = g_devices[static_cast<std::size_t>(ordinal)];
    CUresult r = d.cuDevicePrimaryCtxReset(dev);
    if (r != CUDA_SUCCESS) return from_driver(r);
    CUcontext reset_ctx = nullptr;
    {
      primary_registry& reg = primaries();
      std::lock_guard lock(reg.mutex);
      primary_slot& slot = reg.slots[static_cast<std::size_t>(ordinal)];
      if (slot.retained) {
        (void)d.cuDevicePrimaryCtxRelease(slot.device);
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

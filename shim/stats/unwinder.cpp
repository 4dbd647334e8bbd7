// libunwind, loaded privately (unwinder.h).
#include "stats/unwinder.h"

#include <dlfcn.h>

#include <atomic>
#include <cstring>
#include <string>

namespace poolshim::stats {
namespace {

using backtrace_fn = int (*)(void**, int);

// Where this library lives, for $ORIGIN/libunwind.so.8.
std::string own_directory() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&capture_stack), &info) == 0 || info.dli_fname == nullptr) return {};
  std::string path = info.dli_fname;
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? std::string{} : path.substr(0, slash + 1);
}

backtrace_fn load() noexcept {
  try {
    void* lib = nullptr;
    const std::string dir = own_directory();
    if (!dir.empty()) lib = dlopen((dir + "libunwind.so.8").c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) lib = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) return nullptr;
    auto fn = reinterpret_cast<backtrace_fn>(dlsym(lib, "unw_backtrace"));
    if (fn != nullptr) {
      void* warm[8];
      (void)fn(warm, 8);  // fills libunwind's caches outside any allocation
    }
    return fn;
  } catch (...) {
    return nullptr;
  }
}

// 0: not tried; 1: loading; 2: ready (g_fn set) or failed (g_fn null).
std::atomic<int> g_state{0};
std::atomic<backtrace_fn> g_fn{nullptr};

backtrace_fn get() noexcept {
  if (g_state.load(std::memory_order_acquire) == 2) return g_fn.load(std::memory_order_relaxed);
  int expected = 0;
  if (!g_state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    return nullptr;  // another thread is loading it: this event goes without a stack
  }
  g_fn.store(load(), std::memory_order_relaxed);
  g_state.store(2, std::memory_order_release);
  return g_fn.load(std::memory_order_relaxed);
}

}  // namespace

[[gnu::noinline]] int capture_stack(void** frames, int max, int skip) noexcept {
  backtrace_fn fn = get();
  if (fn == nullptr || max <= 0 || skip < 0) return 0;
  constexpr int k_room = 256;
  void* all[k_room];
  ++skip;  // this function's own frame: the stack starts at our caller
  const int want = max + skip < k_room ? max + skip : k_room;
  const int n = fn(all, want);
  if (n <= skip) return 0;
  const int keep = n - skip < max ? n - skip : max;
  std::memcpy(frames, all + skip, static_cast<std::size_t>(keep) * sizeof(void*));
  return keep;
}

bool unwinder_available() noexcept { return get() != nullptr; }

}  // namespace poolshim::stats

// libunwind, loaded privately (unwinder.h).
#include "stats/unwinder.h"

#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>

namespace poolshim::stats {
namespace {

using backtrace_fn = int (*)(void**, int);

#if defined(__x86_64__)
#define UNW_LOCAL_ONLY
#include <libunwind.h>
// The unw_step API, resolved by name from the private copy (the header's macros name these).
struct step_api {
  int (*getcontext)(unw_context_t*);
  int (*init_local)(unw_cursor_t*, unw_context_t*);
  int (*step)(unw_cursor_t*);
  int (*get_reg)(unw_cursor_t*, unw_regnum_t, unw_word_t*);
};
step_api g_step{};
#endif

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
#if defined(__x86_64__)
    g_step.getcontext = reinterpret_cast<int (*)(unw_context_t*)>(dlsym(lib, "_Ux86_64_getcontext"));
    g_step.init_local = reinterpret_cast<int (*)(unw_cursor_t*, unw_context_t*)>(dlsym(lib, "_ULx86_64_init_local"));
    g_step.step = reinterpret_cast<int (*)(unw_cursor_t*)>(dlsym(lib, "_ULx86_64_step"));
    g_step.get_reg =
        reinterpret_cast<int (*)(unw_cursor_t*, unw_regnum_t, unw_word_t*)>(dlsym(lib, "_ULx86_64_get_reg"));
    // unw_step looks up each frame's unwind information; with the per-thread cache that is a hash
    // probe, not a walk of every loaded module.
    auto* space = reinterpret_cast<unw_addr_space_t*>(dlsym(lib, "_ULx86_64_local_addr_space"));
    auto set_policy =
        reinterpret_cast<int (*)(unw_addr_space_t, unw_caching_policy_t)>(dlsym(lib, "_ULx86_64_set_caching_policy"));
    if (space != nullptr && set_policy != nullptr) (void)set_policy(*space, UNW_CACHE_PER_THREAD);
#endif
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
std::atomic<int> g_load_state{0};
std::atomic<backtrace_fn> g_fn{nullptr};

backtrace_fn get() noexcept {
  if (g_load_state.load(std::memory_order_acquire) == 2) return g_fn.load(std::memory_order_relaxed);
  int expected = 0;
  if (!g_load_state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    return nullptr;  // another thread is loading it: this event goes without a stack
  }
  g_fn.store(load(), std::memory_order_relaxed);
  g_load_state.store(2, std::memory_order_release);
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

[[gnu::noinline]] int stack_depth(std::uintptr_t own_lo, std::uintptr_t own_hi, int limit, bool* more) noexcept {
  *more = false;
  backtrace_fn fn = get();
  constexpr int k_room = 256;
  if (fn == nullptr || limit <= 0) return 0;
  void* all[k_room];
  const int n = fn(all, k_room);
  int first = 1;  // this function's own frame
  while (first < n && reinterpret_cast<std::uintptr_t>(all[first]) >= own_lo &&
         reinterpret_cast<std::uintptr_t>(all[first]) < own_hi)
    ++first;
  const int depth = n - first;
  if (depth > limit || n == k_room) {
    *more = true;
    return depth < limit ? depth : limit;
  }
  return depth;
}

[[gnu::noinline]] int capture_stack_with_slots(void** frames, std::uintptr_t* slots, int max, int skip) noexcept {
#if defined(__x86_64__)
  if (get() == nullptr || g_step.getcontext == nullptr || g_step.init_local == nullptr || g_step.step == nullptr ||
      g_step.get_reg == nullptr || max <= 0 || skip < 0)
    return 0;
  unw_context_t ctx;
  unw_cursor_t cur;
  if (g_step.getcontext(&ctx) != 0 || g_step.init_local(&cur, &ctx) != 0) return 0;
  int n = 0;
  // Frame 0 is this function; every later frame's IP is a return address pushed by a call, at
  // (that frame's SP) - 8.
  for (int level = 0; n < max && g_step.step(&cur) > 0; ++level) {
    unw_word_t ip = 0, sp = 0;
    if (g_step.get_reg(&cur, UNW_REG_IP, &ip) != 0 || g_step.get_reg(&cur, UNW_REG_SP, &sp) != 0 || ip == 0) break;
    if (level < skip) continue;
    frames[n] = reinterpret_cast<void*>(ip);
    slots[n] = static_cast<std::uintptr_t>(sp) - sizeof(void*);
    ++n;
  }
  return n;
#else
  (void)frames, (void)slots, (void)max, (void)skip;
  return 0;
#endif
}

bool unwinder_available() noexcept { return get() != nullptr; }

void module_range(std::uintptr_t addr, std::uintptr_t* lo, std::uintptr_t* hi) noexcept {
  struct ctx_t {
    std::uintptr_t addr, lo, hi;
  } ctx{addr, 0, 0};
  dl_iterate_phdr(
      [](dl_phdr_info* i, std::size_t, void* p) {
        auto* c = static_cast<ctx_t*>(p);
        std::uintptr_t lo = UINTPTR_MAX, hi = 0;
        for (int k = 0; k < i->dlpi_phnum; ++k) {
          if (i->dlpi_phdr[k].p_type != PT_LOAD) continue;
          lo = std::min<std::uintptr_t>(lo, i->dlpi_addr + i->dlpi_phdr[k].p_vaddr);
          hi = std::max<std::uintptr_t>(hi, i->dlpi_addr + i->dlpi_phdr[k].p_vaddr + i->dlpi_phdr[k].p_memsz);
        }
        if (c->addr < lo || c->addr >= hi) return 0;
        c->lo = lo;
        c->hi = hi;
        return 1;
      },
      &ctx);
  *lo = ctx.lo;
  *hi = ctx.hi;
}

}  // namespace poolshim::stats

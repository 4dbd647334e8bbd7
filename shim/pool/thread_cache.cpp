// Thread-cache registry: pool slots, the sentinel, and the thread-exit flush.
#include "pool/thread_cache.h"

#include <mutex>

namespace poolshim::pool {
namespace {

constinit std::mutex g_registry;
constinit std::array<bool, kMaxCachedPools> g_slot_taken{};

constexpr std::array<thread_cache*, kMaxCachedPools + 1> all_sentinel() noexcept {
  std::array<thread_cache*, kMaxCachedPools + 1> a{};
  for (auto& p : a) p = &g_empty_thread_cache;
  return a;
}

constinit thread_local bool tl_exiting = false;

void release_this_threads_caches() noexcept {
  tl_exiting = true;  // a pool used by a later thread_local destructor runs without a cache
  for (std::size_t i = 0; i < kMaxCachedPools; ++i) {
    thread_cache* tc = tl_thread_caches[i];
    if (tc == &g_empty_thread_cache) continue;
    tl_thread_caches[i] = &g_empty_thread_cache;
    {
      std::lock_guard lock(g_registry);
      if (thread_cache_owner* o = tc->owner.load(std::memory_order_acquire)) o->retire_cache(tc);
    }
    destroy_thread_cache(tc);
  }
}

struct exit_hook {
  bool armed = false;
  ~exit_hook() {
    if (armed) release_this_threads_caches();
  }
};
thread_local exit_hook tl_exit_hook;

}  // namespace

constinit thread_cache g_empty_thread_cache{};
constinit thread_local std::array<thread_cache*, kMaxCachedPools + 1> tl_thread_caches
    [[gnu::tls_model("initial-exec")]] = all_sentinel();

void lock_cache_registry() noexcept { g_registry.lock(); }
void unlock_cache_registry() noexcept { g_registry.unlock(); }

std::size_t acquire_cache_slot() noexcept {
  std::lock_guard lock(g_registry);
  for (std::size_t i = 0; i < kMaxCachedPools; ++i) {
    if (!g_slot_taken[i]) {
      g_slot_taken[i] = true;
      return i;
    }
  }
  return kNoCacheSlot;
}

void release_cache_slot(std::size_t slot) noexcept {
  if (slot < kMaxCachedPools) g_slot_taken[slot] = false;
}

bool arm_thread_cache_exit() noexcept {
  if (tl_exiting) return false;
  tl_exit_hook.armed = true;
  return true;
}

void destroy_thread_cache(thread_cache* tc) noexcept {
  for (auto& b : tc->bins) delete[] b.slots;
  delete tc;
}

void orphan_thread_cache(thread_cache* tc) noexcept {
  for (auto& b : tc->bins) b.count = b.cap = b.head = b.mask = 0;
  tc->bytes = tc->limit = 0;
  tc->owner.store(nullptr, std::memory_order_release);
}

}  // namespace poolshim::pool

// Per-thread caches of small blocks (mimalloc's model). Every thread starts with each pool's slot
// pointing at one shared empty sentinel whose bins are empty and full at once, so the hit path
// never asks "initialised?": it fails over to the pool's slow path, which installs a real cache.
// Bins are FIFO rings: fence epochs only grow, so if the oldest block is not ready, none is.
// Registry (slots, ownership, thread exit) lives in thread_cache.cpp; the hit path in device_pool.h.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "pool/block.h"
#include "pool/size_classes.h"

namespace poolshim::pool {

inline constexpr std::size_t kCacheBins = (std::size_t{1} << 20) >> kSmallShift;  // sizes 512 B .. 1 MiB
inline constexpr std::size_t kMaxCachedPools = 32;
inline constexpr std::size_t kNoCacheSlot = kMaxCachedPools;  // always the sentinel
inline constexpr std::uint32_t kMaxBinCount = 64;

struct tcache_slot {
  block* blk;
  std::uint64_t epoch;  // the block's ready epoch
};

struct tcache_bin {
  tcache_slot* slots = nullptr;
  std::uint32_t head = 0;
  std::uint32_t count = 0;
  std::uint32_t cap = 0;  // 0: not set up (the sentinel, an orphan, a size above the budget)
  std::uint32_t mask = 0;
};

class thread_cache_owner;

// Fields without atomics are touched only by the owning thread (and by a destroyed pool's
// orphaning, which must happen-before any later use of that slot).
struct thread_cache {
  std::array<tcache_bin, kCacheBins> bins{};
  std::size_t bytes = 0;  // bytes held in bins
  std::size_t limit = 0;  // byte budget; 0 in the sentinel
  // Written by the owner with relaxed load+store (no read-modify-write), read by stats().
  std::atomic<std::uint64_t> hits{0};
  std::atomic<std::int64_t> in_use{0};  // bytes allocated minus bytes freed on this thread's hit paths
  std::atomic<bool> flush_requested{false};
  std::atomic<thread_cache_owner*> owner{nullptr};  // nullptr: orphaned (the pool was destroyed)
  thread_cache* prev = nullptr;                     // the owner's list, under the registry lock
  thread_cache* next = nullptr;

  // Room for one more small block of `size` bytes (sizes are multiples of 512 B, at most 1 MiB).
  bool has_room(std::size_t size) const noexcept {
    const tcache_bin& b = bins[(size >> kSmallShift) - 1];
    return b.count != b.cap && bytes + size <= limit;
  }
};

inline void relaxed_add(std::atomic<std::uint64_t>& c, std::uint64_t v) noexcept {
  c.store(c.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}
inline void relaxed_add(std::atomic<std::int64_t>& c, std::int64_t v) noexcept {
  c.store(c.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}

extern constinit thread_cache g_empty_thread_cache;
// Slot kNoCacheSlot stays the sentinel for pools without thread caches. Initial-exec: no
// __tls_get_addr call on the hit path (the shim is preloaded, so static TLS is available).
extern constinit thread_local std::array<thread_cache*, kMaxCachedPools + 1> tl_thread_caches
    [[gnu::tls_model("initial-exec")]];

// A pool that hands out thread caches. Calls arrive with the registry lock held.
class thread_cache_owner {
 public:
  // The owning thread exits: move the cache's blocks back and fold its counters into the pool.
  virtual void retire_cache(thread_cache* tc) noexcept = 0;

 protected:
  ~thread_cache_owner() = default;
};

// The registry: one mutex for slot ownership, cache lists and thread exit (order: registry, then
// a pool's own lock).
void lock_cache_registry() noexcept;
void unlock_cache_registry() noexcept;
std::size_t acquire_cache_slot() noexcept;           // kNoCacheSlot if all are taken
void release_cache_slot(std::size_t slot) noexcept;  // registry lock held
// Makes the calling thread flush its caches when it exits (idempotent, off the hit path). False
// once the thread is exiting: it must not install a new cache then.
bool arm_thread_cache_exit() noexcept;
// Deletes a cache and its bins; the caller has unlinked it.
void destroy_thread_cache(thread_cache* tc) noexcept;
// Empties an orphan's bins so that no later hit can return a block of a dead pool.
void orphan_thread_cache(thread_cache* tc) noexcept;

}  // namespace poolshim::pool

// The device pool: small requests (<= small_limit) from shared segments through per-thread caches
// and a best-fit allocator, large ones in dedicated segments cached whole and reused by best fit
// within a bound; before it grows, idle memory beyond a fraction of what is in use goes back.
// Hit-path budget (allocate+free pair, small block, thread cache warm): <= 100 ns and a few dozen
// instructions — a TLS load, a pointer-map lookup (two dependent loads), a ring pop/push, one
// acquire load of the completed epoch and one of the fence's current epoch; no locks, syscalls, allocation, logging,
// exceptions or read-modify-write atomics. Everything else is in device_pool.cpp (*_slow).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <set>

#include "pool/best_fit_allocator.h"
#include "pool/block.h"
#include "pool/fence.h"
#include "pool/pointer_map.h"
#include "pool/segment_resource.h"
#include "pool/size_classes.h"
#include "pool/thread_cache.h"

namespace poolshim::pool {

inline constexpr std::size_t kNoIdleBound = ~std::size_t{0};

struct device_pool_options {
  std::size_t small_limit = std::size_t{1} << 20;         // clamped to [256 KiB, 1 MiB]
  std::size_t segment_size = std::size_t{2} << 20;        // small segments; at least 2 * small_limit
  std::size_t thread_cache_bytes = std::size_t{4} << 20;  // per thread and pool; 0 disables the caches
  std::size_t idle_limit = 0;  // idle bytes kept before a free returns segments (POOLSHIM_DEVICE_CACHE_LIMIT)
  // Before the pool takes a new segment it returns idle ones (largest first) until its reserved
  // bytes would be at most (100 + idle_percent)% of the most bytes in use since the last
  // release_idle() (large blocks: as requested); kNoIdleBound: never (POOLSHIM_DEVICE_IDLE_PERCENT).
  std::size_t idle_percent = 10;
  // What the idle bound measures against: false, the high-water mark since the last release_idle()
  // (memory a loop reuses stays); true, the bytes in use now (a process that lends its idle memory
  // to the node: poolshimd's source, where what one process keeps idle another cannot use).
  bool idle_bound_now = false;
  // A request takes the smallest ready idle large block of its rounded size up to 2^-reuse_bits
  // more, of any class (default: up to a quarter larger).
  unsigned reuse_bits = 2;
  unsigned large_class_bits = kLargeClassBits;  // large requests round up to 2^bits classes per power of two
  // Small segments start at 256 KiB and double with the small bytes reserved, up to segment_size.
  // Off by default: the replay measured it worse with thread caches (cached blocks of drifting
  // sizes fragment the smaller segments).
  bool grow_small_segments = false;
};

// Statistics of both pools, generated from one list (mimalloc's model): BOTH rows are figures of
// the device pool and of the pinned host pool (host_pool.h), DEVICE and HOST rows of one of them.
// Byte counts are exact when no thread is inside the pool. The device pool's peak_in_use is the peak
// of bytes out of the shared pool (in use or held by thread caches): an upper bound of the true peak,
// exact when thread caches are off. The public figures (POOLSHIM_COUNTER_TABLE in
// include/poolshim/poolshim.h) name their sources in this list.
#define POOLSHIM_POOL_FIGURES(BOTH, DEVICE, HOST)                                              \
  BOTH(requests)       /* allocate calls that reached the pool with a valid size */            \
  BOTH(failures)       /* of those, the ones not served (out of memory, a source error) */     \
  BOTH(pool_hits)      /* served from memory the pool already held (no new segment or slab) */ \
  BOTH(bytes_in_use)   /* bytes of live blocks (block sizes, after rounding) */                \
  BOTH(bytes_reserved) /* bytes of segments or slabs held from the source */                   \
  BOTH(peak_in_use)                                                                            \
  BOTH(peak_reserved)                                                                          \
  DEVICE(segments)       /* segments held from the source */                                   \
  DEVICE(oom_recoveries) /* times the out-of-memory path ran */                                \
  DEVICE(bound_releases) /* segments returned before growing, to keep the idle bound */        \
  HOST(slabs)            /* slabs held from the source */
#define POOLSHIM_POOL_FIGURE_SKIP(name)

struct pool_stats {
#define POOLSHIM_POOL_STATS_FIELD(name) std::uint64_t name = 0;
  POOLSHIM_POOL_FIGURES(POOLSHIM_POOL_STATS_FIELD, POOLSHIM_POOL_STATS_FIELD, POOLSHIM_POOL_FIGURE_SKIP)
#undef POOLSHIM_POOL_STATS_FIELD
};

// Sums the pools' figures (the routers' totals). Peaks add up too: the sum of each pool's peak is
// what the public figures have always reported, an upper bound of the process's peak.
inline pool_stats& operator+=(pool_stats& sum, const pool_stats& s) noexcept {
#define POOLSHIM_POOL_STATS_ADD(name) sum.name += s.name;
  POOLSHIM_POOL_FIGURES(POOLSHIM_POOL_STATS_ADD, POOLSHIM_POOL_STATS_ADD, POOLSHIM_POOL_FIGURE_SKIP)
#undef POOLSHIM_POOL_STATS_ADD
  return sum;
}

// Allocator of the idle index's nodes that keeps freed nodes for the next insert: caching a freed
// large block then costs no malloc (callers hold the pool's lock). All nodes are one size.
struct node_cache {
  node_cache() noexcept = default;
  node_cache(const node_cache&) = delete;
  node_cache& operator=(const node_cache&) = delete;
  ~node_cache() {
    while (void* n = free) {
      free = *static_cast<void**>(n);
      ::operator delete(n);
    }
  }
  void* free = nullptr;
};

template <class T>
struct recycling_allocator {
  using value_type = T;
  explicit recycling_allocator(node_cache* c) noexcept : cache(c) {}
  template <class U>
  recycling_allocator(const recycling_allocator<U>& o) noexcept : cache(o.cache) {}  // NOLINT: rebinding
  T* allocate(std::size_t n) {
    if (n == 1 && cache->free != nullptr) {
      void* p = cache->free;
      cache->free = *static_cast<void**>(p);
      return static_cast<T*>(p);
    }
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept {
    static_assert(sizeof(T) >= sizeof(void*));
    if (n != 1) return ::operator delete(p);
    *reinterpret_cast<void**>(p) = cache->free;
    cache->free = p;
  }
  friend bool operator==(const recycling_allocator& a, const recycling_allocator& b) noexcept {
    return a.cache == b.cache;
  }
  node_cache* cache;
};

class device_pool final : private thread_cache_owner {
 public:
  // `source` and `reuse_fence` must outlive the pool.
  device_pool(segment_resource& source, fence& reuse_fence, device_pool_options options = {}) noexcept;
  device_pool(const device_pool&) = delete;
  device_pool& operator=(const device_pool&) = delete;
  ~device_pool();  // returns every segment to the source, live blocks included

  // *out = the block's address. invalid_argument for 0 bytes; out_of_memory after the OOM path.
  status allocate(std::size_t bytes, std::uintptr_t* out) noexcept;
  // ok; unknown_pointer if p is not in this pool (pass it on); invalid_pointer for an interior
  // pointer or a block that is not live (double free). On success, *freed_bytes (when given) is
  // the block's size: read before the block can be another thread's.
  status deallocate(std::uintptr_t p, std::size_t* freed_bytes = nullptr) noexcept;

  bool owns(std::uintptr_t p) const noexcept { return map_.find_segment(p) != nullptr; }
  // Size of the live block starting at p (after rounding), or 0.
  std::size_t block_size(std::uintptr_t p) const noexcept;
  // The base of the segment that holds the live block starting at p, or 0.
  std::uintptr_t segment_base(std::uintptr_t p) const noexcept;
  // Returns idle memory to the source: this thread's cache, ready free segments and cached large
  // blocks; other threads flush their caches on their next slow path. Returns the bytes released.
  std::size_t release_idle() noexcept;
  // Returns idle memory to the source until at least `bytes` went back, or all that can go
  // (SIZE_MAX: everything idle). Only wholly free segments go: never one with a live block, a block
  // still waiting for its fence, or a block another thread's cache keeps (those threads flush on
  // their next slow path). Returns the bytes released (whole segments: may exceed `bytes`).
  std::size_t trim(std::size_t bytes) noexcept;
  // Takes small segments (options().segment_size each) from the source until `bytes` more are held,
  // kept as free memory of the pool; returns the bytes taken (less when the source ran out).
  std::size_t preallocate(std::size_t bytes) noexcept;
  // Idle bytes the idle bound leaves alone (the router's preallocation: kept for the program).
  void set_kept_idle(std::size_t bytes) noexcept { kept_idle_.store(bytes, std::memory_order_relaxed); }
  // Bytes held from the source and not out of the shared pool (free, or waiting for a fence).
  std::size_t idle_bytes() const noexcept;
  // What of that a trim could give back now: wholly free small segments and cached large blocks
  // whose fence has passed (the free part of a segment that holds a live block cannot go). Freed
  // small blocks whose fence passed are returned to their segments first, as a trim would.
  std::size_t releasable_bytes() noexcept;
  // Moves this thread's cached blocks back to the shared pool.
  void flush_thread_cache() noexcept;
  pool_stats stats() const noexcept;
  const device_pool_options& options() const noexcept { return options_; }
  segment_resource& source() const noexcept { return source_; }

 private:
  [[gnu::noinline]] status allocate_slow(std::size_t bytes, std::uintptr_t* out) noexcept;
  [[gnu::noinline]] status deallocate_slow(std::uintptr_t p, std::size_t* freed_bytes) noexcept;

  status allocate_small(std::size_t bytes, std::uintptr_t* out) noexcept;
  status allocate_large(std::size_t bytes, std::uintptr_t* out) noexcept;
  status new_segment(std::size_t bytes, bool large, segment_info** out) noexcept;
  bool over_idle_bound(std::size_t grow, std::size_t request, std::size_t* keep_idle) noexcept;
  void keep_idle_bound(std::size_t grow, std::size_t request) noexcept;  // before a new segment
  std::size_t in_use_bytes() const noexcept;                             // exact: thread caches read too
  void unlink_idle_large_locked(block* b) noexcept;
  void hand_out_locked(block* b, block_state state, bool hit) noexcept;
  void return_small_locked(block* b, std::uint64_t epoch) noexcept;
  void process_pending_locked() noexcept;
  // Until idle <= keep_idle; *count (when given) = the segments returned.
  std::size_t release_segments(std::size_t keep_idle = 0, std::uint64_t* count = nullptr) noexcept;
  bool recover_from_oom() noexcept;  // true when it returned memory to the source
  thread_cache* local_cache() noexcept;
  thread_cache* adopt_cache() noexcept;
  bool make_bin(thread_cache* tc, tcache_bin& bin, std::size_t block_bytes) noexcept;
  void flush_cache(thread_cache* tc) noexcept;
  void request_flushes() noexcept;
  void retire_cache(thread_cache* tc) noexcept override;
  segment_info* make_segment_info(bool large, std::size_t bytes) noexcept;
  bool over_idle_limit_locked() const noexcept;

  segment_resource& source_;
  fence& fence_;
  const std::atomic<std::uint64_t>* const completed_;
  const std::atomic<std::uint64_t>* const free_epoch_;  // the fence's current epoch
  const device_pool_options options_;
  const std::size_t small_bins_;  // bins below this index are served by the thread caches
  const std::size_t cache_slot_;
  pointer_map map_;

  mutable std::mutex mutex_;  // everything below, except the atomics
  block_arena arena_;
  best_fit_allocator small_;
  block* pending_ = nullptr;              // small blocks waiting for their epoch (via block::link)
  std::uint64_t pending_scanned_at_ = 0;  // the completed epoch at the last scan of pending_
  struct by_size_then_address {
    bool operator()(const block* a, const block* b) const noexcept {
      return a->size != b->size ? a->size < b->size : a->addr < b->addr;
    }
  };
  // Idle (cached) large blocks: by size for best fit (nodes allocated off the hit path only; a
  // block the set could not take stays in the list, releasable but not reused), and in free order.
  node_cache idle_nodes_;  // before the index: it outlives the index's nodes
  std::set<block*, by_size_then_address, recycling_allocator<block*>> idle_large_{
      by_size_then_address{}, recycling_allocator<block*>(&idle_nodes_)};
  block* idle_oldest_ = nullptr;  // through block::next
  block* idle_newest_ = nullptr;
  std::size_t large_slack_ = 0;     // sum of size - requested over live large blocks
  std::size_t small_reserved_ = 0;  // bytes of small segments
  std::size_t high_water_ = 0;      // the idle bound's in-use figure (device_pool.cpp)
  segment_info* segments_ = nullptr;
  segment_info* spare_infos_ = nullptr;
  std::size_t out_of_shared_ = 0;  // bytes in use or in thread caches

  thread_cache* caches_ = nullptr;  // under the registry lock
  std::atomic<std::uint64_t> slow_requests_{0};
  std::atomic<std::uint64_t> failures_{0};
  std::atomic<std::uint64_t> slow_hits_{0};
  std::atomic<std::uint64_t> retired_hits_{0};
  std::atomic<std::int64_t> slow_in_use_{0};  // in use changed on slow paths and by retired caches
  std::atomic<std::uint64_t> reserved_{0};
  std::atomic<std::uint64_t> peak_in_use_{0};
  std::atomic<std::uint64_t> peak_reserved_{0};
  std::atomic<std::uint64_t> segment_count_{0};
  std::atomic<std::uint64_t> oom_recoveries_{0};
  std::atomic<std::uint64_t> bound_releases_{0};
  std::atomic<std::size_t> kept_idle_{0};
};

inline status device_pool::allocate(std::size_t bytes, std::uintptr_t* out) noexcept {
  const std::size_t bin = (bytes - 1) >> kSmallShift;  // 0 bytes wraps to a huge index
  thread_cache* const tc = tl_thread_caches[cache_slot_];
  if (bin >= small_bins_ || tc->bins[bin].count == 0 ||
      tc->bins[bin].slots[tc->bins[bin].head].epoch > completed_->load(std::memory_order_acquire)) [[unlikely]] {
    return allocate_slow(bytes, out);
  }
  tcache_bin& b = tc->bins[bin];
  block* const blk = b.slots[b.head].blk;
  b.head = (b.head + 1) & b.mask;
  --b.count;
  tc->bytes -= blk->size;
  blk->state.store(block_state::small_allocated, std::memory_order_relaxed);
  relaxed_add(tc->hits, 1);
  relaxed_add(tc->in_use, static_cast<std::int64_t>(blk->size));
  *out = blk->addr;
  return status::ok;
}

inline status device_pool::deallocate(std::uintptr_t p, std::size_t* freed_bytes) noexcept {
  block* const blk = map_.find_block(p);
  thread_cache* const tc = tl_thread_caches[cache_slot_];
  if (blk == nullptr || blk->state.load(std::memory_order_relaxed) != block_state::small_allocated ||
      !tc->has_room(blk->size)) [[unlikely]] {
    return deallocate_slow(p, freed_bytes);
  }
  if (freed_bytes != nullptr) *freed_bytes = blk->size;
  tcache_bin* const b = &tc->bins[(blk->size >> kSmallShift) - 1];
  const std::uint64_t epoch = free_epoch_->load(std::memory_order_acquire);
  blk->state.store(block_state::cached, std::memory_order_relaxed);
  b->slots[(b->head + b->count) & b->mask] = tcache_slot{blk, epoch};
  ++b->count;
  tc->bytes += blk->size;
  relaxed_add(tc->in_use, -static_cast<std::int64_t>(blk->size));
  return status::ok;
}

}  // namespace poolshim::pool

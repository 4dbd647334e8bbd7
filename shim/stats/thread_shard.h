// Per-thread shards of the stats file (struct poolshim_stats_shard in include/poolshim/
// stats_file.h): a thread claims one on its first event and counts there with plain stores (no
// atomic read-modify-write on the allocation path); its entries fold into the shared counters on a
// collision and when the thread exits. A thread that finds none free counts in the shared counters
// with atomics. The per-event parts are inline here; claim and release are not.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "poolshim/stats_file.h"
#include "stats/file_atomic.h"
#include "stats/site_stats.h"

namespace poolshim::stats {

// A shard's site entry is a site_local (the counts site_stats takes from one thread).
static_assert(sizeof(site_local) == sizeof(poolshim_stats_shard_site) &&
              offsetof(site_local, allocs) == offsetof(poolshim_stats_shard_site, allocs) &&
              offsetof(site_local, temporary) == offsetof(poolshim_stats_shard_site, temporary) &&
              offsetof(site_local, sizes) == offsetof(poolshim_stats_shard_site, sizes));

class shard_set {
 public:
  shard_set() noexcept = default;
  // `shards` (count of them, zeroed) fold into `sites`, `kinds` (POOLSHIM_STATS_DEVICES *
  // POOLSHIM_STATS_KINDS) and `events` (the header's); all are the caller's.
  shard_set(poolshim_stats_shard* shards, std::uint32_t count, site_stats* sites, poolshim_stats_kind* kinds,
            std::uint64_t* events, std::uint64_t (*kind_sizes)[POOLSHIM_STATS_SIZE_BUCKETS] = nullptr) noexcept
      : shards_(shards), count_(count), sites_(sites), kinds_(kinds), events_(events), kind_sizes_(kind_sizes) {}

  // A free shard for the calling thread, or null (all in use).
  poolshim_stats_shard* claim() noexcept;
  // Folds every entry of `sh` into the shared counters and frees it (its thread exits).
  void release(poolshim_stats_shard* sh) noexcept;

  // This thread's entry for stack `id` (an older site in the same place is folded first); null
  // without a shard.
  site_local* local_site(poolshim_stats_shard* sh, std::uint32_t id) noexcept {
    if (sh == nullptr) return nullptr;
    poolshim_stats_shard_site& a = sh->sites[poolshim_stats_shard_place(id, 0)];
    if (a.stack == id) [[likely]]
      return reinterpret_cast<site_local*>(&a);
    poolshim_stats_shard_site& b = sh->sites[poolshim_stats_shard_place(id, 1)];
    if (b.stack == id) return reinterpret_cast<site_local*>(&b);
    poolshim_stats_shard_site& e = empty(a) || !empty(b) ? a : b;
    fold_site(e);
    std::atomic_ref<std::uint32_t>(e.stack).store(id, std::memory_order_relaxed);
    return reinterpret_cast<site_local*>(&e);
  }

  // One event more, in the shard or (without one) the shared count: how many the thread (or, without
  // a shard, the process) has recorded now.
  std::uint64_t note_event(poolshim_stats_shard* sh) noexcept {
    if (sh != nullptr) {
      bump(sh->events, 1);
      return sh->events;
    }
    return atomic_at(*events_).fetch_add(1, std::memory_order_relaxed) + 1;
  }

  // One allocation of kind `k` in size bucket `b`, in the shard's count (folded before it could
  // wrap) or the shared one.
  void note_size(poolshim_stats_shard* sh, int k, unsigned b) noexcept {
    if (kind_sizes_ == nullptr) return;
    if (sh == nullptr) {
      atomic_at(kind_sizes_[k][b]).fetch_add(1, std::memory_order_relaxed);
      return;
    }
    std::atomic_ref<std::uint32_t> n(sh->kind_sizes[k][b]);
    const std::uint32_t now = n.load(std::memory_order_relaxed) + 1;
    n.store(now, std::memory_order_relaxed);
    if (now >= (std::uint32_t{1} << 31)) [[unlikely]] {
      atomic_at(kind_sizes_[k][b]).fetch_add(now, std::memory_order_relaxed);
      n.store(0, std::memory_order_relaxed);
    }
  }

 private:
  static bool empty(const poolshim_stats_shard_site& e) noexcept {
    return e.allocs == 0 && e.frees == 0 && e.temporary == 0;
  }
  // Adds the entry to its site's shared counters and empties it (readers sum shared + entry, so
  // for an instant they may see it twice or not at all).
  void fold_site(poolshim_stats_shard_site& e) noexcept {
    if (e.allocs != 0 || e.frees != 0 || e.temporary != 0) sites_->fold(*reinterpret_cast<site_local*>(&e));
    std::atomic_ref<std::uint32_t>(e.stack).store(0, std::memory_order_relaxed);
    e.allocs = e.frees = e.bytes_allocated = e.bytes_freed = e.temporary = 0;
    for (std::uint32_t& b : e.sizes) b = 0;
  }

  poolshim_stats_shard* shards_ = nullptr;
  std::uint32_t count_ = 0;
  site_stats* sites_ = nullptr;
  poolshim_stats_kind* kinds_ = nullptr;
  std::uint64_t* events_ = nullptr;
  std::uint64_t (*kind_sizes_)[POOLSHIM_STATS_SIZE_BUCKETS] = nullptr;  // the header's, by kind
};

}  // namespace poolshim::stats

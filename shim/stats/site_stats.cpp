// Per-call-site counters with O(1) process-peak attribution (site_stats.h).
#include "stats/site_stats.h"

#include <algorithm>
#include <cstddef>

#include "poolshim/stats_file.h"

namespace poolshim::stats {
namespace {

// site_counters and site_local are the file's site and shard entry, seen as atomics or as one
// thread's plain counters.
static_assert(sizeof(site_counters) == sizeof(poolshim_stats_site) &&
              offsetof(site_counters, temporary) == offsetof(poolshim_stats_site, temporary) &&
              offsetof(site_counters, sizes) == offsetof(poolshim_stats_site, sizes));
static_assert(sizeof(site_local) == sizeof(poolshim_stats_shard_site) &&
              offsetof(site_local, allocs) == offsetof(poolshim_stats_shard_site, allocs) &&
              offsetof(site_local, temporary) == offsetof(poolshim_stats_shard_site, temporary) &&
              offsetof(site_local, sizes) == offsetof(poolshim_stats_shard_site, sizes));

// A local size count this large is folded into the shared counters (the local ones are 32-bit).
constexpr std::uint32_t k_fold_sizes_at = std::uint32_t{1} << 31;

template <class T>
void add(std::atomic<T>& c, T v) noexcept {
  c.fetch_add(v, std::memory_order_relaxed);
}

// A counter only this thread writes: a plain load and store, no lock prefix (another process may
// read it meanwhile, and sees the old or the new value).
void bump(std::uint64_t& c, std::uint64_t v) noexcept {
  std::atomic_ref<std::uint64_t> a(c);
  a.store(a.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}

template <class T>
void raise_to(std::atomic<T>& c, T v) noexcept {
  T cur = c.load(std::memory_order_relaxed);
  while (cur < v && !c.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

}  // namespace

// Before a site changes: if a process peak happened since it last changed, what it holds now is
// what it held at that peak.
void site_stats::settle(site_counters& s) noexcept {
  const std::uint64_t e = process_->epoch.load(std::memory_order_relaxed);
  if (s.seen_epoch.load(std::memory_order_relaxed) != e) {
    s.at_peak.store(s.live_bytes.load(std::memory_order_relaxed), std::memory_order_relaxed);
    s.seen_epoch.store(e, std::memory_order_relaxed);
  }
}

bool site_stats::on_alloc(std::uint32_t id, std::uint64_t bytes, site_local* local) noexcept {
  site_counters& s = at(id);
  settle(s);
  const auto b = static_cast<std::int64_t>(bytes);
  const unsigned bucket = poolshim_stats_size_bucket(bytes);
  if (local != nullptr) {
    bump(local->allocs, 1);
    bump(local->bytes_allocated, bytes);
    std::atomic_ref<std::uint32_t> n(local->sizes[bucket]);
    const std::uint32_t now = n.load(std::memory_order_relaxed) + 1;
    n.store(now, std::memory_order_relaxed);
    if (now >= k_fold_sizes_at) [[unlikely]] {  // before it could wrap: into the shared counters
      s.sizes[bucket].fetch_add(now, std::memory_order_relaxed);
      n.store(0, std::memory_order_relaxed);
    }
  } else {
    add<std::uint64_t>(s.allocs, 1);
    add<std::uint64_t>(s.bytes_allocated, bytes);
    add<std::uint64_t>(s.sizes[bucket], 1);
  }
  raise_to<std::uint64_t>(s.largest, bytes);
  const std::int64_t mine = s.live_bytes.fetch_add(b, std::memory_order_relaxed) + b;
  raise_to(s.own_peak, mine);
  const std::int64_t total = process_->live.fetch_add(b, std::memory_order_relaxed) + b;
  std::int64_t p = process_->peak.load(std::memory_order_relaxed);
  while (total > p) {
    if (process_->peak.compare_exchange_weak(p, total, std::memory_order_relaxed)) {
      // A new process peak: a new epoch, and this site's share of it is what it holds now.
      const std::uint64_t e = process_->epoch.fetch_add(1, std::memory_order_relaxed) + 1;
      s.at_peak.store(mine, std::memory_order_relaxed);
      s.seen_epoch.store(e, std::memory_order_relaxed);
      return true;
    }
  }
  return false;
}

void site_stats::on_free(std::uint32_t id, std::uint64_t bytes, bool temporary, site_local* local) noexcept {
  site_counters& s = at(id);
  settle(s);
  const auto b = static_cast<std::int64_t>(bytes);
  if (local != nullptr) {
    bump(local->frees, 1);
    if (temporary) bump(local->temporary, 1);
    bump(local->bytes_freed, bytes);
  } else {
    add<std::uint64_t>(s.frees, 1);
    if (temporary) add<std::uint64_t>(s.temporary, 1);
    add<std::uint64_t>(s.bytes_freed, bytes);
  }
  s.live_bytes.fetch_sub(b, std::memory_order_relaxed);
  process_->live.fetch_sub(b, std::memory_order_relaxed);
}

// The shard fold of the file format (stats_file.h), on the live counters: which of a thread's
// counts go where is written once, there.
void site_stats::fold(const site_local& l) noexcept {
  poolshim_stats_fold_site(reinterpret_cast<poolshim_stats_site*>(&at(l.stack)),
                           reinterpret_cast<const poolshim_stats_shard_site*>(&l), 1);
}

site_report site_stats::report(std::uint32_t id) const noexcept {
  const site_counters& s = sites_[id < count_ ? id : 0];
  site_report r{};
  r.allocs = s.allocs.load(std::memory_order_relaxed);
  r.frees = s.frees.load(std::memory_order_relaxed);
  r.bytes_allocated = s.bytes_allocated.load(std::memory_order_relaxed);
  r.bytes_freed = s.bytes_freed.load(std::memory_order_relaxed);
  r.largest = s.largest.load(std::memory_order_relaxed);
  r.live_bytes = s.live_bytes.load(std::memory_order_relaxed);
  r.live_count = static_cast<std::int64_t>(r.allocs) - static_cast<std::int64_t>(r.frees);
  r.own_peak = s.own_peak.load(std::memory_order_relaxed);
  r.temporary = s.temporary.load(std::memory_order_relaxed);
  for (int b = 0; b < POOLSHIM_STATS_SIZE_BUCKETS; ++b) r.sizes[b] = s.sizes[b].load(std::memory_order_relaxed);
  const bool current = s.seen_epoch.load(std::memory_order_relaxed) == process_->epoch.load(std::memory_order_relaxed);
  r.at_process_peak = current ? s.at_peak.load(std::memory_order_relaxed) : r.live_bytes;
  return r;
}

}  // namespace poolshim::stats

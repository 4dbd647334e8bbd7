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

}  // namespace

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

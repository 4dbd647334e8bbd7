// Per-call-site counters with O(1) process-peak attribution (site_stats.h).
#include "stats/site_stats.h"

#include <algorithm>

namespace poolshim::stats {
namespace {

template <class T>
void add(std::atomic<T>& c, T v) noexcept {
  c.fetch_add(v, std::memory_order_relaxed);
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

bool site_stats::on_alloc(std::uint32_t id, std::uint64_t bytes) noexcept {
  site_counters& s = at(id);
  settle(s);
  const auto b = static_cast<std::int64_t>(bytes);
  add<std::uint64_t>(s.allocs, 1);
  add<std::uint64_t>(s.bytes_allocated, bytes);
  raise_to<std::uint64_t>(s.largest, bytes);
  add<std::int64_t>(s.live_count, 1);
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

void site_stats::on_free(std::uint32_t id, std::uint64_t bytes, bool temporary) noexcept {
  site_counters& s = at(id);
  settle(s);
  const auto b = static_cast<std::int64_t>(bytes);
  add<std::uint64_t>(s.frees, 1);
  if (temporary) add<std::uint64_t>(s.temporary, 1);
  add<std::uint64_t>(s.bytes_freed, bytes);
  add<std::int64_t>(s.live_count, -1);
  s.live_bytes.fetch_sub(b, std::memory_order_relaxed);
  process_->live.fetch_sub(b, std::memory_order_relaxed);
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
  r.live_count = s.live_count.load(std::memory_order_relaxed);
  r.own_peak = s.own_peak.load(std::memory_order_relaxed);
  r.temporary = s.temporary.load(std::memory_order_relaxed);
  const bool current =
      s.seen_epoch.load(std::memory_order_relaxed) == process_->epoch.load(std::memory_order_relaxed);
  r.at_process_peak = current ? s.at_peak.load(std::memory_order_relaxed) : r.live_bytes;
  return r;
}

}  // namespace poolshim::stats

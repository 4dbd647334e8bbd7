// Per-call-site counters (DESIGN.md, "Call-site statistics"): for each stack id, allocations,
// frees, bytes allocated and freed, live bytes and count, its own peak, its largest request, and
// the bytes it held at the PROCESS-WIDE peak — kept in O(1) per event without replay: a new
// process peak opens an epoch; a site touched after that epoch first records what it held (its
// value has not changed since the peak), and a site never touched since still holds its peak value.
// Counts and byte totals may live in a thread's own site_local (plain stores, no atomic
// read-modify-write: ~6 ns each saved), folded into the shared counters later; live bytes and the
// peaks are always shared relaxed atomics. Counts and byte totals are exact under any number of
// threads (shared + locals); the peak attribution is exact with one thread and approximate when
// threads race on a peak. live_count is not kept: it is allocs - frees. Each allocation also counts
// in its size bucket (poolshim_stats_size_bucket), in the local entry when there is one.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "poolshim/stats_file.h"
#include "stats/sole_writer.h"

namespace poolshim::stats {

struct site_counters {
  std::atomic<std::uint64_t> allocs, frees, bytes_allocated, bytes_freed, largest;
  std::atomic<std::int64_t> live_bytes, live_count, own_peak;
  std::atomic<std::int64_t> at_peak;      // live bytes at the process peak, valid when seen_epoch is current
  std::atomic<std::uint64_t> seen_epoch;  // the peak epoch at_peak belongs to
  std::atomic<std::uint64_t> temporary;   // allocations freed before their thread allocated again
  std::atomic<std::uint64_t> sizes[POOLSHIM_STATS_SIZE_BUCKETS];  // allocations by size bucket
};

// One thread's counts for one site, written by that thread only (the stats file's shard entries).
struct site_local {
  std::uint32_t stack, reserved;
  std::uint64_t allocs, frees, bytes_allocated, bytes_freed, temporary;
  std::uint32_t sizes[POOLSHIM_STATS_SIZE_BUCKETS];  // folded into the shared counters before 2^31
};

struct site_report {
  std::uint64_t allocs, frees, bytes_allocated, bytes_freed, largest;
  std::int64_t live_bytes, live_count, own_peak, at_process_peak;
  std::uint64_t temporary;
  std::uint64_t sizes[POOLSHIM_STATS_SIZE_BUCKETS];
};

// The process-wide figures the sites are measured against (in the stats file's header, or local).
struct process_figures {
  std::atomic<std::int64_t> live{0};
  std::atomic<std::int64_t> peak{0};
  std::atomic<std::uint64_t> epoch{0};  // bumped at every new process peak
};

class site_stats {
 public:
  // `sites` (zeroed) has one entry per stack id 0..count-1 (id 0: untracked stacks); `process`
  // (zeroed) holds the process-wide figures, or the object's own when null.
  site_stats(site_counters* sites, std::size_t count, process_figures* process = nullptr) noexcept
      : sites_(sites), count_(count), process_(process != nullptr ? process : &own_) {}
  site_stats(const site_stats&) = delete;
  site_stats& operator=(const site_stats&) = delete;

  // Returns true when this allocation made a new process-wide peak. With `local` (this thread's
  // entry for id), the counts go there instead of the shared counters. `Ops`: how the shared
  // counters are updated (sole_ops only inside a sole_scope that granted it). Inline: once per event.
  template <class Ops = locked_ops>
  [[gnu::always_inline]] bool on_alloc(std::uint32_t id, std::uint64_t bytes, site_local* local = nullptr) noexcept;
  // `temporary`: the block was the last thing its thread allocated (nothing allocated since).
  template <class Ops = locked_ops>
  [[gnu::always_inline]] void on_free(std::uint32_t id, std::uint64_t bytes, bool temporary = false,
                                      site_local* local = nullptr) noexcept;
  // Adds a thread's counts for l.stack to the shared counters (the caller then clears l).
  void fold(const site_local& l) noexcept;

  // The shared counters of one site (add the threads' locals for the whole figure).
  site_report report(std::uint32_t id) const noexcept;
  std::int64_t live() const noexcept { return process_->live.load(std::memory_order_relaxed); }
  std::int64_t peak() const noexcept { return process_->peak.load(std::memory_order_relaxed); }

 private:
  site_counters& at(std::uint32_t id) noexcept { return sites_[id < count_ ? id : 0]; }
  void settle(site_counters& s) noexcept;
  template <class Ops, class T>
  static void raise_to(std::atomic<T>& c, T v) noexcept {
    T cur = c.load(std::memory_order_relaxed);
    while (cur < v && !Ops::compare_exchange(c, cur, v)) {
    }
  }

  site_counters* sites_;
  std::size_t count_;
  process_figures own_;
  process_figures* process_;
};

// A counter only this thread writes (its site_local, its shard): a plain load and store, no lock
// prefix (another process may read it meanwhile, and sees the old or the new value).
inline void bump(std::uint64_t& c, std::uint64_t v) noexcept {
  std::atomic_ref<std::uint64_t> a(c);
  a.store(a.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}

// Before a site changes: if a process peak happened since it last changed, what it holds now is
// what it held at that peak.
inline void site_stats::settle(site_counters& s) noexcept {
  const std::uint64_t e = process_->epoch.load(std::memory_order_relaxed);
  if (s.seen_epoch.load(std::memory_order_relaxed) != e) {
    s.at_peak.store(s.live_bytes.load(std::memory_order_relaxed), std::memory_order_relaxed);
    s.seen_epoch.store(e, std::memory_order_relaxed);
  }
}

template <class Ops>
inline bool site_stats::on_alloc(std::uint32_t id, std::uint64_t bytes, site_local* local) noexcept {
  // A local size count this large is folded into the shared counters (the local ones are 32-bit).
  constexpr std::uint32_t k_fold_sizes_at = std::uint32_t{1} << 31;
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
      Ops::fetch_add(s.sizes[bucket], std::uint64_t{now});
      n.store(0, std::memory_order_relaxed);
    }
  } else {
    Ops::fetch_add(s.allocs, std::uint64_t{1});
    Ops::fetch_add(s.bytes_allocated, bytes);
    Ops::fetch_add(s.sizes[bucket], std::uint64_t{1});
  }
  raise_to<Ops>(s.largest, bytes);
  const std::int64_t mine = Ops::fetch_add(s.live_bytes, b) + b;
  raise_to<Ops>(s.own_peak, mine);
  const std::int64_t total = Ops::fetch_add(process_->live, b) + b;
  std::int64_t p = process_->peak.load(std::memory_order_relaxed);
  while (total > p) {
    if (Ops::compare_exchange(process_->peak, p, total)) {
      // A new process peak: a new epoch, and this site's share of it is what it holds now.
      const std::uint64_t e = Ops::fetch_add(process_->epoch, std::uint64_t{1}) + 1;
      s.at_peak.store(mine, std::memory_order_relaxed);
      s.seen_epoch.store(e, std::memory_order_relaxed);
      return true;
    }
  }
  return false;
}

template <class Ops>
inline void site_stats::on_free(std::uint32_t id, std::uint64_t bytes, bool temporary, site_local* local) noexcept {
  site_counters& s = at(id);
  settle(s);
  const auto b = static_cast<std::int64_t>(bytes);
  if (local != nullptr) {
    bump(local->frees, 1);
    if (temporary) bump(local->temporary, 1);
    bump(local->bytes_freed, bytes);
  } else {
    Ops::fetch_add(s.frees, std::uint64_t{1});
    if (temporary) Ops::fetch_add(s.temporary, std::uint64_t{1});
    Ops::fetch_add(s.bytes_freed, bytes);
  }
  Ops::fetch_add(s.live_bytes, -b);
  Ops::fetch_add(process_->live, -b);
}

}  // namespace poolshim::stats

// Live bytes over time (struct poolshim_stats_timeline in include/poolshim/stats_file.h), cheap
// enough to be on whenever statistics are: an event looks at the coarse clock only every 8th
// event of its thread (or at a new process peak, whose time it already has), and one sample —
// the process's live bytes and those of up to 8 (device, kind) pairs, all read from the shared
// counters — is written at most once per interval, by whichever thread finds it due first (the
// others skip, never wait); a new process peak between two samples takes the place of the last
// one. A full timeline halves itself (the larger of each pair) and doubles its interval, so the
// whole run fits in a fixed number of samples. Each new sample (not a peak's replacement) also
// looks at the next k_timeline_site_scan slots of the stack table per 10 ms since the one before —
// 64 KiB read in order, never the 4.6 MiB of site counters — and follows the 8 stacks with the
// largest own peak found so far, whose live bytes every sample then reads (8 loads).
#pragma once

#include <time.h>

#include <atomic>
#include <cstdint>

#include "poolshim/stats_file.h"
#include "stats/file_atomic.h"

namespace poolshim::stats {

constexpr std::uint64_t k_timeline_interval_ns = 10'000'000;  // 10 ms at the start
constexpr std::uint32_t k_timeline_check_every = 8;           // events of a thread between clock looks
constexpr std::uint32_t k_timeline_site_scan = 4096;          // stack slots a new sample looks at

class timeline_writer {
 public:
  timeline_writer() noexcept = default;
  // `t` (zeroed, followed by `capacity` samples) in the file; `kinds` and `process_live` are the
  // file's shared counters the samples read; `slots` (slot_count of them, a power of two, or 0:
  // no stacks) and `sites` (slot_count + 1 entries, by stack id) the file's stack table and site
  // counters, for the call sites' lines.
  timeline_writer(poolshim_stats_timeline* t, std::uint32_t capacity, const poolshim_stats_kind* kinds,
                  const std::int64_t* process_live, const poolshim_stats_slot* slots = nullptr,
                  std::uint32_t slot_count = 0, const poolshim_stats_site* sites = nullptr) noexcept
      : t_(t),
        samples_(reinterpret_cast<poolshim_stats_sample*>(t + 1)),
        capacity_(capacity),
        kinds_(kinds),
        live_(process_live),
        slots_(slots),
        slot_count_(slots != nullptr && sites != nullptr ? slot_count : 0),
        sites_(sites) {
    if (t_ != nullptr) t_->interval_ns = k_timeline_interval_ns;
  }

  // After an event that was its thread's `n`-th: a sample when one is due.
  [[gnu::always_inline]] void on_event(std::uint64_t n) noexcept {
    if (capacity_ == 0 || n % k_timeline_check_every != 0) return;
    timespec ts{};
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    const std::uint64_t now =
        static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
    if (now >= atomic_at(t_->next_ns).load(std::memory_order_relaxed)) [[unlikely]]
      sample(now_ns());
  }
  // At a new process peak, whose time the caller has read: a sample when one is due, else the
  // interval's last sample becomes this moment (a short spike between two samples would be lost,
  // and the peak is what a reader looks for first).
  void on_peak(std::uint64_t now) noexcept {
    if (capacity_ != 0) sample(now, now < atomic_at(t_->next_ns).load(std::memory_order_relaxed));
  }
  // Writes a sample now, due or not (the first event, a clean exit), unless another thread is;
  // with `replace_last`, over the last one (a new one when there is none). A new sample looks at
  // k_timeline_site_scan slots per 10 ms since the last one for the sites to follow (all of them
  // at the first sample, or with `every_site`: a clean exit).
  [[gnu::noinline]] void sample(std::uint64_t now, bool replace_last = false, bool every_site = false) noexcept;

 private:
  void write(poolshim_stats_sample& s, std::uint64_t now) noexcept;  // the figures now, at `now`
  void find_sites(std::uint32_t slots) noexcept;                     // the next `slots` slots, for larger own peaks

  poolshim_stats_timeline* t_ = nullptr;
  poolshim_stats_sample* samples_ = nullptr;
  std::uint32_t capacity_ = 0;
  const poolshim_stats_kind* kinds_ = nullptr;
  const std::int64_t* live_ = nullptr;
  const poolshim_stats_slot* slots_ = nullptr;
  std::uint32_t slot_count_ = 0;
  const poolshim_stats_site* sites_ = nullptr;
  // Changed only by the thread that holds `busy` (its acquire and release order them).
  std::uint32_t followed_[POOLSHIM_STATS_TIMELINE_SITES] = {};  // stack ids (0: none yet)
  std::uint32_t next_slot_ = 0;                                 // where the next look starts
};

}  // namespace poolshim::stats

// Writing a timeline sample (timeline.h): out of line, at most once per interval.
#include "stats/timeline.h"

namespace poolshim::stats {
namespace {

template <class T>
T load(const T& v) noexcept {
  return atomic_at(const_cast<T&>(v)).load(std::memory_order_relaxed);
}
template <class T>
void store(T& v, T x) noexcept {
  atomic_at(v).store(x, std::memory_order_relaxed);
}

}  // namespace

void timeline_writer::sample(std::uint64_t now, bool replace_last, bool every_site) noexcept {
  if (capacity_ == 0) return;
  if (atomic_at(t_->busy).exchange(1, std::memory_order_acquire) != 0) return;  // another thread is at it
  // Columns for (device, kind) pairs that hold or held memory, in the order they first did.
  constexpr int k_pairs = POOLSHIM_STATS_DEVICES * POOLSHIM_STATS_KINDS;
  int used = 0;
  while (used < POOLSHIM_STATS_TIMELINE_COLUMNS && t_->columns[used] != 0) ++used;
  for (int p = 0; p < k_pairs && used < POOLSHIM_STATS_TIMELINE_COLUMNS; ++p) {
    if (load(kinds_[p].peak_bytes) == 0) continue;
    bool known = false;
    for (int c = 0; c < used && !known; ++c) known = t_->columns[c] == p + 1;
    if (!known) store<std::uint16_t>(t_->columns[used++], static_cast<std::uint16_t>(p + 1));
  }
  std::uint32_t n = t_->count;
  if (replace_last && n != 0) {
    write(samples_[n - 1], now);
    atomic_at(t_->busy).store(0, std::memory_order_release);
    return;
  }
  // k_timeline_site_scan slots per 10 ms since the last sample: a busy program reads 64 KiB of the
  // table per 10 ms, and one with few events (few samples) the whole table at each.
  const std::uint64_t last = n != 0 ? samples_[n - 1].ns : 0;
  const std::uint64_t spans = now > last ? (now - last) / k_timeline_interval_ns : 0;
  find_sites(every_site || spans >= slot_count_ / k_timeline_site_scan
                 ? slot_count_
                 : k_timeline_site_scan * static_cast<std::uint32_t>(spans < 1 ? 1 : spans));
  if (n >= capacity_) {
    // Full: neighbours merge, the one with more bytes live kept (peaks stay visible).
    for (std::uint32_t i = 0; i < capacity_ / 2; ++i) {
      const poolshim_stats_sample& a = samples_[2 * i];
      const poolshim_stats_sample& b = samples_[2 * i + 1];
      samples_[i] = a.total >= b.total ? a : b;
    }
    n = capacity_ / 2;
    store(t_->interval_ns, t_->interval_ns * 2);
  }
  write(samples_[n], now);
  store(t_->count, n + 1);
  store(t_->next_ns, now + t_->interval_ns);
  atomic_at(t_->busy).store(0, std::memory_order_release);
}

void timeline_writer::find_sites(std::uint32_t slots) noexcept {
  if (slot_count_ == 0) return;
  // The followed site with the smallest own peak: the one a larger newcomer replaces.
  int smallest = 0;
  std::int64_t smallest_peak = 0;
  const auto find_smallest = [&] {
    smallest = -1;
    for (int c = 0; c < POOLSHIM_STATS_TIMELINE_SITES; ++c) {
      const std::int64_t p = followed_[c] != 0 ? load(sites_[followed_[c]].own_peak) : -1;
      if (smallest < 0 || p < smallest_peak) smallest = c, smallest_peak = p;
    }
  };
  find_smallest();
  for (std::uint32_t i = 0; i < slots && i < slot_count_; ++i) {
    const std::uint32_t slot = next_slot_;
    next_slot_ = (next_slot_ + 1) & (slot_count_ - 1);
    if (load(slots_[slot].key) == 0) continue;  // empty (a stack being filled in is fine: its site is)
    const std::uint32_t id = slot + 1;
    const std::int64_t peak = load(sites_[id].own_peak);
    if (peak <= 0 || peak <= smallest_peak) continue;
    bool followed = false;
    for (int c = 0; c < POOLSHIM_STATS_TIMELINE_SITES && !followed; ++c) followed = followed_[c] == id;
    if (followed) continue;
    followed_[smallest] = id;
    find_smallest();
  }
}

void timeline_writer::write(poolshim_stats_sample& s, std::uint64_t now) noexcept {
  store(s.ns, now);
  store(s.total, load(*live_));
  for (int c = 0; c < POOLSHIM_STATS_TIMELINE_COLUMNS; ++c)
    store(s.live[c], t_->columns[c] != 0 ? load(kinds_[t_->columns[c] - 1].live_bytes) : std::int64_t{0});
  for (int c = 0; c < POOLSHIM_STATS_TIMELINE_SITES; ++c) {
    store(s.site[c], followed_[c]);
    store(s.site_live[c], followed_[c] != 0 ? load(sites_[followed_[c]].live_bytes) : std::int64_t{0});
  }
}

}  // namespace poolshim::stats

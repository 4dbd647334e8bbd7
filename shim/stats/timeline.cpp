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

void timeline_writer::sample(std::uint64_t now, bool replace_last) noexcept {
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

void timeline_writer::write(poolshim_stats_sample& s, std::uint64_t now) noexcept {
  store(s.ns, now);
  store(s.total, load(*live_));
  for (int c = 0; c < POOLSHIM_STATS_TIMELINE_COLUMNS; ++c)
    store(s.live[c], t_->columns[c] != 0 ? load(kinds_[t_->columns[c] - 1].live_bytes) : std::int64_t{0});
}

}  // namespace poolshim::stats

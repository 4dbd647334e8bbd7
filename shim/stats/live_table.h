// The stats file's live-pointer table (struct poolshim_stats_live in include/poolshim/
// stats_file.h): every tracked allocation by pointer, so that a free finds its size, stack, device
// and kind, and the tool lists leaks at exit. Open addressing, lock-free, bounded probes; a block
// that finds no slot is not tracked and the file's flags say so (POOLSHIM_STATS_FLAG_LIVE_TABLE_FULL).
// Header-only: insert and remove are on the allocation path.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "poolshim/stats_file.h"
#include "stats/file_atomic.h"
#include "stats/sole_writer.h"

namespace poolshim::stats {

class live_table {
 public:
  static constexpr std::uint64_t k_empty = POOLSHIM_STATS_LIVE_EMPTY;
  static constexpr std::uint64_t k_deleted = POOLSHIM_STATS_LIVE_DELETED;
  static constexpr std::uint64_t k_claimed = POOLSHIM_STATS_LIVE_CLAIMED;  // pointers up to this are not tracked
  // Slots an insert or lookup looks at, at most: deleted slots are reused but never turn empty
  // again, so without a bound a long run would make every untracked free scan the whole table.
  static constexpr std::size_t k_max_probe = 512;

  live_table() noexcept = default;
  // `entries` (zeroed, `capacity` a power of two) and `flags` (the header's) are the caller's.
  live_table(poolshim_stats_live* entries, std::uint32_t capacity, std::uint32_t* flags) noexcept
      : entries_(entries),
        mask_(std::size_t{capacity} - 1),
        probes_(std::min(std::size_t{capacity} - 1, k_max_probe)),
        flags_(flags) {}

  // Puts ptr (> k_claimed) in the table; false when no slot within k_max_probe of its place was
  // free: it is not tracked (its free will count as untracked and its bytes stay live in the
  // figures), said once in the file's flags. `Ops`: how a slot is claimed (sole_ops only inside a
  // sole_scope that granted it).
  template <class Ops = locked_ops>
  bool insert(std::uint64_t ptr, std::uint64_t bytes, std::uint32_t stack, std::uint16_t device,
              std::uint16_t kind) noexcept {
    // The size, stack and kind go in first, then the pointer with release order, so a reader that
    // sees the pointer sees the rest.
    const bool placed = probe(ptr, [&](poolshim_stats_live& e) {
      std::uint64_t cur = atomic_at(e.ptr).load(std::memory_order_acquire);
      if (cur != k_empty && cur != k_deleted) return step::next;
      if (!Ops::compare_exchange(e.ptr, cur, k_claimed)) return step::next;
      e.bytes = bytes;
      e.stack = stack;
      e.device = device;
      e.kind = kind;
      atomic_at(e.ptr).store(ptr, std::memory_order_release);
      return step::found;
    });
    if (!placed && (atomic_at(*flags_).load(std::memory_order_relaxed) & POOLSHIM_STATS_FLAG_LIVE_TABLE_FULL) == 0)
      atomic_at(*flags_).fetch_or(POOLSHIM_STATS_FLAG_LIVE_TABLE_FULL, std::memory_order_relaxed);
    return placed;
  }

  // Takes ptr out of the table, its entry in *out; false when it is not there (never tracked).
  template <class Ops = locked_ops>
  bool remove(std::uint64_t ptr, poolshim_stats_live* out) noexcept {
    return probe(ptr, [&](poolshim_stats_live& e) {
      std::uint64_t cur = atomic_at(e.ptr).load(std::memory_order_acquire);
      if (cur == k_empty) return step::stop;
      if (cur != ptr) return step::next;
      // The entry is read while it is still ours (published, not yet deleted): once deleted,
      // another thread may claim the slot and overwrite it.
      *out = poolshim_stats_live{ptr, e.bytes, e.stack, e.device, e.kind};
      if (!Ops::compare_exchange(e.ptr, cur, k_deleted)) return step::next;
      return step::found;
    });
  }

  // Whether ptr is in the table, its entry in *out (for tests and readers in this process).
  bool find(std::uint64_t ptr, poolshim_stats_live* out) const noexcept {
    return probe(ptr, [&](poolshim_stats_live& e) {
      const std::uint64_t cur = atomic_at(e.ptr).load(std::memory_order_acquire);
      if (cur == k_empty) return step::stop;
      if (cur != ptr) return step::next;
      *out = poolshim_stats_live{ptr, e.bytes, e.stack, e.device, e.kind};
      return step::found;
    });
  }

  // The first slot ptr's probe looks at (tests fill a neighbourhood with it).
  std::size_t home_of(std::uint64_t ptr) const noexcept { return hash(ptr) & mask_; }

 private:
  enum class step { next, found, stop };

  static std::size_t hash(std::uint64_t ptr) noexcept {
    const std::uint64_t x = ptr * 0x9e3779b97f4a7c15ull;
    return static_cast<std::size_t>(x ^ (x >> 29));
  }

  // The probe sequence, written once: linear from ptr's place, at most probes_ + 1 slots.
  template <class Visit>
  bool probe(std::uint64_t ptr, Visit visit) const noexcept {
    for (std::size_t n = 0, i = hash(ptr) & mask_; n <= probes_; ++n, i = (i + 1) & mask_) {
      const step s = visit(entries_[i]);
      if (s == step::found) return true;
      if (s == step::stop) return false;
    }
    return false;
  }

  poolshim_stats_live* entries_ = nullptr;
  std::size_t mask_ = 0;
  std::size_t probes_ = 0;
  std::uint32_t* flags_ = nullptr;
};

}  // namespace poolshim::stats

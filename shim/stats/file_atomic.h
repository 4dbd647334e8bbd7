// What every part of the recorder needs to write the mapped stats file (include/poolshim/
// stats_file.h): an atomic view of a plain C field (the file's structs are C, shared with readers
// in other processes) and the file's clock. Header-only: these are on the allocation path.
#pragma once

#include <time.h>

#include <atomic>
#include <cstdint>

namespace poolshim::stats {

// The field as an atomic: the same size and alignment, so other processes see whole values.
template <class T>
inline std::atomic<T>& atomic_at(T& v) noexcept {
  static_assert(sizeof(std::atomic<T>) == sizeof(T));
  return *reinterpret_cast<std::atomic<T>*>(&v);
}

// CLOCK_REALTIME in ns: every time in the file (start, end, peaks, events) is on this clock.
inline std::uint64_t now_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace poolshim::stats

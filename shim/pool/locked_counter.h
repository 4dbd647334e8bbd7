// The pools' counters that are written only with their mutex held: a relaxed load and store, no
// locked instruction (stats() reads them without the lock). One copy for device_pool and host_pool.
#pragma once

#include <atomic>
#include <cstdint>
#include <type_traits>

namespace poolshim::pool {

template <class T>
inline void locked_add(std::atomic<T>& c, std::type_identity_t<T> delta) noexcept {
  c.store(c.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
}

inline void locked_peak(std::atomic<std::uint64_t>& peak, std::uint64_t value) noexcept {
  if (value > peak.load(std::memory_order_relaxed)) peak.store(value, std::memory_order_relaxed);
}

}  // namespace poolshim::pool

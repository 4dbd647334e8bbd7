// Size rounding of the device pool. Small requests round up to 512 B. Large requests round up to
// one of 64 classes between consecutive powers of two (2^k * (1 + j/64)), so a dedicated segment
// wastes at most 1/64 of its request; the idle cache reuses a block across classes (device_pool.h).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

namespace poolshim::pool {

inline constexpr unsigned kSmallShift = 9;  // 512 B
inline constexpr std::size_t kSmallGranule = std::size_t{1} << kSmallShift;
inline constexpr std::size_t kMaxLargeRequest = std::size_t{1} << 46;
inline constexpr unsigned kLargeClassBits = 6;  // 2^6 classes per power of two
inline constexpr unsigned kLargeClasses = (1u << kLargeClassBits) * 48;

constexpr std::size_t round_small(std::size_t bytes) noexcept {
  return (bytes + kSmallGranule - 1) & ~(kSmallGranule - 1);
}

// For 2^bits <= bytes <= kMaxLargeRequest: the class size (>= bytes, < bytes * (1 + 2^-bits) + 1).
constexpr std::size_t large_class_size(std::size_t bytes, unsigned bits = kLargeClassBits) noexcept {
  const unsigned k = static_cast<unsigned>(std::bit_width(bytes)) - 1;  // 2^k <= bytes < 2^(k+1)
  const std::size_t step = std::size_t{1} << (k - bits);
  return (bytes + step - 1) & ~(step - 1);
}

// Index of a class size returned by large_class_size(); consecutive classes have consecutive indexes.
constexpr unsigned large_class_index(std::size_t class_size) noexcept {
  const unsigned k = static_cast<unsigned>(std::bit_width(class_size)) - 1;
  constexpr unsigned n = 1u << kLargeClassBits;
  return k * n + static_cast<unsigned>(class_size >> (k - kLargeClassBits)) - n;
}

static_assert(large_class_size(std::size_t{1} << 20) == std::size_t{1} << 20);
static_assert(large_class_size((std::size_t{1} << 20) + 1) == (std::size_t{65} << 14));
static_assert(large_class_size((std::size_t{1} << 20) + 1, 3) == (std::size_t{9} << 17));
static_assert(large_class_index(std::size_t{65} << 14) == large_class_index(std::size_t{1} << 20) + 1);
static_assert(large_class_index(std::size_t{2} << 20) == large_class_index(std::size_t{127} << 14) + 1);
static_assert(large_class_index(large_class_size(kMaxLargeRequest)) < kLargeClasses);

}  // namespace poolshim::pool

// Size rounding of the device pool. Small requests round up to 512 B. Large requests round up to
// one of eight classes between consecutive powers of two (2^k * (1 + j/8)), so a dedicated
// segment wastes at most 12.5% of its request.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

namespace poolshim::pool {

inline constexpr unsigned kSmallShift = 9;  // 512 B
inline constexpr std::size_t kSmallGranule = std::size_t{1} << kSmallShift;
inline constexpr std::size_t kMaxLargeRequest = std::size_t{1} << 46;
inline constexpr unsigned kLargeClasses = 8 * 48;

constexpr std::size_t round_small(std::size_t bytes) noexcept {
  return (bytes + kSmallGranule - 1) & ~(kSmallGranule - 1);
}

// For 8 <= bytes <= kMaxLargeRequest: the class size (>= bytes, < bytes * 1.125 + 1).
constexpr std::size_t large_class_size(std::size_t bytes) noexcept {
  const unsigned k = static_cast<unsigned>(std::bit_width(bytes)) - 1;  // 2^k <= bytes < 2^(k+1)
  const std::size_t step = std::size_t{1} << (k - 3);
  return (bytes + step - 1) & ~(step - 1);
}

// Index of a class size returned by large_class_size(); consecutive classes have consecutive indexes.
constexpr unsigned large_class_index(std::size_t class_size) noexcept {
  const unsigned k = static_cast<unsigned>(std::bit_width(class_size)) - 1;
  return k * 8 + static_cast<unsigned>(class_size >> (k - 3)) - 8;
}

static_assert(large_class_size(std::size_t{1} << 20) == std::size_t{1} << 20);
static_assert(large_class_size((std::size_t{1} << 20) + 1) == (std::size_t{9} << 17));
static_assert(large_class_index(std::size_t{9} << 17) == large_class_index(std::size_t{1} << 20) + 1);
static_assert(large_class_index(std::size_t{2} << 20) == large_class_index(std::size_t{15} << 17) + 1);
static_assert(large_class_index(large_class_size(kMaxLargeRequest)) < kLargeClasses);

}  // namespace poolshim::pool

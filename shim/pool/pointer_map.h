// Pointer map: from an address to its pool block in O(1), lock-free. Level 1 is a radix table keyed
// by address >> 21 (2 MiB chunks; leaves created off the hit path when a segment is added), each
// chunk naming the segments that overlap it (segments exceed 256 KiB, so at most 9); level 2 is the
// segment's table of block records by offset / 512 B. Inserts and erases happen under the
// owning pool's lock; lookups are acquire loads and never fault on foreign or stale addresses.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "pool/block.h"
#include "pool/size_classes.h"

namespace poolshim::pool {

class pointer_map {
 public:
  static constexpr unsigned kChunkShift = 21;
  static constexpr unsigned kAddressBits = 48;
  static constexpr unsigned kLeafBits = 14;
  static constexpr unsigned kTopBits = kAddressBits - kChunkShift - kLeafBits;
  static constexpr std::size_t kMinSegment = std::size_t{256} << 10;  // callers never insert smaller
  static constexpr int kSlots = 9;  // one segment from before the chunk, up to 8 starting in it

  pointer_map() noexcept = default;
  pointer_map(const pointer_map&) = delete;
  pointer_map& operator=(const pointer_map&) = delete;
  ~pointer_map();

  // The segment holding p, or nullptr.
  segment_info* find_segment(std::uintptr_t p) const noexcept {
    const std::uintptr_t chunk = p >> kChunkShift;
    if (chunk >> (kTopBits + kLeafBits)) return nullptr;
    const leaf* l = top_[chunk >> kLeafBits].load(std::memory_order_acquire);
    if (l == nullptr) return nullptr;
    const auto& e = l->chunks[chunk & ((std::uintptr_t{1} << kLeafBits) - 1)];
    for (const auto& slot : e) {
      segment_info* s = slot.load(std::memory_order_acquire);
      if (s != nullptr && p - s->seg.base < s->seg.size) return s;
    }
    return nullptr;
  }
  // The block record starting exactly at p (any state), or nullptr (unknown or interior pointer).
  block* find_block(std::uintptr_t p) const noexcept {
    const segment_info* s = find_segment(p);
    if (s == nullptr) return nullptr;
    const std::uintptr_t off = p - s->seg.base;
    const std::uintptr_t index = off >> kSmallShift;
    if ((off & (kSmallGranule - 1)) != 0 || index >= s->table_len) return nullptr;
    return s->table[index].load(std::memory_order_acquire);
  }

  // Publishes s for every chunk it overlaps. False on host OOM or an address beyond 48 bits.
  bool insert(segment_info* s) noexcept;
  void erase(const segment_info* s) noexcept;

 private:
  struct leaf {
    std::array<std::array<std::atomic<segment_info*>, kSlots>, std::size_t{1} << kLeafBits> chunks;
  };

  std::array<std::atomic<leaf*>, std::size_t{1} << kTopBits> top_{};
};

}  // namespace poolshim::pool

// Best-fit allocator over segments of any size, in units of 512 B (the pointer map's): split on
// allocate, O(1) coalescing with address-order neighbours on free, never across segments. It is the
// small-block machinery of the device pool (2 MiB segments, 512 B units) and of the pinned host
// pool (slabs, above its power-of-two buckets). Not thread-safe: the owning pool holds its lock.
// Only ready blocks enter it; blocks waiting for a fence stay with the pool (see device_pool.h).
#pragma once

#include <cstddef>
#include <set>

#include "pool/block.h"
#include "pool/size_classes.h"

namespace poolshim::pool {

class best_fit_allocator {
 public:
  explicit best_fit_allocator(block_arena& arena) noexcept : arena_(arena) {}
  best_fit_allocator(const best_fit_allocator&) = delete;
  best_fit_allocator& operator=(const best_fit_allocator&) = delete;

  // Number of table entries a segment of `bytes` needs (segment_info::table_len).
  static std::size_t table_len(std::size_t bytes) noexcept { return bytes >> kSmallShift; }

  // Adds s (s->table already sized by table_len and zeroed) as one free block. False on host OOM.
  bool add_segment(segment_info* s) noexcept;
  // The smallest free block of at least `bytes` (a multiple of the granularity), split to exactly
  // `bytes`; its state is left to the caller. nullptr if none fits (or the host is out of memory).
  block* allocate(std::size_t bytes) noexcept;
  // Same, but only from segment s (used right after adding a segment for this request).
  block* allocate_from(segment_info* s, std::size_t bytes) noexcept;
  // Takes back a block handed out by allocate(); merges it with free neighbours.
  void deallocate(block* b) noexcept;
  // True when every byte of s is free (one block covering it).
  static bool idle(const segment_info* s) noexcept { return s->used == 0; }
  // Removes an idle segment; its records are recycled and its table cleared.
  void remove_segment(segment_info* s) noexcept;

  std::size_t free_bytes() const noexcept { return free_bytes_; }
  std::size_t free_blocks() const noexcept { return free_.size(); }

 private:
  struct by_size_then_address {
    using is_transparent = void;
    bool operator()(const block* a, const block* b) const noexcept {
      return a->size != b->size ? a->size < b->size : a->addr < b->addr;
    }
    bool operator()(const block* a, std::size_t bytes) const noexcept { return a->size < bytes; }
    bool operator()(std::size_t bytes, const block* b) const noexcept { return bytes < b->size; }
  };

  block* take(block* b, std::size_t bytes) noexcept;
  bool insert(block* b) noexcept;
  void set_entry(const block* b, block* value) noexcept;

  block_arena& arena_;
  std::set<block*, by_size_then_address> free_;  // nodes allocated off the hit path only
  std::size_t free_bytes_ = 0;
};

}  // namespace poolshim::pool

// Block and segment records shared by the pools, the best-fit allocator and the pointer map.
// They live in host memory beside the (device) memory they describe, are recycled but never freed
// while a pool lives, so a lock-free lookup racing with a bad free reads stale but valid memory.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "pool/segment_resource.h"

namespace poolshim::pool {

enum class block_state : std::uint8_t {
  free,             // in a best-fit allocator's free index (ready for reuse)
  pending,          // freed, waiting for its ready_epoch to complete
  cached,           // in a thread cache (carries its epoch there)
  small_allocated,  // handed out, split from a shared segment
  large_allocated,  // handed out, owns its whole segment
  large_cached,     // in the pool's idle cache of whole segments (may be pending)
  retired,          // record on the recycle list
};

struct segment_info;

struct block {
  std::uintptr_t addr = 0;
  std::size_t size = 0;
  // Address-order neighbours inside a small segment (never across segments); for a cached large
  // block, its neighbours in the pool's idle list (oldest first).
  block* prev = nullptr;
  block* next = nullptr;
  segment_info* seg = nullptr;
  block* link = nullptr;  // pending list, recycle list
  std::uint64_t ready_epoch = 0;
  std::size_t requested = 0;  // a live large block: the bytes asked for (size - requested is slack)
  std::atomic<block_state> state{block_state::retired};
};

struct segment_info {
  segment seg;
  // table[offset >> granularity shift] = block starting there, nullptr elsewhere. Written under the
  // pool's lock with release stores, read lock-free on the free path.
  std::atomic<block*>* table = nullptr;
  std::size_t table_len = 0;
  std::atomic<block*> single{nullptr};         // the table of a large segment (one entry)
  std::atomic<block*>* owned_table = nullptr;  // the table of a small segment, kept when recycled
  std::size_t used = 0;                        // bytes not in the free index (allocated, cached, pending)
  bool large = false;
  std::uint32_t size_class = 0;
  segment_info* prev = nullptr;  // the pool's list of segments
  segment_info* next = nullptr;
};

// Recycles block records; grows in chunks off the hit path. Not thread-safe (callers hold a lock).
class block_arena {
 public:
  block_arena() = default;
  block_arena(const block_arena&) = delete;
  block_arena& operator=(const block_arena&) = delete;
  ~block_arena();

  block* make() noexcept;  // nullptr only if the host is out of memory
  void recycle(block* b) noexcept;

 private:
  static constexpr std::size_t kChunk = 256;
  block* free_ = nullptr;
  std::vector<block*> chunks_;
};

}  // namespace poolshim::pool

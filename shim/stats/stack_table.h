// Interning of call stacks: a 64-bit hash of the frames → an insert-only, lock-free, open-addressed
// table → a 32-bit stack id (DESIGN.md, "Call-site statistics"). Storage is fixed at construction
// (slots and a frame arena, both caller-provided so that they can live in the stats file); when
// either is full, new stacks get id 0 ("untracked") and the caller counts them there. Lookups of a
// known stack are a hash, a few acquire loads and a frame compare; no locks, no allocation.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace poolshim::stats {

struct stack_slot {
  std::atomic<std::uint64_t> key;  // 0: empty; the frames' hash (never 0) | k_busy while filled in
  std::uint32_t frames_at;         // index of the first frame in the arena
  std::uint32_t depth;
};

class stack_table {
 public:
  static constexpr std::uint64_t k_busy = std::uint64_t{1} << 63;
  static constexpr std::uint32_t k_no_frames = UINT32_MAX;  // depth of a stack kept by hash alone

  // `slots` (a power of two, zeroed) and `arena` (zeroed) are the caller's, and outlive the table.
  stack_table(stack_slot* slots, std::size_t slot_count, std::uintptr_t* arena, std::size_t arena_frames) noexcept;

  // The id of this stack (1..slot_count), inserting it when new; 0 when the table is full.
  std::uint32_t intern(const void* const* frames, int depth) noexcept;
  // The frames of a stack id (nullptr for 0 or an id not yet published).
  const std::uintptr_t* frames_of(std::uint32_t id, int* depth) const noexcept;
  std::size_t size() const noexcept { return used_.load(std::memory_order_relaxed); }

  static std::uint64_t hash(const void* const* frames, int depth) noexcept;

 private:
  bool same(const stack_slot& s, const void* const* frames, int depth) const noexcept;

  stack_slot* slots_;
  std::size_t mask_;
  std::uintptr_t* arena_;
  std::size_t arena_frames_;
  std::atomic<std::size_t> arena_used_{0};
  std::atomic<std::size_t> used_{0};
};

}  // namespace poolshim::stats

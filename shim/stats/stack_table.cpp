// The stack interning table (stack_table.h).
#include "stats/stack_table.h"

#include <thread>

namespace poolshim::stats {

stack_table::stack_table(stack_slot* slots, std::size_t slot_count, std::uintptr_t* arena,
                         std::size_t arena_frames) noexcept
    : slots_(slots), mask_(slot_count - 1), arena_(arena), arena_frames_(arena_frames) {}

std::uint64_t stack_table::hash(const void* const* frames, int depth) noexcept {
  // 64-bit mix of every frame address (splitmix-style), then the depth.
  std::uint64_t h = 0x9e3779b97f4a7c15ull ^ static_cast<std::uint64_t>(depth);
  for (int i = 0; i < depth; ++i) {
    std::uint64_t x = reinterpret_cast<std::uintptr_t>(frames[i]) + 0x9e3779b97f4a7c15ull * (i + 1);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    h = (h ^ (x ^ (x >> 31))) * 0x100000001b3ull;
  }
  h &= ~k_busy;
  return h == 0 ? 1 : h;
}

bool stack_table::same(const stack_slot& s, const void* const* frames, int depth) const noexcept {
  if (s.depth != static_cast<std::uint32_t>(depth)) return false;
  for (int i = 0; i < depth; ++i)
    if (arena_[s.frames_at + static_cast<std::size_t>(i)] != reinterpret_cast<std::uintptr_t>(frames[i])) return false;
  return true;
}

// Slots an intern looks at, at most, and the share of the table it fills before it stops taking
// new stacks: without both, a full table made every event of a stack not in it scan all slots
// (about 60 us per event with 2^14 slots). A stack inserted within the probe bound is found again
// within it, so the bound loses nothing that was kept.
constexpr std::size_t k_max_probe = 128;

std::uint32_t stack_table::intern(const void* const* frames, int depth) noexcept {
  if (depth < 0) return 0;
  const std::uint64_t key = hash(frames, depth);
  const bool room = used_.load(std::memory_order_relaxed) < (mask_ + 1) / 4 * 3;
  const std::size_t probes = mask_ < k_max_probe ? mask_ : k_max_probe;
  for (std::size_t probe = 0, i = key & mask_; probe <= probes; ++probe, i = (i + 1) & mask_) {
    stack_slot& s = slots_[i];
    std::uint64_t k = s.key.load(std::memory_order_acquire);
    if (k == 0) {
      if (!room) return 0;  // not in the table (it would be before the first empty slot)
      if (s.key.compare_exchange_strong(k, key | k_busy, std::memory_order_acq_rel)) {
        // Claimed: room for the frames, then publish. With the arena full the stack is kept by its
        // 64-bit hash alone (it still counts; the report shows it without frames).
        std::size_t at = arena_used_.fetch_add(static_cast<std::size_t>(depth), std::memory_order_relaxed);
        if (at + static_cast<std::size_t>(depth) > arena_frames_ || at > UINT32_MAX) {
          s.depth = k_no_frames;
          s.frames_at = 0;
        } else {
          for (int f = 0; f < depth; ++f)
            arena_[at + static_cast<std::size_t>(f)] = reinterpret_cast<std::uintptr_t>(frames[f]);
          s.frames_at = static_cast<std::uint32_t>(at);
          s.depth = static_cast<std::uint32_t>(depth);
        }
        used_.fetch_add(1, std::memory_order_relaxed);
        s.key.store(key, std::memory_order_release);
        return static_cast<std::uint32_t>(i + 1);
      }
      // Lost the race for this slot: k now holds what the winner wrote.
    }
    if ((k & ~k_busy) != key) continue;
    // The winner is still copying frames, a few instructions away, unless it was preempted (or it
    // is a signal handler's event on this very thread, waiting on itself): bounded, then the
    // event goes without a stack id rather than spinning for ever.
    for (int spin = 0; (k & k_busy) != 0; ++spin) {
      if (spin == 1000) return 0;
      std::this_thread::yield();
      k = s.key.load(std::memory_order_acquire);
    }
    if (s.depth == k_no_frames || same(s, frames, depth)) return static_cast<std::uint32_t>(i + 1);
  }
  return 0;
}

const std::uintptr_t* stack_table::frames_of(std::uint32_t id, int* depth) const noexcept {
  if (id == 0 || id > mask_ + 1) return nullptr;
  const stack_slot& s = slots_[id - 1];
  const std::uint64_t k = s.key.load(std::memory_order_acquire);
  if (k == 0 || (k & k_busy) != 0) return nullptr;
  *depth = s.depth == k_no_frames ? 0 : static_cast<int>(s.depth);
  return arena_ + s.frames_at;
}

}  // namespace poolshim::stats

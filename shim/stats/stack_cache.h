// The per-thread shortcut of the call-site statistics (DESIGN.md): a program allocates from the
// same stack again and again, so each thread remembers its last stacks with the stack addresses
// that hold their return addresses. When the recorder's own frame is where it was then and every
// remembered slot still holds the same return address, the call chain is the same (to the depth
// kept): the stack id is reused without unwinding — a few dozen loads instead of ~7 ns per frame.
#pragma once

#include <cstdint>

namespace poolshim::stats {

// Cache-hit re-check: one hit in k_recheck, drawn at random (a fixed stride would alias with a
// program that alternates a right and a wrong hit), is unwound anyway and compared with the id.
// The premise (same stack pointer and the same return address in every remembered slot means the
// same call chain) fails for frames whose size varies (alloca, dynamic realignment): a caller's
// slot moves and the old place still holds the old return address. A wrong hit turns the
// thread's cache off, so a misattribution lasts at most ~k_recheck events of one thread.
constexpr std::uint32_t k_recheck = 64;
// Captures with slots (unw_step: about 25 sigprocmask calls per event with the system libunwind,
// ~15 us) are rate-limited: the first k_free_captures of a thread, then one per k_capture_every
// misses. A loop over more sites than the cache holds then keeps most of them cached (a cache
// that took every miss would evict the next site each time, LRU on a cycle), and the others cost
// an unw_backtrace (~7 ns per frame) instead of a capture.
constexpr std::uint32_t k_free_captures = 16;
constexpr std::uint32_t k_capture_every = 256;
constexpr int k_cached_stacks = 8;  // a loop over a few call sites stays in the cache
constexpr int k_cached_depth = 64;  // the recorder keeps at most 64 frames

// One thread's cache (~8.7 KB: the recorder allocates it with the thread's state, never in TLS).
// Zero-initialised it is empty and unusable until set_stack. Used by its thread only.
class stack_cache {
 public:
  // The thread's own stack, mapped for as long as the thread lives: the cache is used only while
  // the stack pointer and every remembered slot lie in it, so reading a slot can never fault (a
  // coroutine or fiber stack, or a sigaltstack, may be unmapped by the next event).
  void set_stack(std::uintptr_t lo, std::uintptr_t hi) noexcept {
    stack_lo_ = lo;
    stack_hi_ = hi;
  }
  bool on_own_stack(std::uintptr_t a) const noexcept {
    return a >= stack_lo_ && a + sizeof(std::uintptr_t) <= stack_hi_;
  }
  // Whether an event whose recorder frame is at `sp` may use the cache.
  bool usable(std::uintptr_t sp) const noexcept { return !off_ && on_own_stack(sp); }
  bool off() const noexcept { return off_; }

  // The id remembered for `sp` whose slots all still hold their return addresses; 0: a miss.
  // Forced inline: on every event that may use the cache (a call here would be a call more per
  // event than before the recorder was split into parts).
  [[gnu::always_inline]] std::uint32_t lookup(std::uintptr_t sp) noexcept {
    for (int pos = 0; pos < k_cached_stacks && order_at(pos) != 0; ++pos) {
      const entry& c = entry_[order_at(pos) - 1];
      if (c.sp != sp || c.id == 0) continue;
      // Four frames at a time, without a branch per frame. Stacks that differ mostly differ near
      // the inside (another call site, a few frames past the CUDA runtime's own) or near the
      // outside (the same loop reached from another place in main): those groups first, the
      // middle last.
      const int groups = (c.depth + 3) / 4;
      if (group_diff(c, 0) != 0 || (groups > 1 && group_diff(c, 1) != 0) ||
          (groups > 2 && group_diff(c, groups - 1) != 0))
        continue;
      std::uintptr_t diff = 0;
      for (int g = 2; g < groups - 1 && diff == 0; ++g) diff = group_diff(c, g);
      if (diff == 0) {
        if (pos != 0) move_to_front(pos);
        return c.id;
      }
    }
    return 0;
  }

  // After a hit: whether to unwind anyway, to check it (see k_recheck). Seeded alike in every
  // thread, so that runs repeat exactly.
  bool recheck() noexcept {
    std::uint32_t x = rng_ != 0 ? rng_ : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    rng_ = x;
    return x % k_recheck == 0;
  }

  // The re-check of `hit` unwound `id` (0: the table is full, nothing to tell): the id to count
  // the event under. A wrong hit turns the cache off for good.
  std::uint32_t checked(std::uint32_t hit, std::uint32_t id) noexcept {
    if (hit == id || id == 0) return hit;
    off_ = true;
    return id;
  }

  // After a miss: whether this one may take a capture with slots (see k_capture_every).
  bool take_capture() noexcept {
    ++misses_;
    if (captures_ >= k_free_captures && misses_ < k_capture_every) return false;
    ++captures_;
    misses_ = 0;
    return true;
  }

  // Remembers stack `id` for `sp`: `frames[i]`'s return address lies at `slots[i]` (depth of
  // them, at most k_cached_depth). Nothing, and false, when a slot lies off the thread's stack.
  bool remember(std::uintptr_t sp, const void* const* frames, const std::uintptr_t* slots, int depth,
                std::uint32_t id) noexcept;
  // Captures the calling chain with slots (unw_step) and remembers `frames` (depth of them, the
  // recorder's caller first, unwound at `sp` with `max` frames asked) when that capture gives the
  // same frames past the shim's own (those in [shim_begin, shim_end)).
  [[gnu::noinline]] void capture(std::uintptr_t sp, void* const* frames, int depth, std::uint32_t id, int max,
                                 std::uintptr_t shim_begin, std::uintptr_t shim_end) noexcept;

 private:
  struct entry {
    std::uintptr_t sp;  // the recorder's frame address when this was recorded
    int depth;
    std::uint32_t id;
    struct {
      std::uintptr_t slot, ip;  // where a return address lives on the stack, and what it was
    } frames[k_cached_depth];
  };

  [[gnu::always_inline]] static std::uintptr_t group_diff(const entry& c, int g) noexcept {
    const auto* f = c.frames + 4 * g;
    return (*reinterpret_cast<const std::uintptr_t*>(f[0].slot) ^ f[0].ip) |
           (*reinterpret_cast<const std::uintptr_t*>(f[1].slot) ^ f[1].ip) |
           (*reinterpret_cast<const std::uintptr_t*>(f[2].slot) ^ f[2].ip) |
           (*reinterpret_cast<const std::uintptr_t*>(f[3].slot) ^ f[3].ip);
  }
  int order_at(int pos) const noexcept { return static_cast<int>((order_ >> (8 * pos)) & 0xff); }
  void move_to_front(int pos) noexcept {
    const std::uint64_t hit = (order_ >> (8 * pos)) & 0xff;
    const std::uint64_t below = order_ & ((std::uint64_t{1} << (8 * pos)) - 1);  // pos < 8
    const std::uint64_t above = pos == 7 ? 0 : order_ & ~((std::uint64_t{1} << (8 * (pos + 1))) - 1);
    order_ = above | (below << 8) | hit;
  }

  std::uintptr_t stack_lo_{}, stack_hi_{};  // 0, 0: unknown, no cache
  std::uint32_t rng_{};                     // xorshift state for the sampled re-check (0: not seeded yet)
  std::uint32_t misses_{};                  // cache misses and captures with slots, for their rate limit
  std::uint32_t captures_{};
  bool off_{};  // a re-check found a wrong hit: this thread's stacks are not what
                // the cache's premise needs (frames of varying size), unwind always
  entry entry_[k_cached_stacks]{};
  // Entries most recently used first (order byte i - 1 is an index; 0: not used yet): a hit stops
  // the scan, so stacks no longer in use (a warm-up reached from elsewhere) sink to the end and
  // cost nothing until they are replaced.
  std::uint64_t order_{};  // byte i: the entry used i-th most recently
};

}  // namespace poolshim::stats

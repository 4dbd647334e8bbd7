// The per-thread shortcut of the call-site statistics (DESIGN.md): a program allocates from the
// same stacks again and again, so each thread remembers up to 256 stacks with the stack addresses
// that hold their return addresses. When the recorder's own frame is where it was then and every
// remembered slot still holds the same return address, the call chain is the same (to the depth
// kept): the stack id is reused without unwinding — a few dozen loads instead of ~7 ns per frame.
#pragma once

#include <cstdint>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace poolshim::stats {

// Cache-hit re-check: one hit in k_recheck on average, at random gaps (a fixed stride would alias
// with a program that alternates a right and a wrong hit; gaps drawn uniformly from 1 to
// 2 * k_recheck - 1 land on any periodic pattern's wrong hits as often as they occur), is unwound
// anyway and compared with the id.
// The premise (same stack pointer and the same return address in every remembered slot means the
// same call chain) fails for frames whose size varies (alloca, dynamic realignment): a caller's
// slot moves and the old place still holds the old return address. A wrong hit turns the
// thread's cache off, so a misattribution lasts at most ~k_recheck events of one thread.
constexpr std::uint32_t k_recheck = 64;
// A capture with slots (unw_step: about 25 sigprocmask calls per event with the system libunwind,
// ~15 us) is taken on a miss whose stack would go into an empty place of the cache; one that
// would evict a stack is rate-limited to one per k_capture_every misses (a loop over more stacks
// than a set holds would otherwise evict the next one each time and capture on every event), and
// after k_failed_captures captures that could not be remembered (frames that differ between the
// two unwinders, slots off the stack) only the rate-limited ones are left. The rest cost an
// unw_backtrace (~7 ns per frame).
constexpr std::uint32_t k_capture_every = 256;
constexpr std::uint32_t k_failed_captures = 16;
constexpr int k_cached_depth = 64;  // the recorder keeps at most 64 frames
// 16 sets of 16 stacks, a set chosen by a hash of the recorder's frame address and the return
// addresses at up to k_key_slots places of the stack (where the first stack remembered at that
// frame address had them: its "shape"). 64 call sites in turn overfill one of 16 sets of 16 with
// a chance of about 1e-5 (8 ways of 32 sets: ~1%); the ways' tags are compared four at a time. A
// full set replaces a stack not hit since the clock hand last passed it.
constexpr int k_cache_ways = 16;
constexpr int k_cache_sets = 16;
constexpr int k_cache_entries = k_cache_ways * k_cache_sets;
constexpr int k_shapes = 64;  // frame addresses with a shape at once (pairs of two by hash)
constexpr int k_key_slots = 8;

// One thread's cache. The object itself is 3.9 KB (sets' tags, shapes) and lives in the thread's
// state, allocated by the recorder on the thread's first event (never in TLS); the 256 stacks are
// one anonymous mapping of 196 KiB made by set_stack (784 bytes a stack: 64 slots of 4-byte offset
// and 8-byte return address and a 16-byte head), resident only where stacks were stored (16 KiB
// for 4 stacks, 52 KiB for 16, 104 KiB for 64: a set's stacks lie together). Zero-initialised it is
// empty and unusable until set_stack. Used by its thread only.
class stack_cache {
 public:
  stack_cache() noexcept = default;
  ~stack_cache();
  stack_cache(const stack_cache&) = delete;
  stack_cache& operator=(const stack_cache&) = delete;

  // The thread's own stack, mapped for as long as the thread lives: the cache is used only while
  // the stack pointer and every remembered slot lie in it, so reading a slot can never fault (a
  // coroutine or fiber stack, or a sigaltstack, may be unmapped by the next event). Maps the
  // stacks' storage the first time; false (and no cache) when it cannot.
  bool set_stack(std::uintptr_t lo, std::uintptr_t hi) noexcept;
  // Forgets every stack, the rate limits and a turned-off state (a fork child's new file).
  void reset() noexcept;
  bool on_own_stack(std::uintptr_t a) const noexcept {
    return a >= stack_lo_ && a + sizeof(std::uintptr_t) <= stack_hi_;
  }
  // Whether an event whose recorder frame is at `sp` may use the cache.
  bool usable(std::uintptr_t sp) const noexcept { return !off_ && entries_ != nullptr && on_own_stack(sp); }
  bool off() const noexcept { return off_; }

  // The id remembered for `sp` whose slots all still hold their return addresses; 0: a miss.
  // Forced inline: on every event that may use the cache (a call here would be a call more per
  // event than before the recorder was split into parts). Stacks with one key are compared in
  // the order of their ways; a hit behind another one's trades places with it, so that of two
  // such stacks the one in use is compared first (two compares of ~4 instructions a frame
  // otherwise, the first failing late when the stacks differ far from the inside).
  [[gnu::always_inline]] std::uint32_t lookup(std::uintptr_t sp) noexcept {
    const shape* s = shape_of(sp);
    if (s == nullptr) return 0;
    const std::uint64_t k = key(*s, sp);
    const int set = set_of(k);
    set_meta& m = sets_[set];
    std::uint32_t passed = 0;  // ways with the tag whose stack was another
    for (std::uint32_t ways = ways_tagged(m, tag_of(k)); ways != 0; ways &= ways - 1) {
      const int w = __builtin_ctz(ways);
      entry& c = entry_at(set, w);
      if (c.sp == sp && matches(c, sp)) {
        if (passed != 0) [[unlikely]]
          return promote(set, w, __builtin_ctz(passed));
        m.used = static_cast<std::uint16_t>(m.used | (1u << w));
        last_hit_ = &c;
        return c.id;
      }
      passed |= 1u << w;
    }
    return 0;
  }

  // At a re-check of the last hit: whether the unwound stack (`frames`, depth of them, and
  // whether it was `cut` at the depth kept) is the one that hit, frame for frame (then the unwind
  // needs no interning to confirm it, nor a cut stack's whole depth, which the cache never reads).
  bool confirms(const void* const* frames, int depth, bool cut) const noexcept {
    const entry* c = last_hit_;
    if (c == nullptr || c->depth != depth || (c->cut != 0) != cut) return false;
    for (int i = 0; i < depth; ++i)
      if (c->ip[i] != reinterpret_cast<std::uintptr_t>(frames[i])) return false;
    return true;
  }

  // After a hit: whether to unwind anyway, to check it (see k_recheck): a countdown, so that a
  // hit costs a decrement; the next gap is drawn at a re-check. Seeded alike in every thread, so
  // that runs repeat exactly.
  bool recheck() noexcept {
    if (until_recheck_ > 1) [[likely]] {
      --until_recheck_;
      return false;
    }
    std::uint32_t x = rng_ != 0 ? rng_ : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    rng_ = x;
    until_recheck_ = 1 + x % (2 * k_recheck - 1);
    return true;
  }

  // The re-check of `hit` unwound `id` (0: the table is full, nothing to tell): the id to count
  // the event under. A wrong hit turns the cache off for good.
  std::uint32_t checked(std::uint32_t hit, std::uint32_t id) noexcept {
    if (hit == id || id == 0) return hit;
    off_ = true;
    return id;
  }

  // After a miss at `sp`: whether this one may take a capture with slots (see k_capture_every).
  bool take_capture(std::uintptr_t sp) noexcept;

  // Remembers stack `id` for `sp`: `frames[i]`'s return address lies at `slots[i]` (depth of
  // them, at most k_cached_depth), and the stack holds them now; `cut`: the stack went on past
  // them (its id ends in the cut marker). Nothing, and false, when a slot lies off the thread's
  // stack (or below `sp`).
  bool remember(std::uintptr_t sp, const void* const* frames, const std::uintptr_t* slots, int depth, std::uint32_t id,
                bool cut = false) noexcept;
  // Captures the calling chain with slots (unw_step) and remembers `frames` (depth of them, the
  // recorder's caller first, unwound at `sp` with `max` frames asked) when that capture gives the
  // same frames past the shim's own (those in [shim_begin, shim_end)).
  [[gnu::noinline]] void capture(std::uintptr_t sp, void* const* frames, int depth, bool cut, std::uint32_t id, int max,
                                 std::uintptr_t shim_begin, std::uintptr_t shim_end) noexcept;

  // For tests: the hash that places the stack now at `sp` (0 without a shape for `sp`), and its set.
  std::uint64_t key_now(std::uintptr_t sp) const noexcept {
    const shape* s = const_cast<stack_cache*>(this)->shape_of(sp);
    return s != nullptr ? key(*s, sp) : 0;
  }
  static int set_of(std::uint64_t k) noexcept { return static_cast<int>(k & (k_cache_sets - 1)); }
  // The pair of shapes `sp`'s may be in (its index, even).
  static int shape_pair(std::uintptr_t sp) noexcept {
    return static_cast<int>(((sp >> 4) * 0x9e3779b97f4a7c15ull) >> 59) * 2;  // k_shapes / 2 = 32 pairs
  }

 private:
  // A stack: slots as offsets from the recorder's frame address (4 bytes, not 8: the stacks fit
  // twice as many in the same pages), padded to whole groups of four with copies of the last one.
  struct entry {
    std::uintptr_t sp;  // the recorder's frame address when this was recorded
    std::uint32_t id;
    std::uint16_t depth;
    std::uint16_t cut;                  // 1: the stack went on past these frames (cut at the depth kept)
    std::uint32_t off[k_cached_depth];  // where a return address lives: sp + off
    std::uintptr_t ip[k_cached_depth];  // and what it was
  };
  // Where, from a frame address, the key's return addresses are read: the slots of the first
  // stack remembered there (its first six frames, its middle and its last: stacks that differ
  // mostly differ near the inside, or near the outside).
  struct shape {
    std::uintptr_t sp;               // 0: none
    std::uint32_t off[k_key_slots];  // a stack of fewer frames repeats its last (a fixed count unrolls)
  };
  struct alignas(16) set_meta {
    std::uint32_t tag[k_cache_ways];  // 0: empty
    std::uint16_t used;               // bit w: way w was hit since the hand last passed it
    std::uint8_t hand;                // the next way the clock looks at
  };
  // Bit w set: way w has tag `t`.
  [[gnu::always_inline]] static std::uint32_t ways_tagged(const set_meta& m, std::uint32_t t) noexcept {
#if defined(__SSE2__)
    const __m128i x = _mm_set1_epi32(static_cast<int>(t));
    std::uint32_t bits = 0;
#pragma GCC unroll 4
    for (int q = 0; q < k_cache_ways / 4; ++q) {
      const __m128i v = _mm_load_si128(reinterpret_cast<const __m128i*>(m.tag + 4 * q));
      bits |= static_cast<std::uint32_t>(_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(v, x)))) << (4 * q);
    }
    return bits;
#else
    std::uint32_t bits = 0;
    for (int w = 0; w < k_cache_ways; ++w) bits |= static_cast<std::uint32_t>(m.tag[w] == t) << w;
    return bits;
#endif
  }

  static std::uintptr_t word(std::uintptr_t a) noexcept { return *reinterpret_cast<const std::uintptr_t*>(a); }
  // The shape that is `sp`'s, or null.
  [[gnu::always_inline]] shape* shape_of(std::uintptr_t sp) noexcept {
    shape* s = shapes_ + shape_pair(sp);
    return s[0].sp == sp ? s : s[1].sp == sp ? s + 1 : nullptr;
  }
  // The key's words are multiplied in parallel, not chained: the hash costs a few cycles more
  // than its loads.
  [[gnu::always_inline]] static std::uint64_t key(const shape& s, std::uintptr_t sp) noexcept {
    constexpr std::uint64_t k_odd[k_key_slots] = {0x9e3779b97f4a7c15ull, 0xc2b2ae3d27d4eb4full, 0x165667b19e3779f9ull,
                                                  0xd6e8feb86659fd93ull, 0xff51afd7ed558ccdull, 0xc4ceb9fe1a85ec53ull,
                                                  0x27d4eb2f165667c5ull, 0x94d049bb133111ebull};
    std::uint64_t h = sp * 0xbf58476d1ce4e5b9ull;
#pragma GCC unroll 8
    for (int i = 0; i < k_key_slots; ++i) h += word(sp + s.off[i]) * k_odd[i];
    h ^= h >> 31;
    h *= 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
  }
  static std::uint32_t tag_of(std::uint64_t k) noexcept { return static_cast<std::uint32_t>(k >> 32) | 1u; }
  entry& entry_at(int set, int way) noexcept { return entries_[set * k_cache_ways + way]; }

  [[gnu::always_inline]] static std::uintptr_t group_diff(const entry& c, std::uintptr_t sp, int g) noexcept {
    const int i = 4 * g;
    return (word(sp + c.off[i]) ^ c.ip[i]) | (word(sp + c.off[i + 1]) ^ c.ip[i + 1]) |
           (word(sp + c.off[i + 2]) ^ c.ip[i + 2]) | (word(sp + c.off[i + 3]) ^ c.ip[i + 3]);
  }
  // Four frames at a time, without a branch per frame: the first groups, the last, then the middle.
  [[gnu::always_inline]] static bool matches(const entry& c, std::uintptr_t sp) noexcept {
    const int groups = static_cast<int>(c.depth + 3) / 4;
    if (group_diff(c, sp, 0) != 0 || (groups > 1 && group_diff(c, sp, 1) != 0) ||
        (groups > 2 && group_diff(c, sp, groups - 1) != 0))
      return false;
    std::uintptr_t diff = 0;
    for (int g = 2; g < groups - 1 && diff == 0; ++g) diff = group_diff(c, sp, g);
    return diff == 0;
  }

  // Whether the stack now at `sp` would go into an empty place (nothing evicted).
  bool has_room(std::uintptr_t sp) noexcept;
  // A hit in way `w` of `set` behind way `front` (same tag): the two trade places (and clock
  // marks); the hit's id.
  [[gnu::noinline]] std::uint32_t promote(int set, int w, int front) noexcept;

  std::uintptr_t stack_lo_{}, stack_hi_{};   // 0, 0: unknown, no cache
  entry* entries_{};                         // k_cache_entries of them, mapped by set_stack
  const entry* last_hit_{};                  // the stack of the last hit (for a re-check)
  std::uint32_t rng_{};                      // xorshift state for the re-checks' gaps (0: not seeded yet)
  std::uint32_t until_recheck_{};            // hits until the next re-check (0 or 1: this one)
  std::uint32_t misses_{};                   // misses since the last evicting capture, up to k_capture_every
  std::uint32_t failed_{};                   // captures that could not be remembered
  bool off_{};                               // a re-check found a wrong hit: this thread's stacks are not what
                                             // the cache's premise needs (frames of varying size), unwind always
  std::uint8_t shape_next_[k_shapes / 2]{};  // which of a pair of shapes a new one replaces
  shape shapes_[k_shapes]{};
  set_meta sets_[k_cache_sets]{};
};

}  // namespace poolshim::stats

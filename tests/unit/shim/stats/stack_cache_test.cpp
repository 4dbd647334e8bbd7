// The per-thread stack cache (shim/stats/stack_cache.h) on hand-made stacks: return addresses in
// arrays on this thread's own stack stand for the slots an unw_step capture would find. A hit gives
// the remembered id, any changed return address misses, slots off the thread's stack are never
// cached, a wrong hit turns the cache off, a re-check confirms only the frames that hit, 64 call
// sites in turn all stay hits, stacks of one key live side by side, a full set evicts by the clock,
// and re-checks and captures come at their rates.
#include "stats/stack_cache.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace poolshim::stats {
namespace {

// A cache for this thread, knowing its stack (as the recorder sets it up).
std::unique_ptr<stack_cache> own_cache() {
  auto c = std::make_unique<stack_cache>();
  pthread_attr_t attr;
  EXPECT_EQ(pthread_getattr_np(pthread_self(), &attr), 0);
  void* lo = nullptr;
  std::size_t size = 0;
  EXPECT_EQ(pthread_attr_getstack(&attr, &lo, &size), 0);
  pthread_attr_destroy(&attr);
  c->set_stack(reinterpret_cast<std::uintptr_t>(lo), reinterpret_cast<std::uintptr_t>(lo) + size);
  return c;
}

// A stack of `depth` frames whose return addresses live in `words` (on the caller's stack).
struct fake_stack {
  std::uintptr_t words[k_cached_depth];
  void* frames[k_cached_depth];
  std::uintptr_t slots[k_cached_depth];
  int depth = 0;
  fake_stack() = default;
  explicit fake_stack(int d, std::uintptr_t base_ip = 0x400000) { init(d, base_ip); }
  void init(int d, std::uintptr_t base_ip) {
    depth = d;
    for (int i = 0; i < d; ++i) {
      words[i] = base_ip + 0x10 * static_cast<std::uintptr_t>(i);
      frames[i] = reinterpret_cast<void*>(words[i]);
      slots[i] = reinterpret_cast<std::uintptr_t>(&words[i]);
    }
  }
};

[[gnu::noinline]] std::uintptr_t here() { return reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0)); }

TEST(StackCache, HitReturnsTheRememberedId) {
  auto c = own_cache();
  fake_stack s(13);
  const std::uintptr_t sp = here();
  ASSERT_TRUE(c->usable(sp));
  EXPECT_EQ(c->lookup(sp), 0u) << "an empty cache misses";
  ASSERT_TRUE(c->remember(sp, s.frames, s.slots, s.depth, 7));
  EXPECT_EQ(c->lookup(sp), 7u);
  EXPECT_EQ(c->lookup(sp), 7u);
  EXPECT_EQ(c->lookup(sp + 16), 0u) << "another frame address is another stack";
}

// Groups of four are compared in a set order (first, second, last, then the middle): a change in
// any single frame, whichever group it falls in, must miss.
TEST(StackCache, AChangedReturnAddressAnywhereMisses) {
  for (int depth : {1, 4, 5, 13, 32, 64}) {
    auto c = own_cache();
    fake_stack s(depth);
    const std::uintptr_t sp = here();
    ASSERT_TRUE(c->remember(sp, s.frames, s.slots, s.depth, 9));
    for (int i = 0; i < depth; ++i) {
      const std::uintptr_t was = s.words[i];
      s.words[i] = was + 1;
      EXPECT_EQ(c->lookup(sp), 0u) << "depth " << depth << ", frame " << i << " changed";
      s.words[i] = was;
      EXPECT_EQ(c->lookup(sp), 9u) << "depth " << depth << ", frame " << i << " restored";
    }
  }
}

TEST(StackCache, AForeignStackIsNeverCached) {
  auto c = own_cache();
  // Slots in heap memory: a coroutine's or fiber's stack, which may be gone by the next event.
  std::vector<std::uintptr_t> heap(8, 0x400000);
  void* frames[8];
  std::uintptr_t slots[8];
  for (int i = 0; i < 8; ++i) {
    frames[i] = reinterpret_cast<void*>(heap[i]);
    slots[i] = reinterpret_cast<std::uintptr_t>(&heap[i]);
  }
  const std::uintptr_t sp = here();
  EXPECT_FALSE(c->remember(sp, frames, slots, 8, 3));
  EXPECT_EQ(c->lookup(sp), 0u);
  // One slot off the stack is enough to refuse the whole stack.
  fake_stack s(8);
  s.slots[5] = reinterpret_cast<std::uintptr_t>(&heap[5]);
  EXPECT_FALSE(c->remember(sp, s.frames, s.slots, s.depth, 3));
  EXPECT_EQ(c->lookup(sp), 0u);
  // The recorder's frame off the stack (a sigaltstack, a fiber): the cache is not used at all.
  EXPECT_FALSE(c->usable(reinterpret_cast<std::uintptr_t>(heap.data())));
  // A thread whose stack is unknown has no cache.
  stack_cache unknown{};
  EXPECT_FALSE(unknown.usable(sp));
}

TEST(StackCache, AWrongHitTurnsTheThreadsCacheOff) {
  auto c = own_cache();
  const std::uintptr_t sp = here();
  EXPECT_EQ(c->checked(5, 5), 5u);
  EXPECT_EQ(c->checked(5, 0), 5u) << "a full table tells nothing";
  EXPECT_TRUE(c->usable(sp));
  EXPECT_EQ(c->checked(5, 6), 6u) << "the unwound id counts";
  EXPECT_TRUE(c->off());
  EXPECT_FALSE(c->usable(sp));
}

// The premise broken: another chain whose remembered slots hold the same return addresses (a
// frame of another size moved the real ones) hits with the old id; the re-check's unwind says
// otherwise and the cache is off from then on.
TEST(StackCache, AWrongHitIsCaughtByTheRecheckAndTurnsTheCacheOff) {
  auto c = own_cache();
  fake_stack s(10);
  const std::uintptr_t sp = here();
  ASSERT_TRUE(c->remember(sp, s.frames, s.slots, s.depth, 21));
  const std::uint32_t hit = c->lookup(sp);  // the truth is stack 22: the cache cannot tell
  ASSERT_EQ(hit, 21u);
  int rechecked = 0;
  while (!c->recheck()) ++rechecked;
  EXPECT_LT(rechecked, 10 * static_cast<int>(k_recheck));
  EXPECT_EQ(c->checked(hit, 22), 22u);
  EXPECT_FALSE(c->usable(sp));
}

// A re-check confirms a hit without interning when the unwound frames are the ones that hit,
// cut at the depth kept or not as they were.
TEST(StackCache, ARecheckConfirmsTheFramesThatHitAndNothingElse) {
  auto c = own_cache();
  fake_stack s(10);
  const std::uintptr_t sp = here();
  EXPECT_FALSE(c->confirms(s.frames, s.depth, false)) << "no hit yet";
  ASSERT_TRUE(c->remember(sp, s.frames, s.slots, s.depth, 31));
  ASSERT_EQ(c->lookup(sp), 31u);
  EXPECT_TRUE(c->confirms(s.frames, s.depth, false));
  EXPECT_FALSE(c->confirms(s.frames, s.depth, true)) << "the stack that hit was not cut";
  EXPECT_FALSE(c->confirms(s.frames, s.depth - 1, false)) << "a frame fewer";
  void* other[k_cached_depth];
  for (int i = 0; i < s.depth; ++i) other[i] = s.frames[i];
  other[7] = reinterpret_cast<void*>(0x123450);
  EXPECT_FALSE(c->confirms(other, s.depth, false)) << "another frame";
  // A stack cut at the depth kept: its frames before the cut, and cut again.
  fake_stack deep(12, 0x500000);
  ASSERT_TRUE(c->remember(sp, deep.frames, deep.slots, deep.depth, 32, true));
  ASSERT_EQ(c->lookup(sp), 32u);
  EXPECT_TRUE(c->confirms(deep.frames, deep.depth, true));
  EXPECT_FALSE(c->confirms(deep.frames, deep.depth, false)) << "it ends there now: not the stack that hit";
}

TEST(StackCache, AboutOneHitIn64IsRecheckedTheSameWayInEveryThread) {
  auto a = own_cache();
  auto b = own_cache();
  int rechecks = 0;
  for (int i = 0; i < 64000; ++i) {
    const bool r = a->recheck();
    ASSERT_EQ(r, b->recheck()) << "seeded alike: runs repeat exactly";
    rechecks += r;
  }
  EXPECT_GT(rechecks, 800);
  EXPECT_LT(rechecks, 1200);
}

// Call sites as they sit on a real stack: the same slots (one frame address, one path through
// the runtime) holding other return addresses. `site` decides frame 2's (the program's call of
// cudaMalloc) and, with `outer`, frame `depth - 3`'s (where the loop was reached from).
struct site_stack {
  std::uintptr_t words[k_cached_depth];
  std::uintptr_t slots[k_cached_depth];
  void* frames[k_cached_depth];
  int depth;
  explicit site_stack(int d) : depth(d) {
    for (int i = 0; i < d; ++i) slots[i] = reinterpret_cast<std::uintptr_t>(&words[i]);
  }
  // Puts site `site` (reached from `outer`) on the stack, and its frames in `frames`.
  void at(std::uint32_t site, std::uint32_t outer = 0, std::uint32_t middle = 0) {
    for (int i = 0; i < depth; ++i) words[i] = 0x400000 + 0x10 * static_cast<std::uintptr_t>(i);
    words[2 % depth] = 0x700000 + 0x40 * static_cast<std::uintptr_t>(site);
    words[depth - 1] += 0x100000 * static_cast<std::uintptr_t>(outer);
    if (depth > 12) words[12] += 0x100000 * static_cast<std::uintptr_t>(middle);
    for (int i = 0; i < depth; ++i) frames[i] = reinterpret_cast<void*>(words[i]);
  }
};

// What the recorder does with one event: a hit, or a miss that may capture and remember.
std::uint32_t event(stack_cache& c, site_stack& s, std::uintptr_t sp, std::uint32_t id) {
  if (const std::uint32_t hit = c.lookup(sp); hit != 0) return hit;
  if (c.take_capture(sp)) {
    EXPECT_TRUE(c.remember(sp, s.frames, s.slots, s.depth, id));
  }
  return 0;
}

TEST(StackCache, SixtyFourCallSitesInTurnAllStayHits) {
  for (int depth : {3, 20, 64}) {
    auto c = own_cache();
    site_stack s(depth);
    const std::uintptr_t sp = here();
    int misses = 0;
    for (std::uint32_t site = 0; site < 64; ++site) {  // the first round: each one a miss, captured
      s.at(site);
      EXPECT_EQ(event(*c, s, sp, 1000 + site), 0u);
    }
    for (int round = 0; round < 50; ++round)
      for (std::uint32_t site = 0; site < 64; ++site) {
        s.at(site);
        const std::uint32_t id = event(*c, s, sp, 1000 + site);
        if (id == 0) ++misses;
        if (id != 0) {
          ASSERT_EQ(id, 1000 + site) << "depth " << depth << ": a wrong stack";
        }
      }
    EXPECT_EQ(misses, 0) << "depth " << depth;
  }
}

TEST(StackCache, StacksThatDifferOutsideTheKeyShareASetAndStayApart) {
  // Frame 12 is not one the key reads (depth 20: frames 0-5, 10 and 19): these stacks have one key.
  auto c = own_cache();
  site_stack s(20);
  const std::uintptr_t sp = here();
  s.at(1, 0, 0);
  ASSERT_TRUE(c->remember(sp, s.frames, s.slots, s.depth, 11));
  const std::uint64_t k = c->key_now(sp);
  s.at(1, 0, 1);
  ASSERT_EQ(c->key_now(sp), k) << "the same key: one set, one tag";
  EXPECT_EQ(c->lookup(sp), 0u) << "the key matches, the stack does not";
  ASSERT_TRUE(c->remember(sp, s.frames, s.slots, s.depth, 12));
  // Each hit on the one behind puts it in front (they trade places): the ids stay right.
  for (int i = 0; i < 3; ++i) {
    s.at(1, 0, 0);
    EXPECT_EQ(c->lookup(sp), 11u);
    EXPECT_TRUE(c->confirms(s.frames, s.depth, false));
    s.at(1, 0, 1);
    EXPECT_EQ(c->lookup(sp), 12u);
    EXPECT_TRUE(c->confirms(s.frames, s.depth, false)) << "the stack that hit, where it is now";
    s.at(1, 0, 2);
    EXPECT_EQ(c->lookup(sp), 0u);
  }
  for (int i = 0; i < 3; ++i) {
    s.at(1, 0, 1);
    EXPECT_EQ(c->lookup(sp), 12u);
  }
  s.at(1, 0, 0);
  EXPECT_EQ(c->lookup(sp), 11u);
}

// Sites whose stacks fall into set `set`, found by trying sites (the key is a hash).
std::vector<std::uint32_t> sites_in_set(stack_cache& c, site_stack& s, std::uintptr_t sp, int set, std::size_t n) {
  std::vector<std::uint32_t> out;
  for (std::uint32_t site = 0; out.size() < n && site < 100000; ++site) {
    s.at(site);
    if (stack_cache::set_of(c.key_now(sp)) == set) out.push_back(site);
  }
  return out;
}

TEST(StackCache, AFullSetEvictsAStackNotHitSinceTheClockPassed) {
  auto c = own_cache();
  site_stack s(8);
  const std::uintptr_t sp = here();
  s.at(0);
  ASSERT_TRUE(c->remember(sp, s.frames, s.slots, s.depth, 1));  // the frame address's shape
  const int set = stack_cache::set_of(c->key_now(sp));
  const std::vector<std::uint32_t> sites = sites_in_set(*c, s, sp, set, k_cache_ways + 2);
  ASSERT_EQ(sites.size(), static_cast<std::size_t>(k_cache_ways + 2));
  ASSERT_EQ(sites[0], 0u);
  auto put = [&](int i) {
    s.at(sites[static_cast<std::size_t>(i)]);
    return c->remember(sp, s.frames, s.slots, s.depth, 100 + static_cast<std::uint32_t>(i));
  };
  auto holds = [&](int i) {
    s.at(sites[static_cast<std::size_t>(i)]);
    return c->lookup(sp) == 100 + static_cast<std::uint32_t>(i);
  };
  for (int i = 0; i < k_cache_ways; ++i) ASSERT_TRUE(put(i));  // site 0 again: into its own way
  for (int i = 0; i < k_cache_ways; ++i) EXPECT_TRUE(holds(i)) << i;
  // Every way was hit: the hand clears them all and takes the way it started at (site 0's).
  ASSERT_TRUE(put(k_cache_ways));
  EXPECT_FALSE(holds(0)) << "evicted";
  EXPECT_TRUE(holds(k_cache_ways));
  // Now every site but 5 is hit: the next stack replaces site 5, the one not used.
  for (int i = 1; i < k_cache_ways; ++i) {
    if (i != 5) {
      EXPECT_TRUE(holds(i)) << i;
    }
  }
  ASSERT_TRUE(put(k_cache_ways + 1));
  EXPECT_FALSE(holds(5)) << "the stack not hit since the hand passed";
  for (int i = 1; i <= k_cache_ways + 1; ++i) {
    if (i != 5) {
      EXPECT_TRUE(holds(i)) << i;
    }
  }
}

TEST(StackCache, CapturesAreFreeIntoRoomAndRateLimitedWhenTheyWouldEvict) {
  auto c = own_cache();
  site_stack s(8);
  const std::uintptr_t sp = here();
  s.at(0);
  EXPECT_TRUE(c->take_capture(sp)) << "a frame address without a shape, and room for one";
  ASSERT_TRUE(c->remember(sp, s.frames, s.slots, s.depth, 1));
  const int set = stack_cache::set_of(c->key_now(sp));
  const std::vector<std::uint32_t> sites = sites_in_set(*c, s, sp, set, k_cache_ways + 1);
  ASSERT_EQ(sites.size(), static_cast<std::size_t>(k_cache_ways + 1));
  for (int i = 1; i < k_cache_ways; ++i) {
    s.at(sites[static_cast<std::size_t>(i)]);
    EXPECT_TRUE(c->take_capture(sp)) << "room in the set: " << i;
    ASSERT_TRUE(c->remember(sp, s.frames, s.slots, s.depth, 100 + static_cast<std::uint32_t>(i)));
  }
  s.at(sites[k_cache_ways]);  // the set is full: this one would evict
  int taken = 0;
  for (std::uint32_t i = 0; i < 4 * k_capture_every; ++i) taken += c->take_capture(sp);
  EXPECT_GE(taken, 3);
  EXPECT_LE(taken, 4) << "one in " << k_capture_every << " misses";
  // Another set still has room: free again.
  s.at(sites_in_set(*c, s, sp, (set + 1) % k_cache_sets, 1).at(0));
  EXPECT_TRUE(c->take_capture(sp));
}

TEST(StackCache, AfterSixteenFailedCapturesOnlyTheRateLimitedOnesAreLeft) {
  auto c = own_cache();
  std::vector<std::uintptr_t> heap(8, 0x400000);  // slots off the stack: never remembered
  void* frames[8];
  std::uintptr_t slots[8];
  for (int i = 0; i < 8; ++i) {
    frames[i] = reinterpret_cast<void*>(heap[static_cast<std::size_t>(i)]);
    slots[i] = reinterpret_cast<std::uintptr_t>(&heap[static_cast<std::size_t>(i)]);
  }
  const std::uintptr_t sp = here();
  for (std::uint32_t i = 0; i < k_failed_captures; ++i) {
    ASSERT_TRUE(c->take_capture(sp)) << i;
    ASSERT_FALSE(c->remember(sp, frames, slots, 8, 3));
  }
  int taken = 0;
  for (std::uint32_t i = 0; i < 2 * k_capture_every; ++i) taken += c->take_capture(sp);
  EXPECT_LE(taken, 2);
  EXPECT_GE(taken, 1);
}

TEST(StackCache, TwoFrameAddressesOfAShapePairStayAndAThirdReplacesOne) {
  auto c = own_cache();
  site_stack s(6);
  const std::uintptr_t sp = here();
  s.at(1);
  // Frame addresses below this one (the slots must lie above) whose shapes share sp's pair.
  std::vector<std::uintptr_t> same;
  for (std::uintptr_t d = 16; d < 256 * 1024 && same.size() < 2; d += 16)
    if (stack_cache::shape_pair(sp - d) == stack_cache::shape_pair(sp) && c->usable(sp - d)) same.push_back(sp - d);
  ASSERT_EQ(same.size(), 2u);
  ASSERT_TRUE(c->remember(sp, s.frames, s.slots, s.depth, 1));
  ASSERT_TRUE(c->remember(same[0], s.frames, s.slots, s.depth, 2));
  EXPECT_EQ(c->lookup(sp), 1u);
  EXPECT_EQ(c->lookup(same[0]), 2u);
  ASSERT_TRUE(c->remember(same[1], s.frames, s.slots, s.depth, 3));
  EXPECT_EQ(c->lookup(same[1]), 3u);
  EXPECT_EQ(c->lookup(sp), 0u) << "the older of the pair made room";
  EXPECT_EQ(c->lookup(same[0]), 2u);
}

TEST(StackCache, ResetForgetsEverything) {
  auto c = own_cache();
  site_stack s(6);
  const std::uintptr_t sp = here();
  s.at(1);
  ASSERT_TRUE(c->remember(sp, s.frames, s.slots, s.depth, 4));
  EXPECT_EQ(c->checked(4, 5), 5u);
  EXPECT_TRUE(c->off());
  c->reset();
  EXPECT_FALSE(c->off());
  EXPECT_TRUE(c->usable(sp));
  EXPECT_EQ(c->lookup(sp), 0u);
}

}  // namespace
}  // namespace poolshim::stats

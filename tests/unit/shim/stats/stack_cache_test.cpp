// The per-thread stack cache (shim/stats/stack_cache.h) on hand-made stacks: return addresses in
// arrays on this thread's own stack stand for the slots an unw_step capture would find. A hit gives
// the remembered id, any changed return address misses, slots off the thread's stack are never
// cached, a wrong hit turns the cache off, and re-checks and captures come at their rates.
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

std::uintptr_t here() { return reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0)); }

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

TEST(StackCache, CapturesAreRateLimitedAfterTheFirst16) {
  auto c = own_cache();
  for (std::uint32_t i = 0; i < k_free_captures; ++i) EXPECT_TRUE(c->take_capture()) << i;
  for (std::uint32_t i = 1; i < k_capture_every; ++i) ASSERT_FALSE(c->take_capture()) << i;
  EXPECT_TRUE(c->take_capture()) << "one in " << k_capture_every << " misses";
  EXPECT_FALSE(c->take_capture());
}

TEST(StackCache, KeepsTheEightMostRecentlyUsedStacks) {
  auto c = own_cache();
  fake_stack stacks[9];  // on this thread's stack, as the cache requires
  const std::uintptr_t sp = here();
  for (int i = 0; i < 9; ++i) stacks[i].init(6, 0x500000 + 0x1000 * static_cast<std::uintptr_t>(i));
  // Each stack is told apart by its return addresses alone (one frame address for all).
  auto remember = [&](int i) {
    return c->remember(sp, stacks[i].frames, stacks[i].slots, 6, static_cast<std::uint32_t>(100 + i));
  };
  auto holds = [&](int i) {
    // Only stack i's words hold their addresses: the others' are cleared while looking.
    std::vector<std::uintptr_t> saved;
    for (int j = 0; j < 9; ++j)
      if (j != i) {
        saved.push_back(stacks[j].words[0]);
        stacks[j].words[0] = 0;
      }
    const bool hit = c->lookup(sp) == static_cast<std::uint32_t>(100 + i);
    for (int j = 0, k = 0; j < 9; ++j)
      if (j != i) stacks[j].words[0] = saved[static_cast<std::size_t>(k++)];
    return hit;
  };
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(remember(i));
  for (int i = 0; i < 8; ++i) EXPECT_TRUE(holds(i)) << i;
  // Now 7 is the most recently used, 0 the least: a ninth stack replaces 0.
  ASSERT_TRUE(holds(0));  // ... unless 0 was just used: then 1 goes
  ASSERT_TRUE(remember(8));
  EXPECT_TRUE(holds(8));
  EXPECT_TRUE(holds(0));
  EXPECT_FALSE(holds(1));
  for (int i = 2; i < 8; ++i) EXPECT_TRUE(holds(i)) << i;
}

}  // namespace
}  // namespace poolshim::stats

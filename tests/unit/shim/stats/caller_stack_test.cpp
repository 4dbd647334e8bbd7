// Finding the caller's stack id (shim/stats/caller_stack.h) with the real unwinder: one call site
// gives one id every time, another site another id; the shim's own frames are left out; a full
// stack table counts under id 0 and says so in the flags; no table, no stacks. (Linked into this
// binary, the shim's frames cannot be told from the test's, so the cache is never filled here:
// stack_cache_test.cpp tests it alone, stats_stack_cache_test.sh through the preloaded shim.)
#include "stats/caller_stack.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "poolshim/stats_file.h"
#include "stats/unwinder.h"

namespace poolshim::stats {
namespace {

struct stacks_in_memory {
  explicit stacks_in_memory(std::size_t slots = 1 << 10)
      : slot_memory(new stack_slot[slots]()),
        arena(new std::uintptr_t[1 << 16]()),
        table(slot_memory.get(), slots, arena.get(), 1 << 16),
        modules(module_memory.data(), static_cast<std::uint32_t>(module_memory.size()), &module_count) {}
  std::unique_ptr<stack_slot[]> slot_memory;
  std::unique_ptr<std::uintptr_t[]> arena;
  stack_table table;
  std::vector<poolshim_stats_module> module_memory = std::vector<poolshim_stats_module>(64);
  std::uint32_t module_count = 0;
  module_list modules;
  std::uint32_t flags = 0;
  caller_stack finder(std::uintptr_t shim_begin = 0, std::uintptr_t shim_end = 0, std::uint32_t depth = 32) {
    return caller_stack(&table, &modules, &flags, depth, false, shim_begin, shim_end);
  }
};

[[gnu::noinline]] std::uint32_t site_a(caller_stack& s, stack_cache* c) {
  const std::uint32_t id = s.find(c, reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0)));
  asm volatile("" ::: "memory");  // not a tail call: this frame stays on the stack
  return id;
}
[[gnu::noinline]] std::uint32_t site_b(caller_stack& s, stack_cache* c) {
  const std::uint32_t id = s.find(c, reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0)));
  asm volatile("" ::: "memory");
  return id;
}
// One call site each for site_a and site_b, whatever the loop does.
[[gnu::noinline]] std::uint32_t from(bool a, caller_stack& s, stack_cache* c) {
  const std::uint32_t id = a ? site_a(s, c) : site_b(s, c);
  asm volatile("" ::: "memory");
  return id;
}

TEST(CallerStack, OneSiteOneIdAnotherSiteAnother) {
  if (!unwinder_available()) GTEST_SKIP() << "libunwind.so.8 not found";
  stacks_in_memory m;
  caller_stack s = m.finder();
  std::uint32_t ids[20];
  for (int i = 0; i < 20; ++i) ids[i] = from(i % 2 == 0, s, nullptr);  // one call site in this test
  const std::uint32_t a = ids[0], b = ids[1];
  EXPECT_NE(a, 0u);
  EXPECT_NE(b, 0u);
  EXPECT_NE(a, b);
  for (int i = 2; i < 20; ++i) EXPECT_EQ(ids[i], i % 2 == 0 ? a : b) << i;
  EXPECT_EQ(m.table.size(), 2u);
  EXPECT_GT(m.module_count, 0u) << "a new stack's modules are listed";
  EXPECT_EQ(m.flags, 0u);
}

TEST(CallerStack, TheShimsOwnFramesAreLeftOut) {
  if (!unwinder_available()) GTEST_SKIP() << "libunwind.so.8 not found";
  stacks_in_memory m;
  // This whole binary as "the shim": its innermost frames are dropped, so both sites (which
  // differ only there) give the same stack, starting at the first frame outside it.
  std::uintptr_t lo = 0, hi = 0;
  module_range(reinterpret_cast<std::uintptr_t>(&site_a), &lo, &hi);
  ASSERT_NE(hi, 0u);
  caller_stack s = m.finder(lo, hi);
  const std::uint32_t a = from(true, s, nullptr);
  const std::uint32_t b = from(false, s, nullptr);
  EXPECT_EQ(a, b);
  int depth = 0;
  const std::uintptr_t* frames = m.table.frames_of(a, &depth);
  ASSERT_NE(frames, nullptr);
  ASSERT_GT(depth, 0);
  EXPECT_FALSE(frames[0] >= lo && frames[0] < hi) << "the first frame is the first outside";
}

TEST(CallerStack, AStackDeeperThanTheDepthKeptEndsWithTheCutMarkAndItsWholeDepth) {
  if (!unwinder_available()) GTEST_SKIP() << "libunwind.so.8 not found";
  // This binary as "the shim" (as above): the stack is what lies outside it, the C library's
  // start-up frames and the binary's _start, a few frames whatever the test runner does.
  std::uintptr_t lo = 0, hi = 0;
  module_range(reinterpret_cast<std::uintptr_t>(&site_a), &lo, &hi);
  ASSERT_NE(hi, 0u);
  stacks_in_memory cut;
  caller_stack one = cut.finder(lo, hi, 1);
  int depth = 0;
  const std::uintptr_t* frames = cut.table.frames_of(from(true, one, nullptr), &depth);
  ASSERT_NE(frames, nullptr);
  ASSERT_EQ(depth, 1) << "the depth kept, the mark included";
  ASSERT_EQ(frames[0] >> 48, POOLSHIM_STATS_CUT_TAG) << "the outermost frame kept gives way to the mark";
  EXPECT_EQ(frames[0] & POOLSHIM_STATS_CUT_MORE, 0u);
  const auto whole = static_cast<std::uint32_t>(frames[0]);
  ASSERT_GT(whole, 1u) << "the whole stack's depth";
  ASSERT_LE(whole, 64u);
  // That many frames kept: the whole stack, no mark.
  stacks_in_memory enough;
  caller_stack all = enough.finder(lo, hi, whole);
  frames = enough.table.frames_of(from(true, all, nullptr), &depth);
  ASSERT_NE(frames, nullptr);
  EXPECT_EQ(depth, static_cast<int>(whole));
  for (int i = 0; i < depth; ++i) EXPECT_NE(frames[i] >> 48, POOLSHIM_STATS_CUT_TAG) << i;
}

TEST(CallerStack, AFullTableCountsUnderIdZeroAndSaysSo) {
  if (!unwinder_available()) GTEST_SKIP() << "libunwind.so.8 not found";
  stacks_in_memory m(1);  // takes stacks up to 3/4 full: none
  caller_stack s = m.finder();
  EXPECT_EQ(from(true, s, nullptr), 0u);
  EXPECT_EQ(m.flags, POOLSHIM_STATS_FLAG_STACKS_DROPPED);
}

TEST(CallerStack, WithoutATableEveryEventIsStackZero) {
  std::uint32_t flags = 0;
  caller_stack s(nullptr, nullptr, &flags, 32, false, 0, 0);
  EXPECT_EQ(from(true, s, nullptr), 0u);
  EXPECT_EQ(flags, 0u);
  caller_stack none;
  EXPECT_EQ(from(false, none, nullptr), 0u);
}

}  // namespace
}  // namespace poolshim::stats

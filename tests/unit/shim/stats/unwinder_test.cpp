// Native stack capture (shim/stats/unwinder.h): libunwind is found and loaded privately, the frames
// are the callers', the same call path gives the same frames and another path other ones, and the
// depth cap and skip count are honoured.
#include "stats/unwinder.h"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace poolshim::stats {
namespace {

struct captured {
  void* frames[64];
  int depth;
};

[[gnu::noinline]] captured leaf(int skip) {
  captured c{};
  c.depth = capture_stack(c.frames, 64, skip);
  asm volatile("" ::: "memory");  // not a tail call: this frame stays on the stack
  return c;
}
[[gnu::noinline]] captured via_a() {
  captured c = leaf(0);
  asm volatile("" ::: "memory");
  return c;
}
[[gnu::noinline]] captured via_b() {
  captured c = leaf(0);
  asm volatile("" ::: "memory");
  return c;
}
// One call site for leaf whatever the skip, so that the frames above leaf are the same.
[[gnu::noinline]] captured at_one_site(int skip) {
  captured c = leaf(skip);
  asm volatile("" ::: "memory");
  return c;
}
[[gnu::noinline]] captured recurse(int n) {
  if (n == 0) return leaf(0);
  captured c = recurse(n - 1);
  asm volatile("" ::: "memory");
  return c;
}

TEST(Unwinder, LibunwindIsLoadedPrivately) {
  ASSERT_TRUE(unwinder_available());
  // RTLD_LOCAL: its symbols did not join the global scope (Debian's exports _Unwind_* unversioned).
  EXPECT_EQ(dlsym(RTLD_DEFAULT, "unw_backtrace"), nullptr);
}

TEST(Unwinder, SamePathSameFramesOtherPathOtherFrames) {
  // Two calls from two places in this test: the frames agree up to via_a (leaf, via_a), then differ.
  const captured a1 = via_a();
  const captured a2 = via_a();
  const captured b = via_b();
  ASSERT_GT(a1.depth, 3);
  ASSERT_EQ(a1.depth, a2.depth);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(a1.frames[i], a2.frames[i]) << i;
  EXPECT_NE(a1.frames[2], a2.frames[2]) << "the two call sites in this test";
  // A return address is inside fn when fn is the closest of this file's functions that starts below
  // it (within 256 bytes): the compilers lay these functions out in different orders.
  const std::uintptr_t starts[] = {reinterpret_cast<std::uintptr_t>(&leaf), reinterpret_cast<std::uintptr_t>(&via_a),
                                   reinterpret_cast<std::uintptr_t>(&via_b),
                                   reinterpret_cast<std::uintptr_t>(&at_one_site),
                                   reinterpret_cast<std::uintptr_t>(&recurse)};
  const auto in = [&starts](const captured& c, void* fn) {
    const auto f = reinterpret_cast<std::uintptr_t>(fn);
    for (int i = 0; i < 3 && i < c.depth; ++i) {
      const auto p = reinterpret_cast<std::uintptr_t>(c.frames[i]);
      if (p <= f || p >= f + 256) continue;
      bool closer = false;
      for (const std::uintptr_t s : starts) closer = closer || (s > f && s < p);
      if (!closer) return true;
    }
    return false;
  };
  EXPECT_TRUE(in(a1, reinterpret_cast<void*>(&via_a))) << "a return address inside via_a";
  EXPECT_TRUE(in(b, reinterpret_cast<void*>(&via_b))) << "a return address inside via_b";
  EXPECT_FALSE(in(a1, reinterpret_cast<void*>(&via_b)));
}

TEST(Unwinder, DepthCapAndSkipAreHonoured) {
  const captured deep = recurse(80);
  EXPECT_EQ(deep.depth, 64) << "capped at the array's size";
  void* few[8];
  EXPECT_EQ(capture_stack(few, 8, 0), 8);
  const captured full = at_one_site(0), skipped = at_one_site(1);
  ASSERT_GT(full.depth, 2);
  EXPECT_EQ(skipped.depth, full.depth - 1);
  EXPECT_EQ(skipped.frames[0], full.frames[1]) << "skip drops the innermost frames";
  EXPECT_EQ(capture_stack(few, 0, 0), 0);
}

}  // namespace
}  // namespace poolshim::stats

// Stack interning (shim/stats/stack_table.h): one id per distinct stack, the same id for the same
// stack from any thread, frames kept, id 0 when the table is full, hash-only stacks when the frame
// arena is full.
#include "stats/stack_table.h"

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <thread>
#include <vector>

namespace poolshim::stats {
namespace {

struct table_storage {
  explicit table_storage(std::size_t slots, std::size_t frames)
      : slot(new stack_slot[slots]()),
        arena(new std::uintptr_t[frames]()),
        table(slot.get(), slots, arena.get(), frames) {}
  std::unique_ptr<stack_slot[]> slot;
  std::unique_ptr<std::uintptr_t[]> arena;
  stack_table table;
};

std::vector<void*> fake_stack(unsigned n, int depth) {
  std::vector<void*> v;
  for (int i = 0; i < depth; ++i) v.push_back(reinterpret_cast<void*>(std::uintptr_t{0x400000} + n * 64 + i * 8));
  return v;
}

TEST(StackTable, SameStackSameIdOtherStackOtherId) {
  table_storage t(64, 1024);
  const auto a = fake_stack(1, 10), b = fake_stack(2, 10);
  const std::uint32_t ia = t.table.intern(a.data(), 10);
  EXPECT_NE(ia, 0u);
  EXPECT_EQ(t.table.intern(a.data(), 10), ia);
  EXPECT_NE(t.table.intern(b.data(), 10), ia);
  EXPECT_NE(t.table.intern(a.data(), 9), ia) << "a prefix is another stack";
  int depth = 0;
  const std::uintptr_t* f = t.table.frames_of(ia, &depth);
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(depth, 10);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(f[i], reinterpret_cast<std::uintptr_t>(a[static_cast<std::size_t>(i)]));
  EXPECT_EQ(t.table.size(), 3u);
}

TEST(StackTable, FullTableGivesIdZero) {
  table_storage t(4, 1024);
  for (unsigned n = 0; n < 3; ++n) EXPECT_NE(t.table.intern(fake_stack(n, 3).data(), 3), 0u);
  EXPECT_EQ(t.table.intern(fake_stack(99, 3).data(), 3), 0u) << "three quarters full takes no more";
  EXPECT_NE(t.table.intern(fake_stack(2, 3).data(), 3), 0u) << "known stacks are still found";
}

TEST(StackTable, FullLargeTableStopsAtThreeQuartersAndStillFindsEveryStack) {
  // A full table must not make every new stack scan all slots: it stops taking stacks at 3/4, and
  // a lookup looks at a bounded number of slots; every stack it took is still found.
  table_storage t(1024, 1024 * 4);
  std::vector<std::uint32_t> ids;
  for (unsigned n = 0; n < 2000; ++n) ids.push_back(t.table.intern(fake_stack(n, 4).data(), 4));
  EXPECT_EQ(t.table.size(), 768u);
  for (unsigned n = 0; n < 2000; ++n) {
    if (ids[n] == 0) continue;
    EXPECT_EQ(t.table.intern(fake_stack(n, 4).data(), 4), ids[n]) << "stack " << n;
  }
  EXPECT_EQ(t.table.intern(fake_stack(5000, 4).data(), 4), 0u);
}

TEST(StackTable, FullArenaKeepsStacksByHash) {
  table_storage t(16, 8);
  const auto a = fake_stack(1, 6), b = fake_stack(2, 6);
  const std::uint32_t ia = t.table.intern(a.data(), 6);
  const std::uint32_t ib = t.table.intern(b.data(), 6);  // no room for its frames
  ASSERT_NE(ib, 0u);
  EXPECT_NE(ia, ib);
  EXPECT_EQ(t.table.intern(b.data(), 6), ib) << "found again by its hash";
  int depth = -1;
  EXPECT_NE(t.table.frames_of(ib, &depth), nullptr);
  EXPECT_EQ(depth, 0) << "reported without frames";
}

TEST(StackTable, ThreadsAgreeOnIds) {
  table_storage t(4096, 4096 * 16);
  constexpr unsigned k_stacks = 1000;
  std::vector<std::vector<std::uint32_t>> ids(8, std::vector<std::uint32_t>(k_stacks));
  std::vector<std::thread> threads;
  for (unsigned th = 0; th < 8; ++th)
    threads.emplace_back([&, th] {
      for (unsigned k = 0; k < k_stacks; ++k) {
        const unsigned n = (k * 7 + th * 13) % k_stacks;  // every thread, every stack, another order
        ids[th][n] = t.table.intern(fake_stack(n, 12).data(), 12);
      }
    });
  for (auto& x : threads) x.join();
  std::set<std::uint32_t> distinct;
  for (unsigned n = 0; n < k_stacks; ++n) {
    for (unsigned th = 1; th < 8; ++th) ASSERT_EQ(ids[th][n], ids[0][n]) << "stack " << n;
    distinct.insert(ids[0][n]);
  }
  EXPECT_EQ(distinct.size(), k_stacks);
  EXPECT_EQ(t.table.size(), k_stacks);
}

}  // namespace
}  // namespace poolshim::stats

// The live-pointer table (shim/stats/live_table.h) over a plain array: what goes in comes out with
// its size, stack, device and kind, once; deleted slots are reused; a neighbourhood with no free
// slot leaves the block untracked and says so in the flags (live_table_full); probes are bounded.
#include "stats/live_table.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <thread>
#include <vector>

namespace poolshim::stats {
namespace {

struct table_in_memory {
  explicit table_in_memory(std::uint32_t capacity) : entries(capacity), table(entries.data(), capacity, &flags) {}
  std::vector<poolshim_stats_live> entries;
  std::uint32_t flags = 0;
  live_table table;
  int used() const {
    int n = 0;
    for (const auto& e : entries) n += e.ptr > live_table::k_claimed;
    return n;
  }
};

TEST(LiveTable, WhatIsInsertedIsFoundAndRemovedOnce) {
  table_in_memory t(64);
  ASSERT_TRUE(t.table.insert(0x7f0000001000, 4096, 3, 1, 2));
  ASSERT_TRUE(t.table.insert(0x7f0000002000, 512, 4, 0, 0));
  poolshim_stats_live e{};
  ASSERT_TRUE(t.table.find(0x7f0000001000, &e));
  EXPECT_EQ(e.ptr, 0x7f0000001000u);
  EXPECT_EQ(e.bytes, 4096u);
  EXPECT_EQ(e.stack, 3u);
  EXPECT_EQ(e.device, 1u);
  EXPECT_EQ(e.kind, 2u);
  EXPECT_FALSE(t.table.find(0x7f0000003000, &e));
  ASSERT_TRUE(t.table.remove(0x7f0000001000, &e));
  EXPECT_EQ(e.bytes, 4096u);
  EXPECT_EQ(e.stack, 3u);
  EXPECT_FALSE(t.table.remove(0x7f0000001000, &e)) << "a second free of it is untracked";
  EXPECT_FALSE(t.table.find(0x7f0000001000, &e));
  ASSERT_TRUE(t.table.find(0x7f0000002000, &e));
  EXPECT_EQ(e.bytes, 512u);
  EXPECT_EQ(t.used(), 1);
  EXPECT_EQ(t.flags, 0u);
}

TEST(LiveTable, DeletedSlotsAreReusedAndDoNotEndALookup) {
  table_in_memory t(16);
  // Fill the whole table, free every other block, insert as many again: all fit, and every block
  // still live is found past the deleted slots before it.
  std::vector<std::uint64_t> ptrs;
  for (std::uint64_t i = 0; i < 16; ++i) ptrs.push_back(0x10000 + i * 0x100);
  for (std::uint64_t p : ptrs) ASSERT_TRUE(t.table.insert(p, p, 1, 0, 0));
  poolshim_stats_live e{};
  for (std::size_t i = 0; i < ptrs.size(); i += 2) ASSERT_TRUE(t.table.remove(ptrs[i], &e));
  for (std::size_t i = 1; i < ptrs.size(); i += 2) {
    ASSERT_TRUE(t.table.find(ptrs[i], &e)) << i;
    EXPECT_EQ(e.bytes, ptrs[i]);
  }
  for (std::uint64_t i = 0; i < 8; ++i) EXPECT_TRUE(t.table.insert(0x90000 + i * 0x100, 1, 2, 0, 0));
  EXPECT_EQ(t.used(), 16);
  EXPECT_EQ(t.flags, 0u);
}

TEST(LiveTable, AFullTableLeavesTheBlockUntrackedAndSaysSoOnce) {
  table_in_memory t(8);
  for (std::uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(t.table.insert(0x10000 + i * 0x100, 1, 1, 0, 0));
  EXPECT_EQ(t.flags, 0u);
  EXPECT_FALSE(t.table.insert(0x20000, 4096, 1, 0, 0));
  EXPECT_EQ(t.flags, POOLSHIM_STATS_FLAG_LIVE_TABLE_FULL);
  poolshim_stats_live e{};
  EXPECT_FALSE(t.table.find(0x20000, &e));
  EXPECT_FALSE(t.table.remove(0x20000, &e)) << "its free is untracked";
  EXPECT_FALSE(t.table.insert(0x30000, 4096, 1, 0, 0));
  EXPECT_EQ(t.flags, POOLSHIM_STATS_FLAG_LIVE_TABLE_FULL) << "other flags are left alone";
  // A slot freed makes room again.
  ASSERT_TRUE(t.table.remove(0x10000, &e));
  EXPECT_TRUE(t.table.insert(0x30000, 4096, 1, 0, 0));
}

// In a big table a block looks at k_max_probe + 1 slots from its place, no more: with those taken
// it is untracked although most of the table is free.
TEST(LiveTable, ProbesAreBoundedInABigTable) {
  constexpr std::uint32_t k_capacity = 1u << 12;
  table_in_memory t(k_capacity);
  const std::uint64_t victim = 0x7f00deadb000;
  const std::size_t home = t.table.home_of(victim);
  for (std::size_t k = 0; k <= live_table::k_max_probe; ++k)
    t.entries[(home + k) & (k_capacity - 1)].ptr = 0x1000 + 0x10 * k;  // taken by other blocks
  EXPECT_FALSE(t.table.insert(victim, 1, 1, 0, 0));
  EXPECT_EQ(t.flags, POOLSHIM_STATS_FLAG_LIVE_TABLE_FULL);
  t.entries[(home + live_table::k_max_probe) & (k_capacity - 1)].ptr = live_table::k_deleted;
  EXPECT_TRUE(t.table.insert(victim, 1, 1, 0, 0)) << "the last slot it may look at";
  poolshim_stats_live e{};
  EXPECT_TRUE(t.table.find(victim, &e));
}

TEST(LiveTable, ThreadsInsertingAndRemovingDistinctBlocksLoseNone) {
  table_in_memory t(1u << 14);
  constexpr int k_threads = 4, k_blocks = 1000;
  std::vector<std::thread> threads;
  for (int th = 0; th < k_threads; ++th)
    threads.emplace_back([&t, th] {
      for (int round = 0; round < 3; ++round) {
        for (int i = 0; i < k_blocks; ++i)
          EXPECT_TRUE(t.table.insert((std::uint64_t{1} << 40) + (static_cast<std::uint64_t>(th) << 32) + i * 64ull,
                                     static_cast<std::uint64_t>(i), static_cast<std::uint32_t>(th), 0, 0));
        poolshim_stats_live e{};
        for (int i = 0; i < k_blocks; i += 2) {
          EXPECT_TRUE(
              t.table.remove((std::uint64_t{1} << 40) + (static_cast<std::uint64_t>(th) << 32) + i * 64ull, &e));
          EXPECT_EQ(e.bytes, static_cast<std::uint64_t>(i));
          EXPECT_EQ(e.stack, static_cast<std::uint32_t>(th));
        }
        for (int i = 1; i < k_blocks; i += 2)
          EXPECT_TRUE(
              t.table.remove((std::uint64_t{1} << 40) + (static_cast<std::uint64_t>(th) << 32) + i * 64ull, &e));
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(t.used(), 0);
  EXPECT_EQ(t.flags, 0u);
}

}  // namespace
}  // namespace poolshim::stats

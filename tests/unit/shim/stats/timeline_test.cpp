// The timeline of live bytes (shim/stats/timeline.h) on a hand-made file region: a sample reads
// the process's and each used (device, kind)'s live bytes, a sample is taken only when due, a full
// timeline keeps the larger of each pair and doubles its interval, a thread finding another at it
// skips, a sample follows the call sites with the largest own peaks (looking at a bounded part of
// the stack table per 10 ms), and the size buckets are the documented powers of two.
#include "stats/timeline.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace poolshim::stats {
namespace {

struct fake_file {
  std::vector<unsigned char> region;
  poolshim_stats_kind kinds[POOLSHIM_STATS_DEVICES * POOLSHIM_STATS_KINDS]{};
  std::int64_t live = 0;
  std::vector<poolshim_stats_slot> slots;  // the stack table: a key for each stack id in use
  std::vector<poolshim_stats_site> sites;  // by stack id (slot + 1)
  timeline_writer w;
  explicit fake_file(std::uint32_t capacity, std::uint32_t slot_count = 16)
      : region(sizeof(poolshim_stats_timeline) + capacity * sizeof(poolshim_stats_sample)),
        slots(slot_count),
        sites(slot_count + 1),
        w(t(), capacity, kinds, &live, slots.data(), slot_count, sites.data()) {}
  poolshim_stats_timeline* t() { return reinterpret_cast<poolshim_stats_timeline*>(region.data()); }
  poolshim_stats_sample* samples() { return reinterpret_cast<poolshim_stats_sample*>(t() + 1); }
  void set(int device, int kind, std::int64_t bytes) {
    poolshim_stats_kind& k = kinds[device * POOLSHIM_STATS_KINDS + kind];
    live += bytes - k.live_bytes;
    k.live_bytes = bytes;
    if (bytes > k.peak_bytes) k.peak_bytes = bytes;
  }
  // Stack `id` (its slot in use) holds `bytes` now; its own peak follows.
  void site(std::uint32_t id, std::int64_t bytes) {
    slots[id - 1].key = 0x1234 + id;
    sites[id].live_bytes = bytes;
    if (bytes > sites[id].own_peak) sites[id].own_peak = bytes;
  }
  // The stack ids sample i follows, with their live bytes.
  std::vector<std::pair<std::uint32_t, std::int64_t>> followed(std::uint32_t i) {
    std::vector<std::pair<std::uint32_t, std::int64_t>> out;
    for (int c = 0; c < POOLSHIM_STATS_TIMELINE_SITES; ++c)
      if (samples()[i].site[c] != 0) out.emplace_back(samples()[i].site[c], samples()[i].site_live[c]);
    std::sort(out.begin(), out.end());
    return out;
  }
};

using followed_t = std::vector<std::pair<std::uint32_t, std::int64_t>>;

TEST(Timeline, ASampleReadsTheProcessAndEachUsedDeviceAndKind) {
  fake_file f(16);
  f.set(0, 0, 1000);
  f.set(1, 1, 300);
  f.w.sample(5'000'000'000);
  ASSERT_EQ(f.t()->count, 1u);
  EXPECT_EQ(f.t()->columns[0], 1u) << "device 0, kind device";
  EXPECT_EQ(f.t()->columns[1], 1u * POOLSHIM_STATS_KINDS + 1 + 1) << "device 1, pinned";
  EXPECT_EQ(f.t()->columns[2], 0u);
  EXPECT_EQ(f.samples()[0].ns, 5'000'000'000u);
  EXPECT_EQ(f.samples()[0].total, 1300);
  EXPECT_EQ(f.samples()[0].live[0], 1000);
  EXPECT_EQ(f.samples()[0].live[1], 300);
  // Memory freed keeps its column (it held some): its line goes to 0, not away.
  f.set(1, 1, 0);
  f.set(0, 2, 50);
  f.w.sample(6'000'000'000);
  EXPECT_EQ(f.samples()[1].live[1], 0);
  EXPECT_EQ(f.samples()[1].live[2], 50);
  EXPECT_EQ(f.t()->columns[2], 0u * POOLSHIM_STATS_KINDS + 2 + 1);
}

TEST(Timeline, ASampleIsTakenWhenDueAndAPeakBetweenTakesTheLastOnesPlace) {
  fake_file f(16);
  f.set(0, 0, 10);
  f.w.on_peak(1'000'000'000);  // nothing yet: due at once
  EXPECT_EQ(f.t()->count, 1u);
  f.set(0, 0, 20);
  f.w.on_peak(1'000'000'000 + k_timeline_interval_ns - 1);
  EXPECT_EQ(f.t()->count, 1u) << "before the interval has passed: no new sample";
  EXPECT_EQ(f.samples()[0].total, 20) << "but the peak replaced the last one";
  EXPECT_EQ(f.samples()[0].ns, 1'000'000'000 + k_timeline_interval_ns - 1);
  f.set(0, 0, 30);
  f.w.on_peak(1'000'000'000 + k_timeline_interval_ns);
  EXPECT_EQ(f.t()->count, 2u) << "due: a new sample";
  EXPECT_EQ(f.samples()[1].total, 30);
  // on_event looks at the clock only every k_timeline_check_every events of a thread.
  const std::uint32_t before = f.t()->count;
  f.t()->next_ns = 0;  // due
  f.w.on_event(k_timeline_check_every + 1);
  EXPECT_EQ(f.t()->count, before);
  f.w.on_event(2 * k_timeline_check_every);
  EXPECT_EQ(f.t()->count, before + 1);
}

TEST(Timeline, AFullTimelineKeepsTheLargerOfEachPairAndDoublesItsInterval) {
  fake_file f(8);
  const std::int64_t values[] = {5, 9, 7, 1, 2, 2, 8, 3};
  std::uint64_t ns = 1'000'000'000;
  for (std::int64_t v : values) {
    f.set(0, 0, v);
    f.w.sample(ns += 1000);
  }
  ASSERT_EQ(f.t()->count, 8u);
  f.set(0, 0, 4);
  f.w.sample(ns += 1000);
  ASSERT_EQ(f.t()->count, 5u);
  EXPECT_EQ(f.t()->interval_ns, 2 * k_timeline_interval_ns);
  const std::int64_t kept[] = {9, 7, 2, 8, 4};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(f.samples()[i].total, kept[i]) << i;
  for (int i = 1; i < 5; ++i) EXPECT_LT(f.samples()[i - 1].ns, f.samples()[i].ns) << "times still rise";
  EXPECT_EQ(f.t()->next_ns, ns + 2 * k_timeline_interval_ns);
}

TEST(Timeline, AThreadFindingAnotherAtItSkips) {
  fake_file f(8);
  f.t()->busy = 1;
  f.w.sample(1000);
  EXPECT_EQ(f.t()->count, 0u);
  f.t()->busy = 0;
  f.w.sample(1000);
  EXPECT_EQ(f.t()->count, 1u);
  EXPECT_EQ(f.t()->busy, 0u);
}

TEST(Timeline, ASampleFollowsTheSitesWithTheLargestOwnPeaks) {
  fake_file f(16);
  for (std::uint32_t id = 1; id <= 10; ++id) f.site(id, 100 * id);  // own peaks 100 ... 1000
  f.site(4, 0);  // stack 4 held 400 once, nothing now: its own peak still counts
  f.w.sample(1'000'000'000);
  EXPECT_EQ(f.followed(0), (followed_t{{3, 300}, {4, 0}, {5, 500}, {6, 600}, {7, 700}, {8, 800}, {9, 900}, {10, 1000}}))
      << "the 8 largest own peaks: not stacks 1 and 2";
  // Stack 1 grows past the smallest followed own peak (300): it takes stack 3's place at the next
  // new sample; a peak's replacement of the last sample reads the same sites again.
  f.site(1, 350);
  f.site(5, 550);
  f.w.on_peak(1'000'000'000 + 1);
  EXPECT_EQ(f.t()->count, 1u);
  EXPECT_EQ(f.followed(0)[2], (std::pair<std::uint32_t, std::int64_t>{5, 550})) << "live bytes read again";
  EXPECT_EQ(f.followed(0)[0].first, 3u) << "no new site at a peak's replacement";
  f.w.sample(1'000'000'000 + k_timeline_interval_ns);
  EXPECT_EQ(f.followed(1),
            (followed_t{{1, 350}, {4, 0}, {5, 550}, {6, 600}, {7, 700}, {8, 800}, {9, 900}, {10, 1000}}));
  // A stack with no own peak (its slot taken, nothing allocated yet) is never followed.
  fake_file g(4);
  g.slots[0].key = 1;
  g.w.sample(1'000'000'000);
  EXPECT_TRUE(g.followed(0).empty());
  // Without a stack table (the small file) a sample follows none.
  fake_file h(4, 0);
  h.w.sample(1'000'000'000);
  EXPECT_TRUE(h.followed(0).empty());
}

TEST(Timeline, ABusyProgramsSampleLooksAtABoundedPartOfTheStackTable) {
  constexpr std::uint32_t k_slots = 8 * k_timeline_site_scan;
  fake_file f(64, k_slots);
  std::uint64_t ns = 1'000'000'000;
  f.w.sample(ns);                                           // the first sample looks at every slot (nothing there yet)
  const std::uint32_t far = 3 * k_timeline_site_scan + 10;  // in the 4th part of the table
  f.site(far, 4096);
  int seen_at = 0;
  for (int i = 1; i <= 8 && seen_at == 0; ++i) {
    f.w.sample(ns += k_timeline_interval_ns);  // 10 ms apart: one part each
    if (!f.followed(static_cast<std::uint32_t>(i)).empty()) seen_at = i;
  }
  EXPECT_EQ(seen_at, 4) << "found at the 4th sample 10 ms apart, after 3 parts of the table without it";
  // A program with few events samples seldom: a sample 80 ms or more after the last one looks at
  // the whole table.
  fake_file g(64, k_slots);
  g.w.sample(ns);
  g.site(far, 4096);
  g.w.sample(ns + 8 * k_timeline_interval_ns);
  EXPECT_EQ(g.followed(1), (followed_t{{far, 4096}}));
  // A clean exit's sample looks at the whole table too.
  fake_file h(64, k_slots);
  h.w.sample(ns);
  h.site(far, 4096);
  h.w.sample(ns + 1, false, true);
  EXPECT_EQ(h.followed(1), (followed_t{{far, 4096}}));
}

TEST(SizeBuckets, ArePowersOfTwoUpToTheirUpperEnd) {
  EXPECT_EQ(poolshim_stats_size_bucket(0), 0u);
  EXPECT_EQ(poolshim_stats_size_bucket(1), 0u);
  EXPECT_EQ(poolshim_stats_size_bucket(1024), 0u);
  EXPECT_EQ(poolshim_stats_size_bucket(1025), 1u);
  EXPECT_EQ(poolshim_stats_size_bucket(2048), 1u);
  EXPECT_EQ(poolshim_stats_size_bucket(2049), 2u);
  EXPECT_EQ(poolshim_stats_size_bucket(3 << 10), 2u);
  EXPECT_EQ(poolshim_stats_size_bucket(1 << 20), 10u);
  EXPECT_EQ(poolshim_stats_size_bucket((1 << 20) + 1), 11u);
  EXPECT_EQ(poolshim_stats_size_bucket(std::uint64_t{4} << 30), 22u);
  EXPECT_EQ(poolshim_stats_size_bucket((std::uint64_t{4} << 30) + 1), 23u);
  EXPECT_EQ(poolshim_stats_size_bucket(~std::uint64_t{0}), 23u);
}

}  // namespace
}  // namespace poolshim::stats

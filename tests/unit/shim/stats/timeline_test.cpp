// The timeline of live bytes (shim/stats/timeline.h) on a hand-made file region: a sample reads
// the process's and each used (device, kind)'s live bytes, a sample is taken only when due, a full
// timeline keeps the larger of each pair and doubles its interval, a thread finding another at it
// skips, and the size buckets are the documented powers of two.
#include "stats/timeline.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace poolshim::stats {
namespace {

struct fake_file {
  std::vector<unsigned char> region;
  poolshim_stats_kind kinds[POOLSHIM_STATS_DEVICES * POOLSHIM_STATS_KINDS]{};
  std::int64_t live = 0;
  timeline_writer w;
  explicit fake_file(std::uint32_t capacity)
      : region(sizeof(poolshim_stats_timeline) + capacity * sizeof(poolshim_stats_sample)),
        w(t(), capacity, kinds, &live) {}
  poolshim_stats_timeline* t() { return reinterpret_cast<poolshim_stats_timeline*>(region.data()); }
  poolshim_stats_sample* samples() { return reinterpret_cast<poolshim_stats_sample*>(t() + 1); }
  void set(int device, int kind, std::int64_t bytes) {
    poolshim_stats_kind& k = kinds[device * POOLSHIM_STATS_KINDS + kind];
    live += bytes - k.live_bytes;
    k.live_bytes = bytes;
    if (bytes > k.peak_bytes) k.peak_bytes = bytes;
  }
};

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

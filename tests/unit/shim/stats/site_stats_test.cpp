// Per-call-site counters (shim/stats/site_stats.h): exact totals, own peaks, and the bytes each
// site held at the process-wide peak, in O(1) per event; exact counts under 8 threads.
#include "stats/site_stats.h"

#include <gtest/gtest.h>

#include <memory>
#include <thread>
#include <vector>

namespace poolshim::stats {
namespace {

struct sites {
  explicit sites(std::size_t n) : counters(new site_counters[n]()), stats(counters.get(), n) {}
  std::unique_ptr<site_counters[]> counters;
  site_stats stats;
};

// A thread's own counts (its shard entry) stay out of the shared counters until folded, while
// live bytes and the peaks are shared at once; after the fold the totals are the same as counting
// everything shared.
TEST(SiteStats, ThreadCountsFoldIntoTheSharedOnes) {
  sites s(8);
  site_local mine{};
  mine.stack = 5;
  s.stats.on_alloc(5, 300, &mine);
  s.stats.on_alloc(5, 200, &mine);
  s.stats.on_free(5, 300, true, &mine);
  s.stats.on_alloc(5, 7);  // another thread without a shard
  site_report r = s.stats.report(5);
  EXPECT_EQ(r.allocs, 1u);  // only the shared one so far
  EXPECT_EQ(r.live_bytes, 207);
  EXPECT_EQ(r.own_peak, 500);
  EXPECT_EQ(r.largest, 300u);
  EXPECT_EQ(mine.allocs, 2u);
  EXPECT_EQ(mine.frees, 1u);
  EXPECT_EQ(mine.bytes_allocated, 500u);
  EXPECT_EQ(mine.bytes_freed, 300u);
  EXPECT_EQ(mine.temporary, 1u);
  s.stats.fold(mine);
  r = s.stats.report(5);
  EXPECT_EQ(r.allocs, 3u);
  EXPECT_EQ(r.frees, 1u);
  EXPECT_EQ(r.bytes_allocated, 507u);
  EXPECT_EQ(r.bytes_freed, 300u);
  EXPECT_EQ(r.temporary, 1u);
  EXPECT_EQ(r.live_count, 2);
  EXPECT_EQ(s.stats.peak(), 500);
}

TEST(SiteStats, BytesAtTheProcessPeakAreEachSitesShare) {
  sites s(8);
  const std::uint32_t a = 1, b = 2, c = 3;
  s.stats.on_alloc(a, 100);
  s.stats.on_alloc(b, 50);  // peak 150: a 100, b 50
  s.stats.on_free(a, 100);
  s.stats.on_alloc(c, 120);  // 170: the new peak: a 0, b 50, c 120
  s.stats.on_free(c, 120);
  s.stats.on_alloc(a, 10);  // 60: not a peak
  EXPECT_EQ(s.stats.peak(), 170);
  EXPECT_EQ(s.stats.report(a).at_process_peak, 0);
  EXPECT_EQ(s.stats.report(b).at_process_peak, 50);
  EXPECT_EQ(s.stats.report(c).at_process_peak, 120);
  const site_report ra = s.stats.report(a);
  EXPECT_EQ(ra.allocs, 2u);
  EXPECT_EQ(ra.frees, 1u);
  EXPECT_EQ(ra.bytes_allocated, 110u);
  EXPECT_EQ(ra.bytes_freed, 100u);
  EXPECT_EQ(ra.live_bytes, 10);
  EXPECT_EQ(ra.live_count, 1);
  EXPECT_EQ(ra.own_peak, 100);
  EXPECT_EQ(ra.largest, 100u);
}

TEST(SiteStats, SiteUntouchedSinceThePeakReportsWhatItHolds) {
  sites s(4);
  s.stats.on_alloc(1, 30);
  s.stats.on_alloc(2, 40);  // peak 70 set by site 2; site 1 untouched since: 30
  EXPECT_EQ(s.stats.report(1).at_process_peak, 30);
  EXPECT_EQ(s.stats.report(2).at_process_peak, 40);
  s.stats.on_free(2, 40);
  s.stats.on_alloc(2, 5);
  EXPECT_EQ(s.stats.report(2).at_process_peak, 40) << "its later changes do not move its peak share";
}

TEST(SiteStats, CountsAddUpExactlyUnderEightThreads) {
  sites s(16);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20000; ++i) {
        const auto id = static_cast<std::uint32_t>(1 + (i + t) % 15);
        s.stats.on_alloc(id, 64);
        if (i % 4 != 3) s.stats.on_free(id, 64);
      }
    });
  for (auto& x : threads) x.join();
  std::uint64_t allocs = 0, frees = 0;
  std::int64_t live = 0, at_peak = 0;
  for (std::uint32_t id = 1; id < 16; ++id) {
    const site_report r = s.stats.report(id);
    allocs += r.allocs;
    frees += r.frees;
    live += r.live_bytes;
    at_peak += r.at_process_peak;
    EXPECT_EQ(r.live_bytes, r.live_count * 64);
  }
  EXPECT_EQ(allocs, 8u * 20000);
  EXPECT_EQ(frees, 8u * 15000);
  EXPECT_EQ(live, 8 * 5000 * 64);
  EXPECT_EQ(s.stats.live(), live);
  EXPECT_EQ(s.stats.peak(), live) << "live only grew overall, ending at its peak";
  EXPECT_GT(at_peak, 0);
}

}  // namespace
}  // namespace poolshim::stats

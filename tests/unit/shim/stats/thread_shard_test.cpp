// Thread shards (shim/stats/thread_shard.h) over plain arrays: each thread claims its own shard,
// a site entry taken over by another site folds into the shared counters first, and a released
// shard's counts all reach the shared counters (the shared fold of include/poolshim/stats_file.h)
// and the shard is free again.
#include "stats/thread_shard.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace poolshim::stats {
namespace {

constexpr std::uint32_t k_sites = 200;

struct shards_in_memory {
  shards_in_memory()
      : counters(new site_counters[k_sites]()),
        stats(counters.get(), k_sites),
        shards(2),
        kinds(POOLSHIM_STATS_DEVICES * POOLSHIM_STATS_KINDS),
        set(shards.data(), 2, &stats, kinds.data(), &events) {}
  std::unique_ptr<site_counters[]> counters;
  site_stats stats;
  std::vector<poolshim_stats_shard> shards;
  std::vector<poolshim_stats_kind> kinds;
  std::uint64_t events = 0;
  shard_set set;
};

TEST(ThreadShard, EachClaimGetsItsOwnShardUntilNoneIsLeft) {
  shards_in_memory s;
  poolshim_stats_shard* a = s.set.claim();
  poolshim_stats_shard* b = s.set.claim();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  EXPECT_EQ(a->in_use, 1u);
  EXPECT_EQ(a->tid, static_cast<std::int32_t>(gettid()));
  EXPECT_EQ(s.set.claim(), nullptr) << "a third thread counts in the shared counters";
  s.set.release(a);
  EXPECT_EQ(a->in_use, 0u);
  EXPECT_EQ(a->tid, 0);
  EXPECT_EQ(s.set.claim(), a);
}

TEST(ThreadShard, ASiteTakingAnotherSitesEntryFoldsItFirst) {
  shards_in_memory s;
  poolshim_stats_shard* sh = s.set.claim();
  ASSERT_NE(sh, nullptr);
  s.stats.on_alloc(5, 100, s.set.local_site(sh, 5));
  s.stats.on_alloc(5, 100, s.set.local_site(sh, 5));
  s.stats.on_free(5, 100, true, s.set.local_site(sh, 5));
  EXPECT_EQ(s.stats.report(5).allocs, 0u) << "still in the shard";
  // Two other sites whose first place is site 5's: the first takes its second place (empty), the
  // next, whose second place is the first's, finds both taken and folds site 5 out of its place.
  std::uint32_t second = 0;  // a site with site 5's first place and another second place, empty
  for (std::uint32_t id = 5 + POOLSHIM_STATS_SHARD_SITES;; id += POOLSHIM_STATS_SHARD_SITES)
    if (poolshim_stats_shard_place(id, 1) != poolshim_stats_shard_place(id, 0)) {
      second = id;
      break;
    }
  site_local* in_second = s.set.local_site(sh, second);
  EXPECT_EQ(in_second, reinterpret_cast<site_local*>(&sh->sites[poolshim_stats_shard_place(second, 1)]))
      << "its first place is taken by site 5: the second, empty";
  s.stats.on_alloc(second, 1, in_second);
  std::uint32_t other = 0;  // one whose two places are site 5's and `second`'s
  for (std::uint32_t id = second + POOLSHIM_STATS_SHARD_SITES; other == 0; id += POOLSHIM_STATS_SHARD_SITES)
    if (poolshim_stats_shard_place(id, 1) == poolshim_stats_shard_place(second, 1)) other = id;
  site_local* e = s.set.local_site(sh, other);
  ASSERT_EQ(e, reinterpret_cast<site_local*>(&sh->sites[5]));
  EXPECT_EQ(e->stack, other);
  EXPECT_EQ(e->allocs, 0u);
  const site_report r = s.stats.report(5);
  EXPECT_EQ(r.allocs, 2u);
  EXPECT_EQ(r.frees, 1u);
  EXPECT_EQ(r.bytes_allocated, 200u);
  EXPECT_EQ(r.bytes_freed, 100u);
  EXPECT_EQ(r.temporary, 1u);
  EXPECT_EQ(poolshim_stats_shard_entry(sh, 5), nullptr) << "site 5 is no longer in the shard";
  s.stats.on_alloc(other, 7, e);
  EXPECT_EQ(poolshim_stats_shard_entry(sh, other), &sh->sites[5]);
}

TEST(ThreadShard, AReleasedShardsCountsAllReachTheSharedCounters) {
  shards_in_memory s;
  poolshim_stats_shard* sh = s.set.claim();
  ASSERT_NE(sh, nullptr);
  for (std::uint32_t id = 1; id <= 3; ++id) {
    s.stats.on_alloc(id, 10 * id, s.set.local_site(sh, id));
    s.set.note_event(sh);
  }
  s.stats.on_free(2, 20, false, s.set.local_site(sh, 2));
  s.set.note_event(sh);
  bump(sh->kinds[7].allocs, 3);
  bump(sh->kinds[7].frees, 1);
  bump(sh->kinds[7].bytes_allocated, 300);
  s.kinds[7].allocs = 1;  // another thread's, counted in the shared counters
  s.set.note_event(nullptr);
  EXPECT_EQ(s.events, 1u);
  EXPECT_EQ(sh->events, 4u);
  s.set.release(sh);
  EXPECT_EQ(s.events, 5u);
  EXPECT_EQ(s.stats.report(1).allocs, 1u);
  EXPECT_EQ(s.stats.report(2).frees, 1u);
  EXPECT_EQ(s.stats.report(2).bytes_freed, 20u);
  EXPECT_EQ(s.stats.report(3).bytes_allocated, 30u);
  EXPECT_EQ(s.kinds[7].allocs, 4u);
  EXPECT_EQ(s.kinds[7].frees, 1u);
  EXPECT_EQ(s.kinds[7].bytes_allocated, 300u);
  for (const poolshim_stats_shard_site& e : sh->sites) EXPECT_EQ(e.allocs + e.frees + e.stack, 0u);
  EXPECT_EQ(sh->kinds[7].allocs, 0u);
  EXPECT_EQ(sh->events, 0u);
}

// The reader's fold (plain adds into a copy) gives what the writer's (atomic adds) leaves behind.
TEST(ThreadShard, ReadersFoldTheSameFieldsAsTheWriter) {
  poolshim_stats_shard_site e{9, 0, 1, 2, 3, 4, 5};
  poolshim_stats_site reader{}, writer{};
  poolshim_stats_fold_site(&reader, &e, 0);
  poolshim_stats_fold_site(&writer, &e, 1);
  EXPECT_EQ(std::memcmp(&reader, &writer, sizeof reader), 0);
  EXPECT_EQ(reader.allocs, 1u);
  EXPECT_EQ(reader.frees, 2u);
  EXPECT_EQ(reader.bytes_allocated, 3u);
  EXPECT_EQ(reader.bytes_freed, 4u);
  EXPECT_EQ(reader.temporary, 5u);
  const poolshim_stats_shard_kind k{6, 7, 8};
  poolshim_stats_kind kr{}, kw{};
  poolshim_stats_fold_kind(&kr, &k, 0);
  poolshim_stats_fold_kind(&kw, &k, 1);
  EXPECT_EQ(std::memcmp(&kr, &kw, sizeof kr), 0);
  EXPECT_EQ(kr.allocs, 6u);
  EXPECT_EQ(kr.frees, 7u);
  EXPECT_EQ(kr.bytes_allocated, 8u);
}

}  // namespace
}  // namespace poolshim::stats

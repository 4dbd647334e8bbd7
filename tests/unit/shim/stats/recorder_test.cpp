// The recorder (shim/stats/recorder.h) called directly, as the hooks call it, with POOLSHIM_STATS=
// native (the ctest sets it and a private POOLSHIM_STATS_DIR): 8 threads record allocations and
// frees of distinct pointers from two call sites each; the stats file's figures (shared counters
// plus the shards of threads still running, as poolshim-stats sums them) add up exactly. Runs under
// ASan and TSan too.
#include "stats/recorder.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <thread>
#include <vector>

#include "poolshim/stats_file.h"

namespace poolshim::stats {
namespace {

constexpr int k_threads = 8;
constexpr int k_rounds = 3000;

[[gnu::noinline]] void site_one(std::uint64_t p) { record_alloc(kind::device, 0, p, 512); }
[[gnu::noinline]] void site_two(std::uint64_t p) { record_alloc(kind::pinned, 0, p, 4096); }

TEST(Recorder, EightThreadsAddUpExactly) {
  ASSERT_TRUE(recording()) << "POOLSHIM_STATS=native is expected in the environment";
  std::vector<std::thread> threads;
  for (int t = 0; t < k_threads; ++t)
    threads.emplace_back([t] {
      for (int i = 0; i < k_rounds; ++i) {
        const std::uint64_t base = (std::uint64_t{1} << 40) + (static_cast<std::uint64_t>(t) << 32) + i * 16ull;
        site_one(base);
        site_two(base + 8);
        record_free(kind::device, base);
        if (i % 3 != 0) record_free(kind::pinned, base + 8);  // a third of site_two's stay live
      }
    });
  for (auto& th : threads) th.join();
  // This thread keeps its shard (it does not exit): its counts are read from the shard.
  for (int i = 0; i < 10; ++i) site_one((std::uint64_t{1} << 39) + i * 16ull);
  for (int i = 0; i < 4; ++i) record_free(kind::device, (std::uint64_t{1} << 39) + i * 16ull);
  record_exit();

  const int fd = open(stats_path(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << stats_path();
  struct stat st {};
  ASSERT_EQ(fstat(fd, &st), 0);
  void* map = mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  ASSERT_NE(map, MAP_FAILED);
  const auto* h = static_cast<const poolshim_stats_header*>(map);
  const auto* base = static_cast<const unsigned char*>(map);
  EXPECT_EQ(std::memcmp(h->magic, POOLSHIM_STATS_MAGIC, sizeof POOLSHIM_STATS_MAGIC), 0);
  EXPECT_NE(h->end_ns, 0u);
  const auto* sites = reinterpret_cast<const poolshim_stats_site*>(base + h->sites_offset);
  ASSERT_EQ(h->shard_size, sizeof(poolshim_stats_shard));
  const auto* shards = reinterpret_cast<const poolshim_stats_shard*>(base + h->shards_offset);
  std::uint64_t allocs = 0, frees = 0, bytes = 0, events = h->events;
  std::int64_t live = 0;
  int used = 0, in_use = 0;
  for (std::uint32_t id = 0; id <= h->slot_count; ++id) {
    if (sites[id].allocs == 0 && sites[id].live_bytes == 0) continue;
    ++used;
    allocs += sites[id].allocs;
    frees += sites[id].frees;
    bytes += sites[id].bytes_allocated;
    live += sites[id].live_bytes;
  }
  // The shards' counts, folded as the tool folds them (stats_file.h).
  poolshim_stats_site in_shards{};
  poolshim_stats_kind kind0_in_shards{};
  for (std::uint32_t i = 0; i < h->shard_count; ++i) {
    if (shards[i].in_use == 0) continue;
    ++in_use;
    events += shards[i].events;
    poolshim_stats_fold_kind(&kind0_in_shards, &shards[i].kinds[0], 0);
    for (const poolshim_stats_shard_site& e : shards[i].sites) poolshim_stats_fold_site(&in_shards, &e, 0);
  }
  allocs += in_shards.allocs;
  frees += in_shards.frees;
  bytes += in_shards.bytes_allocated;
  EXPECT_EQ(in_use, 1) << "the eight threads' shards are folded and released at their exit";
  const int live_pinned = k_threads * ((k_rounds + 2) / 3);
  EXPECT_EQ(allocs, 2u * k_threads * k_rounds + 10);
  EXPECT_EQ(frees, 2u * k_threads * k_rounds - live_pinned + 4);
  EXPECT_EQ(events, allocs + frees);
  EXPECT_EQ(bytes, (512u + 4096u) * k_threads * k_rounds + 512u * 10);
  EXPECT_EQ(live, 4096 * live_pinned + 512 * 6);
  EXPECT_EQ(h->process_live, live);
  EXPECT_EQ(h->untracked_frees, 0u);
  // Linked statically into this test, the recorder takes the whole executable for "the shim's own
  // frames", so stacks here are only the thread start: identity of call sites is stats_test.sh's.
  EXPECT_GE(used, 1);
  const auto* kinds = reinterpret_cast<const poolshim_stats_kind*>(base + h->kinds_offset);
  EXPECT_EQ(kinds[0].allocs, static_cast<std::uint64_t>(k_threads * k_rounds));  // device 0, device: folded
  EXPECT_EQ(kind0_in_shards.allocs, 10u);                                        // ... and the running thread's
  EXPECT_EQ(kinds[0].live_bytes, 512 * 6);
  EXPECT_EQ(kinds[1].live_bytes, 4096 * live_pinned);  // device 0, pinned
  const auto* l = reinterpret_cast<const poolshim_stats_live*>(base + h->live_offset);
  int live_entries = 0;
  for (std::uint32_t i = 0; i < h->live_capacity; ++i) live_entries += l[i].ptr > POOLSHIM_STATS_LIVE_CLAIMED;
  EXPECT_EQ(live_entries, live_pinned + 6);
  // The event ring (POOLSHIM_STATS_EVENTS=1000, rounded up to 1024) holds the last 1024 events,
  // each complete (a writer overtaken by the ring wrapping drops its event, so under 8 threads a
  // few may be older): the main thread's 10 allocations and 4 frees are the newest 14.
  ASSERT_EQ(h->event_capacity, 1024u);
  EXPECT_EQ(h->event_next, events);
  const auto* ring = reinterpret_cast<const poolshim_stats_event*>(base + h->events_offset);
  int valid = 0;
  for (std::uint64_t i = h->event_next - 1024; i < h->event_next; ++i) {
    const poolshim_stats_event& e = ring[i % 1024];
    if (e.seq != i + 1) continue;
    valid += (e.action == POOLSHIM_STATS_EVENT_ALLOC && e.bytes == (e.ptr % 16 == 0 ? 512u : 4096u)) ||
             e.action == POOLSHIM_STATS_EVENT_FREE;
  }
  EXPECT_GE(valid, 1000);
  for (std::uint64_t i = h->event_next - 14, k = 0; i < h->event_next; ++i, ++k) {
    const poolshim_stats_event& e = ring[i % 1024];
    EXPECT_EQ(e.action, k < 10 ? POOLSHIM_STATS_EVENT_ALLOC : POOLSHIM_STATS_EVENT_FREE);
    EXPECT_EQ(e.ptr, (std::uint64_t{1} << 39) + (k < 10 ? k : k - 10) * 16);
    EXPECT_EQ(e.bytes, 512u);
  }
  munmap(map, static_cast<std::size_t>(st.st_size));
}

TEST(Recorder, FreeOfAnUnknownPointerIsCountedApart) {
  ASSERT_TRUE(recording());
  const int fd = open(stats_path(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << stats_path();
  struct stat st {};
  ASSERT_EQ(fstat(fd, &st), 0);
  void* map = mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  ASSERT_NE(map, MAP_FAILED);
  const auto* h = static_cast<const poolshim_stats_header*>(map);
  const std::uint64_t untracked = h->untracked_frees;
  const std::int64_t live = h->process_live;
  record_free(kind::device, 0xdead0000);  // allocated before the recorder existed, say
  EXPECT_EQ(h->untracked_frees, untracked + 1);
  EXPECT_EQ(h->process_live, live);  // nothing is taken off what is live
  munmap(map, static_cast<std::size_t>(st.st_size));
  unlink(stats_path());
}

}  // namespace
}  // namespace poolshim::stats

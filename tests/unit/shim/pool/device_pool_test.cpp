// device_pool over fake_segment_resource: rounding, shared small segments, large size classes and
// whole reuse, reuse fences (with a broken fence to show the check can fail), thread caches under
// 8 threads, release_idle, the OOM path, statistics, and rejection of bad frees.
#include "pool/device_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "pool/size_classes.h"
#include "support/fake_segment_resource.h"
#include "support/manual_fence.h"

namespace poolshim::pool {
namespace {

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = kKiB * kKiB;

std::uintptr_t must_allocate(device_pool& p, std::size_t bytes) {
  std::uintptr_t a = 0;
  EXPECT_EQ(p.allocate(bytes, &a), status::ok) << bytes;
  return a;
}

struct fixture {
  explicit fixture(device_pool_options o = {}, std::size_t limit = 0) : resource(limit), pool(resource, fence, o) {}
  fake_segment_resource resource;
  manual_fence fence;
  device_pool pool;
};

TEST(DevicePool, SmallRequestsRoundUpTo512Bytes) {
  fixture f;
  EXPECT_EQ(f.pool.block_size(must_allocate(f.pool, 1)), 512u);
  EXPECT_EQ(f.pool.block_size(must_allocate(f.pool, 513)), 1024u);
  EXPECT_EQ(f.pool.block_size(must_allocate(f.pool, kMiB)), kMiB);
}

TEST(DevicePool, ZeroBytesIsAnInvalidArgument) {
  fixture f;
  std::uintptr_t a = 7;
  EXPECT_EQ(f.pool.allocate(0, &a), status::invalid_argument);
  EXPECT_EQ(a, 7u);
}

TEST(DevicePool, SmallBlocksShareTwoMiBSegmentsAndNeverSpanTwo) {
  fixture f;
  std::vector<std::uintptr_t> v;
  for (int i = 0; i < 100; ++i) v.push_back(must_allocate(f.pool, 4 * kKiB));
  EXPECT_EQ(f.resource.allocate_calls(), 1u);
  EXPECT_EQ(f.pool.stats().segments, 1u);
  for (int i = 0; i < 5; ++i) v.push_back(must_allocate(f.pool, 700 * kKiB));  // 400 KiB + 3.5 MiB
  EXPECT_EQ(f.pool.stats().segments, 3u);
  for (std::uintptr_t a : v) {
    const std::size_t size = f.pool.block_size(a);
    EXPECT_EQ(a >> 21, (a + size - 1) >> 21) << "a block stays inside its 2 MiB-aligned segment";
  }
}

TEST(DevicePool, LargeRequestsGetADedicatedSegmentOfTheirSizeClass) {
  fixture f;
  std::mt19937_64 rng(3);
  for (int i = 0; i < 50; ++i) {
    const std::size_t bytes = kMiB + 1 + rng() % (300 * kMiB);
    const std::uint64_t calls = f.resource.allocate_calls();
    const std::uintptr_t a = must_allocate(f.pool, bytes);
    const std::size_t size = f.pool.block_size(a);
    EXPECT_EQ(f.resource.allocate_calls(), calls + 1);
    EXPECT_GE(size, bytes);
    EXPECT_LE((size - bytes) * 8, bytes) << "at most 12.5% waste for " << bytes;
    EXPECT_EQ(size, large_class_size(bytes));
    EXPECT_EQ(a % (2 * kMiB), 0u) << "the pointer is the segment's base";
    EXPECT_EQ(f.pool.deallocate(a), status::ok);
  }
}

TEST(DevicePool, LargeClassesAreSixtyFourPerPowerOfTwoWithAtMostASixtyFourthWasted) {
  std::mt19937_64 rng(5);
  for (int i = 0; i < 100000; ++i) {
    const std::size_t bytes = kMiB + 1 + rng() % (std::size_t{1} << (21 + rng() % 20));
    const std::size_t c = large_class_size(bytes);
    ASSERT_GE(c, bytes);
    ASSERT_LE((c - bytes) * 64, bytes);
    ASSERT_EQ(large_class_size(c), c);
    ASSERT_LT(large_class_index(c), kLargeClasses);
  }
  unsigned classes = 0;
  for (std::size_t s = kMiB + 1; s <= 2 * kMiB; s = large_class_size(s) + 1) ++classes;
  EXPECT_EQ(classes, 64u);
}

TEST(DevicePool, LargeBlocksAreReusedWholeAndNeverSplit) {
  fixture f({.idle_percent = kNoIdleBound});  // the idle bound would return the cached block
  const std::uintptr_t a = must_allocate(f.pool, 5 * kMiB);
  ASSERT_EQ(f.pool.deallocate(a), status::ok);
  f.fence.advance();
  const std::uintptr_t small = must_allocate(f.pool, 4 * kKiB);
  EXPECT_FALSE(small >= a && small < a + 5 * kMiB) << "a cached large block is never split";
  const std::uintptr_t other = must_allocate(f.pool, 3 * kMiB);
  EXPECT_NE(other, a) << "a block more than a quarter larger than the request is not taken";
  const std::uint64_t calls = f.resource.allocate_calls();
  EXPECT_EQ(must_allocate(f.pool, 4 * kMiB + 600 * kKiB), a) << "within a quarter: reused whole";
  EXPECT_EQ(f.pool.block_size(a), 5 * kMiB);
  EXPECT_EQ(f.resource.allocate_calls(), calls);
}

TEST(DevicePool, IdleLargeBlockOfAnotherClassIsReusedWithinBound) {
  fixture f({.idle_percent = kNoIdleBound});
  const std::uintptr_t a = must_allocate(f.pool, 5 * kMiB);
  ASSERT_EQ(f.pool.deallocate(a), status::ok);
  f.fence.advance();
  const std::uint64_t calls = f.resource.allocate_calls();
  // 4.5 MiB is a class of its own; 5 MiB is within a quarter of it: the same block, whole.
  ASSERT_NE(large_class_size(4 * kMiB + 512 * kKiB), 5 * kMiB);
  const std::uintptr_t b = must_allocate(f.pool, 4 * kMiB + 512 * kKiB);
  EXPECT_EQ(b, a);
  EXPECT_EQ(f.pool.block_size(b), 5 * kMiB);
  EXPECT_EQ(f.pool.segment_base(b), a) << "the pointer is the allocation's base";
  EXPECT_EQ(f.resource.allocate_calls(), calls);
  ASSERT_EQ(f.pool.deallocate(b), status::ok);
  f.fence.advance();
  // 3.9 MiB: 5 MiB is more than a quarter larger; a segment of its own, the idle block untouched.
  const std::uintptr_t c = must_allocate(f.pool, 3 * kMiB + 900 * kKiB);
  EXPECT_NE(c, a);
  EXPECT_EQ(f.pool.block_size(c), large_class_size(3 * kMiB + 900 * kKiB));
  EXPECT_EQ(f.resource.allocate_calls(), calls + 1);
  // Best fit: of two idle blocks within the bound, the smaller.
  const std::uintptr_t d = must_allocate(f.pool, 4 * kMiB + 768 * kKiB);
  EXPECT_EQ(d, a);
  ASSERT_EQ(f.pool.deallocate(c), status::ok);
  ASSERT_EQ(f.pool.deallocate(d), status::ok);
  f.fence.advance();
  EXPECT_EQ(must_allocate(f.pool, 3 * kMiB + 800 * kKiB), c) << "3.9 MiB fits; 5 MiB would too";
}

TEST(DevicePool, ReleasesIdleBlocksBeforeGrowingPastTheFootprintBound) {
  fake_segment_resource resource;
  always_ready_fence ready;
  device_pool pool(resource, ready, {.thread_cache_bytes = 0});  // idle bound: the default 10%
  const std::uintptr_t a = must_allocate(pool, 8 * kMiB);
  const std::uintptr_t b = must_allocate(pool, 16 * kMiB);
  ASSERT_EQ(pool.deallocate(a), status::ok);
  ASSERT_EQ(pool.deallocate(b), status::ok);
  // 24 MiB were in use at most: 26.4 may be reserved. 24 + 3 exceeds it: the largest idle block
  // (16 MiB) goes back first, and that is enough.
  const std::uintptr_t c = must_allocate(pool, 3 * kMiB);
  EXPECT_EQ(resource.deallocate_calls(), 1u);
  EXPECT_EQ(pool.stats().bound_releases, 1u);
  EXPECT_EQ(pool.stats().bytes_reserved, 8 * kMiB + 3 * kMiB);
  EXPECT_EQ(resource.bytes_in_use(), pool.stats().bytes_reserved);
  // Below the bound idle memory stays: 11 + 12 <= 26.4, the 8 MiB block is kept for a later 8 MiB.
  const std::uintptr_t d = must_allocate(pool, 12 * kMiB);
  EXPECT_EQ(resource.deallocate_calls(), 1u);
  const std::uint64_t calls = resource.allocate_calls();
  EXPECT_EQ(must_allocate(pool, 8 * kMiB), a);
  EXPECT_EQ(resource.allocate_calls(), calls);
  EXPECT_EQ(pool.stats().peak_reserved, 24 * kMiB);
  for (std::uintptr_t p : {a, c, d}) ASSERT_EQ(pool.deallocate(p), status::ok);
  // release_idle starts the bound again from what is in use. Then 4 MiB is the most in use: a
  // 2 MiB request may leave 4.4 MiB reserved, so the idle 4 MiB block goes first (with the old
  // 24 MiB mark it would have stayed).
  pool.release_idle();
  ASSERT_EQ(pool.stats().bytes_reserved, 0u);
  ASSERT_EQ(pool.deallocate(must_allocate(pool, 4 * kMiB)), status::ok);
  const std::uint64_t frees = resource.deallocate_calls();
  const std::uintptr_t e = must_allocate(pool, 2 * kMiB);
  EXPECT_EQ(resource.deallocate_calls(), frees + 1);
  EXPECT_EQ(pool.stats().bytes_reserved, 2 * kMiB);
  ASSERT_EQ(pool.deallocate(e), status::ok);
}

TEST(DevicePool, PeakReservedStaysWithinTheBoundOfPeakInUseUnderRandomLargeSizes) {
  fake_segment_resource resource;
  always_ready_fence ready;
  // Exact reuse only (no slack in live blocks): what the bound alone guarantees.
  device_pool pool(resource, ready, {.thread_cache_bytes = 0, .idle_percent = 10, .reuse_bits = 20});
  std::mt19937_64 rng(29);
  std::vector<std::pair<std::uintptr_t, std::size_t>> live;
  std::size_t in_use = 0, peak = 0;
  for (int i = 0; i < 3000; ++i) {
    if (!live.empty() && (rng() % 2 == 0 || live.size() > 40)) {
      const std::size_t k = rng() % live.size();
      ASSERT_EQ(pool.deallocate(live[k].first), status::ok);
      in_use -= live[k].second;
      live[k] = live.back();
      live.pop_back();
      continue;
    }
    const std::size_t bytes = (2 + rng() % 24) * kMiB / (rng() % 2 + 1);  // classes exactly
    live.emplace_back(must_allocate(pool, bytes), bytes);
    in_use += bytes;
    peak = std::max(peak, in_use);
    ASSERT_EQ(pool.block_size(live.back().first), bytes);
  }
  const pool_stats s = pool.stats();
  EXPECT_LE(s.peak_reserved, peak + peak / 10);
  EXPECT_GT(s.pool_hits, s.requests / 4) << "idle blocks are still reused";
  EXPECT_GT(s.bound_releases, 0u);
  for (const auto& l : live) ASSERT_EQ(pool.deallocate(l.first), status::ok);
}

// The daemon's source (idle_bound_now): a process whose use fell keeps idle at most the bound's
// share of what it uses now when it grows again, not of its earlier peak (a high-water bound keeps
// the whole burst: the last check shows the difference).
TEST(DevicePool, IdleBoundAgainstTheBytesInUseNowReturnsAnEarlierPeaksBlocksBeforeGrowing) {
  for (const bool now : {true, false}) {
    fake_segment_resource resource;
    always_ready_fence ready;
    device_pool pool(resource, ready,
                     {.thread_cache_bytes = 0, .idle_percent = 10, .idle_bound_now = now, .reuse_bits = 20});
    std::vector<std::uintptr_t> burst;
    for (int i = 0; i < 10; ++i) burst.push_back(must_allocate(pool, 16 * kMiB));  // a peak of 160 MiB
    const std::uintptr_t kept = must_allocate(pool, 4 * kMiB);
    for (const std::uintptr_t b : burst) ASSERT_EQ(pool.deallocate(b), status::ok);
    EXPECT_EQ(pool.stats().bytes_reserved, 164 * kMiB) << "freed large blocks stay cached until the pool grows";
    const std::uintptr_t grown = must_allocate(pool, 2 * kMiB);  // no cached block fits: a new segment
    const pool_stats s = pool.stats();
    if (now) {
      EXPECT_LE(s.bytes_reserved, (6 * kMiB) + (6 * kMiB) / 10) << "only 6 MiB in use now";
      EXPECT_EQ(s.bound_releases, 10u);
    } else {
      EXPECT_EQ(s.bytes_reserved, 166 * kMiB) << "within 10% of the 164 MiB high-water mark";
      EXPECT_EQ(s.bound_releases, 0u);
    }
    ASSERT_EQ(pool.deallocate(kept), status::ok);
    ASSERT_EQ(pool.deallocate(grown), status::ok);
  }
}

// Allocates, frees and re-allocates `rounds` times, and counts the times a block came back while
// the truth fence had not completed the epoch of its free.
int early_reuses(device_pool& pool, manual_fence& truth, std::size_t bytes, int rounds) {
  std::map<std::uintptr_t, std::uint64_t> freed_at;
  int early = 0;
  std::vector<std::uintptr_t> live;
  for (int i = 0; i < rounds; ++i) {
    std::uintptr_t a = 0;
    if (pool.allocate(bytes, &a) != status::ok) return -1;
    if (auto it = freed_at.find(a); it != freed_at.end() && it->second > truth.completed()) ++early;
    live.push_back(a);
    if (live.size() == 4) {
      for (std::uintptr_t p : live) {
        freed_at[p] = truth.current();  // the stamp the pool gets is at least this
        pool.deallocate(p);
      }
      live.clear();
      if (i % 12 == 11) truth.advance();
    }
  }
  return early;
}

// A fence that claims everything is complete while stamping frees from a real one: the pool
// believes it, so a check for early reuse must catch it.
class broken_fence final : public fence {
 public:
  explicit broken_fence(manual_fence& truth) : broken_fence(truth, truth.current_epoch()) {}

 private:
  broken_fence(manual_fence&, const std::atomic<std::uint64_t>* current) : fence(&always_, current) {}
  void do_wait_for(std::uint64_t) noexcept override {}
  void do_poll(std::uint64_t, bool) noexcept override {}
  static inline std::atomic<std::uint64_t> always_{~std::uint64_t{0}};
};

TEST(DevicePool, FreedBlockIsNotReusedBeforeItsFenceCompletes) {
  for (std::size_t bytes : {std::size_t{512}, 64 * kKiB, 4 * kMiB}) {
    fixture f;
    const std::uintptr_t a = must_allocate(f.pool, bytes);
    ASSERT_EQ(f.pool.deallocate(a), status::ok);
    const std::uintptr_t b = must_allocate(f.pool, bytes);
    EXPECT_NE(a, b) << bytes << ": reused before its epoch completed";
    f.fence.advance();
    EXPECT_EQ(must_allocate(f.pool, bytes), a) << bytes << ": reused right after its epoch completed";
  }
}

// A miss that finds only blocks waiting for a fence polls the fence before it grows the pool, on
// every path: the thread cache, the shared pending list (caches off; two 1 MiB blocks fill a
// segment, so the freed one is all there is) and the large class cache.
TEST(DevicePool, MissPollsTheFenceBeforeGrowingAndReusesWhatThePollCompleted) {
  struct path {
    std::size_t cache, bytes;
  };
  for (path p : {path{4 * kMiB, 512}, path{4 * kMiB, 64 * kKiB}, path{0, kMiB}, path{0, 4 * kMiB}}) {
    fake_segment_resource resource;
    manual_fence fence(/*complete_on_wait=*/false, /*complete_on_poll=*/true);
    device_pool_options o;
    o.thread_cache_bytes = p.cache;
    device_pool pool(resource, fence, o);
    const std::uintptr_t a = must_allocate(pool, p.bytes);
    if (p.bytes == kMiB) must_allocate(pool, p.bytes);  // the segment is full
    const auto segments = pool.stats().segments;
    ASSERT_EQ(pool.deallocate(a), status::ok);
    EXPECT_EQ(must_allocate(pool, p.bytes), a) << p.bytes << " cache " << p.cache;
    EXPECT_GE(fence.polls(), 1u) << p.bytes << " cache " << p.cache;
    EXPECT_EQ(pool.stats().segments, segments) << p.bytes << " cache " << p.cache << ": grew instead of polling";
  }
}

TEST(DevicePool, PollThatCompletesNothingLeavesTheBlockAlone) {
  for (std::size_t bytes : {std::size_t{512}, 4 * kMiB}) {
    fixture f;
    const std::uintptr_t a = must_allocate(f.pool, bytes);
    ASSERT_EQ(f.pool.deallocate(a), status::ok);
    EXPECT_NE(must_allocate(f.pool, bytes), a) << bytes;
    EXPECT_GE(f.fence.polls(), 1u) << bytes;
  }
}

TEST(DevicePool, EarlyReuseCheckFindsNoneWithTheFenceAndSomeWithABrokenOne) {
  for (std::size_t bytes : {std::size_t{512}, 64 * kKiB, 4 * kMiB}) {
    fixture f;
    EXPECT_EQ(early_reuses(f.pool, f.fence, bytes, 600), 0) << bytes;
    fake_segment_resource resource;
    manual_fence truth;
    broken_fence broken(truth);
    device_pool pool(resource, broken);
    EXPECT_GT(early_reuses(pool, truth, bytes, 600), 0) << bytes << ": the check can fail";
  }
}

TEST(DevicePool, PendingBlocksCoalesceOnlyOnceTheirEpochCompletes) {
  fixture f({.thread_cache_bytes = 0});
  std::uintptr_t v[4];
  for (auto& a : v) a = must_allocate(f.pool, 512 * kKiB);  // fills one segment
  ASSERT_EQ(f.pool.stats().segments, 1u);
  ASSERT_EQ(f.pool.deallocate(v[1]), status::ok);
  ASSERT_EQ(f.pool.deallocate(v[2]), status::ok);
  const std::uintptr_t c = must_allocate(f.pool, kMiB);
  EXPECT_NE(c, v[1]) << "the two pending neighbours were merged before their epoch completed";
  EXPECT_EQ(f.pool.stats().segments, 2u);
  ASSERT_EQ(f.pool.deallocate(c), status::ok);
  f.fence.advance();
  EXPECT_EQ(must_allocate(f.pool, kMiB), v[1]) << "merged once ready";
  EXPECT_EQ(f.pool.release_idle(), 2 * kMiB) << "the second segment is idle again";
}

TEST(DevicePool, NoOverlapUnderRandomStressAgainstAShadowModel) {
  fixture f({}, 512 * kMiB);
  std::mt19937_64 rng(11);
  struct live_block {
    std::size_t size;
    std::uint64_t tag;
  };
  std::map<std::uintptr_t, live_block> shadow;
  auto check_tag = [](std::uintptr_t a, const live_block& l) {
    std::uint64_t head, tail;
    std::memcpy(&head, reinterpret_cast<void*>(a), 8);
    std::memcpy(&tail, reinterpret_cast<void*>(a + l.size - 8), 8);
    return head == l.tag && tail == ~l.tag;
  };
  for (int i = 0; i < 30000; ++i) {
    if (!shadow.empty() && (rng() % 2 == 0 || shadow.size() > 300)) {
      auto it = shadow.lower_bound(rng());
      if (it == shadow.end()) it = shadow.begin();
      ASSERT_TRUE(check_tag(it->first, it->second)) << "a neighbour wrote into this block";
      ASSERT_EQ(f.pool.deallocate(it->first), status::ok);
      shadow.erase(it);
      if (rng() % 8 == 0) f.fence.advance();
      continue;
    }
    const std::size_t bytes = rng() % 16 == 0 ? kMiB + rng() % (6 * kMiB) : 1 + rng() % (rng() % 4 ? 8 * kKiB : kMiB);
    std::uintptr_t a = 0;
    ASSERT_EQ(f.pool.allocate(bytes, &a), status::ok);
    const std::size_t size = f.pool.block_size(a);
    if (bytes <= kMiB) {
      ASSERT_EQ(size, round_small(bytes));
    } else {  // its class, or an idle block of up to a quarter more
      ASSERT_GE(size, large_class_size(bytes));
      ASSERT_LE(size, large_class_size(bytes) + large_class_size(bytes) / 4);
    }
    auto next = shadow.lower_bound(a);
    ASSERT_TRUE(next == shadow.end() || a + size <= next->first) << "overlaps the next live block";
    ASSERT_TRUE(next == shadow.begin() || std::prev(next)->first + std::prev(next)->second.size <= a);
    const live_block l{size, rng()};
    const std::uint64_t tail = ~l.tag;
    std::memcpy(reinterpret_cast<void*>(a), &l.tag, 8);
    std::memcpy(reinterpret_cast<void*>(a + size - 8), &tail, 8);
    shadow.emplace(a, l);
    if (i % 5000 == 0) f.pool.release_idle();
  }
  for (auto& [a, l] : shadow) {
    ASSERT_TRUE(check_tag(a, l));
    ASSERT_EQ(f.pool.deallocate(a), status::ok);
  }
  f.fence.advance();
  f.pool.release_idle();
  EXPECT_EQ(f.resource.live_segments(), 0u);
  EXPECT_EQ(f.pool.stats().bytes_in_use, 0u);
}

TEST(DevicePool, ThreadCachesServeEightThreadsThatFreeWhatOthersAllocated) {
  fake_segment_resource resource;
  always_ready_fence ready;
  device_pool pool(resource, ready, {.thread_cache_bytes = 256 * kKiB});
  std::mutex m;
  std::vector<std::pair<std::uintptr_t, std::uint64_t>> handoff;
  std::atomic<int> corrupt{0}, failures{0};
  auto worker = [&](unsigned id) {
    std::mt19937_64 rng(id);
    for (int i = 0; i < 4000; ++i) {
      const std::size_t bytes = 512 * (1 + rng() % 16);
      std::uintptr_t a = 0;
      if (pool.allocate(bytes, &a) != status::ok) {
        failures.fetch_add(1);
        continue;
      }
      const std::uint64_t tag = (std::uint64_t{id} << 32) | static_cast<std::uint64_t>(i);
      std::memcpy(reinterpret_cast<void*>(a), &tag, 8);
      std::pair<std::uintptr_t, std::uint64_t> other{0, 0};
      {
        std::lock_guard lock(m);
        handoff.emplace_back(a, tag);
        if (handoff.size() > 64) {
          const std::size_t k = rng() % handoff.size();
          other = handoff[k];
          handoff[k] = handoff.back();
          handoff.pop_back();
        }
      }
      if (other.first != 0) {
        std::uint64_t seen;
        std::memcpy(&seen, reinterpret_cast<void*>(other.first), 8);
        if (seen != other.second) corrupt.fetch_add(1);
        if (pool.deallocate(other.first) != status::ok) failures.fetch_add(1);
      }
    }
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 8; ++t) threads.emplace_back(worker, t);
  for (auto& t : threads) t.join();
  EXPECT_EQ(corrupt.load(), 0);
  EXPECT_EQ(failures.load(), 0);
  for (auto& [a, tag] : handoff) ASSERT_EQ(pool.deallocate(a), status::ok);
  const pool_stats s = pool.stats();
  EXPECT_EQ(s.requests, 8u * 4000u);
  EXPECT_GT(s.pool_hits, s.requests / 2) << "most requests are cache hits";
  EXPECT_EQ(s.bytes_in_use, 0u);
  pool.release_idle();
  EXPECT_EQ(resource.live_segments(), 0u) << "exited threads flushed their caches";
}

TEST(DevicePool, ReleaseIdleReturnsFreeSegmentsAndKeepsUsedOnes) {
  fixture f;
  const std::uintptr_t keep = must_allocate(f.pool, 4 * kKiB);
  std::vector<std::uintptr_t> v;
  for (int i = 0; i < 8; ++i) v.push_back(must_allocate(f.pool, 700 * kKiB));
  v.push_back(must_allocate(f.pool, 10 * kMiB));
  for (std::uintptr_t a : v) ASSERT_EQ(f.pool.deallocate(a), status::ok);
  f.fence.advance();
  const std::size_t before = f.resource.bytes_in_use();
  const std::size_t released = f.pool.release_idle();
  EXPECT_EQ(before - released, f.resource.bytes_in_use());
  EXPECT_EQ(f.resource.live_segments(), 1u);
  EXPECT_EQ(f.pool.stats().segments, 1u);
  EXPECT_EQ(f.pool.stats().bytes_reserved, 2 * kMiB);
  EXPECT_EQ(f.pool.deallocate(keep), status::ok);
  f.fence.advance();
  f.pool.release_idle();
  EXPECT_EQ(f.resource.live_segments(), 0u);
  EXPECT_EQ(f.pool.stats().bytes_reserved, 0u);
}

TEST(DevicePool, FreesBeyondTheIdleLimitReturnSegmentsToTheSource) {
  fake_segment_resource resource;
  always_ready_fence ready;
  device_pool pool(resource, ready, {.thread_cache_bytes = 0, .idle_limit = 20 * kMiB});
  std::vector<std::uintptr_t> v;
  for (int i = 0; i < 4; ++i) v.push_back(must_allocate(pool, 8 * kMiB));
  for (int i = 0; i < 8; ++i) v.push_back(must_allocate(pool, kMiB));  // four small segments
  for (std::uintptr_t a : v) ASSERT_EQ(pool.deallocate(a), status::ok);
  EXPECT_EQ(pool.stats().bytes_in_use, 0u);
  EXPECT_LE(pool.stats().bytes_reserved, 20 * kMiB) << "idle bytes above the limit went back";
  EXPECT_GE(pool.stats().bytes_reserved, 20 * kMiB - 8 * kMiB) << "only down to the limit";
  EXPECT_EQ(pool.stats().bytes_reserved, resource.bytes_in_use());
}

TEST(DevicePool, OutOfMemoryPathReleasesIdleSegmentsAndRetries) {
  fixture f({.idle_percent = kNoIdleBound}, 8 * kMiB);  // the idle bound would return it before
  const std::uintptr_t a = must_allocate(f.pool, 6 * kMiB);
  ASSERT_EQ(f.pool.deallocate(a), status::ok);
  f.fence.advance();
  std::uintptr_t b = 0;
  EXPECT_EQ(f.pool.allocate(4 * kMiB, &b), status::ok);
  EXPECT_EQ(f.pool.stats().oom_recoveries, 1u);
  EXPECT_EQ(f.resource.failed_calls(), 1u);
  EXPECT_EQ(f.pool.stats().bytes_reserved, 4 * kMiB);
}

TEST(DevicePool, OutOfMemoryPathWaitsForPendingFences) {
  fake_segment_resource resource(8 * kMiB);
  manual_fence fence(/*complete_on_wait=*/true);
  device_pool pool(resource, fence);
  const std::uintptr_t a = must_allocate(pool, 6 * kMiB);
  ASSERT_EQ(pool.deallocate(a), status::ok);  // pending: epoch 1, completed 0
  std::uintptr_t b = 0;
  EXPECT_EQ(pool.allocate(4 * kMiB, &b), status::ok);
  EXPECT_EQ(fence.waits(), 1u);
  EXPECT_GE(fence.completed(), 1u);
}

TEST(DevicePool, OutOfMemoryIsReportedAfterOneRetryAndThePoolStaysUsable) {
  fixture f({}, 4 * kMiB);
  std::uintptr_t a = 0;
  EXPECT_EQ(f.pool.allocate(8 * kMiB, &a), status::out_of_memory);
  EXPECT_EQ(f.resource.allocate_calls(), 2u) << "one attempt and one retry";
  EXPECT_EQ(f.pool.stats().oom_recoveries, 1u);
  EXPECT_EQ(f.pool.allocate(3 * kMiB, &a), status::ok);
}

TEST(DevicePool, InjectedSourceFailureIsRecoveredByTheRetry) {
  fixture f;
  f.resource.fail_nth_allocation(1);
  std::uintptr_t a = 0;
  EXPECT_EQ(f.pool.allocate(4 * kKiB, &a), status::ok);
  EXPECT_EQ(f.pool.stats().oom_recoveries, 1u);
}

TEST(DevicePool, StatisticsAddUp) {
  fixture f({.thread_cache_bytes = 0});
  std::vector<std::uintptr_t> v;
  std::size_t live = 0;
  for (std::size_t bytes : {100 * kKiB, 1000ul, 3 * kMiB, 512ul, 9 * kMiB}) {
    v.push_back(must_allocate(f.pool, bytes));
    live += f.pool.block_size(v.back());
  }
  pool_stats s = f.pool.stats();
  EXPECT_EQ(s.requests, 5u);
  EXPECT_EQ(s.pool_hits, 2u) << "the 2nd and 4th small requests came from the first segment";
  EXPECT_EQ(s.bytes_in_use, live);
  EXPECT_EQ(s.peak_in_use, live);
  EXPECT_EQ(s.bytes_reserved, f.resource.bytes_in_use());
  EXPECT_EQ(s.segments, f.resource.live_segments());
  EXPECT_EQ(s.peak_reserved, s.bytes_reserved);
  ASSERT_EQ(f.pool.deallocate(v[2]), status::ok);
  ASSERT_EQ(f.pool.deallocate(v[0]), status::ok);
  f.fence.advance();
  const std::uintptr_t again = must_allocate(f.pool, 3 * kMiB);
  EXPECT_EQ(again, v[2]);
  s = f.pool.stats();
  EXPECT_EQ(s.requests, 6u);
  EXPECT_EQ(s.pool_hits, 3u);
  EXPECT_EQ(s.bytes_in_use, live - 100 * kKiB);
  EXPECT_EQ(s.peak_in_use, live);
  EXPECT_EQ(s.bytes_reserved, f.resource.bytes_in_use());
}

TEST(DevicePool, StatisticsCountThreadCacheHits) {
  fixture f;
  for (int i = 0; i < 1000; ++i) {
    const std::uintptr_t a = must_allocate(f.pool, 4 * kKiB);
    ASSERT_EQ(f.pool.deallocate(a), status::ok);
    f.fence.advance();
  }
  const pool_stats s = f.pool.stats();
  EXPECT_EQ(s.requests, 1000u);
  EXPECT_EQ(s.pool_hits, 999u);
  EXPECT_EQ(s.bytes_in_use, 0u);
  EXPECT_EQ(f.resource.allocate_calls(), 1u);
}

TEST(DevicePool, InteriorUnknownAndDoubleFreesAreRejected) {
  fixture f;
  const std::uintptr_t small = must_allocate(f.pool, 4 * kKiB);
  const std::uintptr_t large = must_allocate(f.pool, 3 * kMiB);
  EXPECT_EQ(f.pool.deallocate(small + 512), status::invalid_pointer);
  EXPECT_EQ(f.pool.deallocate(small + 1), status::invalid_pointer);
  EXPECT_EQ(f.pool.deallocate(large + 512), status::invalid_pointer);
  EXPECT_EQ(f.pool.deallocate(small + 8 * kKiB), status::invalid_pointer) << "a free block's start";
  EXPECT_EQ(f.pool.deallocate(0x1234), status::unknown_pointer);
  EXPECT_EQ(f.pool.deallocate(0), status::unknown_pointer);
  EXPECT_EQ(f.pool.deallocate(~std::uintptr_t{0}), status::unknown_pointer);
  EXPECT_TRUE(f.pool.owns(small + 512));
  EXPECT_FALSE(f.pool.owns(0x1234));
  EXPECT_EQ(f.pool.block_size(small + 512), 0u);
  EXPECT_EQ(f.pool.deallocate(small), status::ok);
  EXPECT_EQ(f.pool.deallocate(small), status::invalid_pointer) << "double free of a cached block";
  f.pool.flush_thread_cache();
  EXPECT_EQ(f.pool.deallocate(small), status::invalid_pointer) << "double free of a pending block";
  f.fence.advance();
  f.pool.release_idle();
  EXPECT_EQ(f.pool.deallocate(small), status::unknown_pointer) << "its segment went back to the source";
  EXPECT_EQ(f.pool.deallocate(large), status::ok);
  EXPECT_EQ(f.pool.deallocate(large), status::invalid_pointer);
  EXPECT_EQ(f.pool.stats().bytes_in_use, 0u);
}

TEST(DevicePool, ThreadExitFlushesItsCache) {
  fixture f;
  std::thread([&] {
    std::vector<std::uintptr_t> v;
    for (int i = 0; i < 16; ++i) v.push_back(must_allocate(f.pool, 8 * kKiB));
    for (std::uintptr_t a : v) EXPECT_EQ(f.pool.deallocate(a), status::ok);
  }).join();
  f.fence.advance();
  f.pool.release_idle();
  EXPECT_EQ(f.resource.live_segments(), 0u);
}

device_pool* g_late_pool = nullptr;
std::atomic<int> g_late_results{0};

// A thread_local constructed before the thread's first pool use is destroyed after the cache's
// exit hook ran; its destructor still allocates and frees.
struct late_user {
  bool touched = false;
  ~late_user() {
    std::uintptr_t a = 0;
    if (g_late_pool->allocate(8 * kKiB, &a) == status::ok && g_late_pool->deallocate(a) == status::ok) {
      g_late_results.fetch_add(1);
    }
  }
};
thread_local late_user tl_late_user;

TEST(DevicePool, ThreadLocalDestructorsRunningAfterTheCacheFlushStillWork) {
  fixture f;
  g_late_pool = &f.pool;
  g_late_results = 0;
  std::thread([&] {
    tl_late_user.touched = true;
    const std::uintptr_t a = must_allocate(f.pool, 8 * kKiB);
    EXPECT_EQ(f.pool.deallocate(a), status::ok);
  }).join();
  EXPECT_EQ(g_late_results.load(), 1);
  f.fence.advance();
  f.pool.release_idle();
  EXPECT_EQ(f.resource.live_segments(), 0u) << "the late free went to the shared pool, not a new cache";
}

TEST(DevicePool, ReleaseIdleAsksOtherThreadsToFlush) {
  fixture f;
  std::atomic<int> phase{0};
  std::thread t([&] {
    const std::uintptr_t a = must_allocate(f.pool, 8 * kKiB);
    EXPECT_EQ(f.pool.deallocate(a), status::ok);  // now in this thread's cache
    phase = 1;
    while (phase.load() != 2) std::this_thread::yield();
    std::uintptr_t b = 0;
    EXPECT_EQ(f.pool.allocate(16 * kKiB, &b), status::ok);  // a slow path: honours the request
    EXPECT_EQ(f.pool.deallocate(b), status::ok);
    phase = 3;
    while (phase.load() != 4) std::this_thread::yield();
  });
  while (phase.load() != 1) std::this_thread::yield();
  f.fence.advance();
  f.pool.release_idle();
  EXPECT_EQ(f.resource.live_segments(), 1u) << "the other thread still caches a block";
  phase = 2;
  while (phase.load() != 3) std::this_thread::yield();
  f.fence.advance();
  phase = 4;
  t.join();
  f.pool.release_idle();
  EXPECT_EQ(f.resource.live_segments(), 0u);
}

TEST(DevicePool, ANewPoolInADestroyedPoolsCacheSlotStartsClean) {
  fake_segment_resource resource;
  always_ready_fence ready;
  std::uintptr_t old = 0;
  {
    device_pool a(resource, ready);
    old = must_allocate(a, 4 * kKiB);
    ASSERT_EQ(a.deallocate(old), status::ok);  // left in this thread's cache of `a`
  }
  EXPECT_EQ(resource.live_segments(), 0u);
  for (int i = 0; i < 40; ++i) {  // more pools than slots, one after another
    device_pool b(resource, ready);
    const std::uintptr_t p = must_allocate(b, 4 * kKiB);
    EXPECT_TRUE(b.owns(p));
    EXPECT_EQ(b.deallocate(p), status::ok);
  }
}

TEST(DevicePool, WorksWithoutThreadCaches) {
  fixture f({.thread_cache_bytes = 0});
  const std::uintptr_t a = must_allocate(f.pool, 4 * kKiB);
  ASSERT_EQ(f.pool.deallocate(a), status::ok);
  f.fence.advance();
  EXPECT_EQ(must_allocate(f.pool, 4 * kKiB), a);
}

TEST(DevicePool, FenceModeStressFindsNoEarlyReuseAcrossThreads) {
  fake_segment_resource resource;
  manual_fence fence(true);
  device_pool pool(resource, fence, {.thread_cache_bytes = 64 * kKiB});
  std::mutex m;
  std::map<std::uintptr_t, std::uint64_t> freed_at;
  std::atomic<int> early{0};
  std::atomic<bool> stop{false};
  std::thread ticker([&] {
    while (!stop.load()) {
      fence.advance();
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  });
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::vector<std::uintptr_t> mine;
      for (int i = 0; i < 3000; ++i) {
        if (mine.size() < 8 && rng() % 2) {
          std::uintptr_t a = 0;
          const std::size_t bytes = rng() % 8 == 0 ? 2 * kMiB : 512 * (1 + rng() % 8);
          if (pool.allocate(bytes, &a) != status::ok) continue;
          const std::uint64_t done = fence.completed();
          std::lock_guard lock(m);
          if (auto it = freed_at.find(a); it != freed_at.end() && it->second > done) early.fetch_add(1);
          mine.push_back(a);
        } else if (!mine.empty()) {
          const std::uintptr_t a = mine.back();
          mine.pop_back();
          {
            std::lock_guard lock(m);
            freed_at[a] = fence.current();
          }
          pool.deallocate(a);
        }
      }
      for (std::uintptr_t a : mine) pool.deallocate(a);
    });
  }
  for (auto& t : threads) t.join();
  stop = true;
  ticker.join();
  EXPECT_EQ(early.load(), 0);
}

}  // namespace
}  // namespace poolshim::pool

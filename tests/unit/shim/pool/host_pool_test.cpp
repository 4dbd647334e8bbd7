// host_pool over fake_segment_resource: power-of-two buckets up to 1 MiB, page alignment, the
// guard page at each slab's base, split and coalescing inside slabs, big requests in their own
// slab, frees (double, interior, foreign), lookups of interior pointers, release of idle slabs,
// statistics, and a random multi-thread stress against a shadow model (no two live blocks
// overlap, contents survive).
#include "pool/host_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "support/fake_segment_resource.h"

namespace poolshim::pool {
namespace host_pool_test {  // named, not anonymous: a unity build puts several test files in one unit

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = kKiB * kKiB;

struct fixture {
  explicit fixture(host_pool_options o = small_slabs()) : pool(resource, o) {}
  static host_pool_options small_slabs() {
    host_pool_options o;
    o.first_slab_size = o.slab_size = 8 * kMiB;  // every slab 8 MiB (growth: its own test)
    return o;
  }
  std::uintptr_t must_allocate(std::size_t bytes, unsigned flags = 0) {
    std::uintptr_t a = 0;
    EXPECT_EQ(pool.allocate(bytes, flags, &a), status::ok) << bytes;
    return a;
  }
  std::size_t size_of(std::uintptr_t a) {
    host_block_info info;
    EXPECT_EQ(pool.find(a, &info), status::ok);
    return info.size;
  }
  fake_segment_resource resource;
  host_pool pool;
};

TEST(HostPool, SmallRequestsRoundUpToPowerOfTwoBucketsOfAtLeastAPage) {
  fixture f;
  EXPECT_EQ(f.size_of(f.must_allocate(1)), 4 * kKiB);
  EXPECT_EQ(f.size_of(f.must_allocate(4 * kKiB + 1)), 8 * kKiB);
  EXPECT_EQ(f.size_of(f.must_allocate(300 * kKiB)), 512 * kKiB);
  EXPECT_EQ(f.size_of(f.must_allocate(kMiB)), kMiB);
  // Above the buckets: page multiples.
  EXPECT_EQ(f.size_of(f.must_allocate(kMiB + 1)), kMiB + 4 * kKiB);
}

TEST(HostPool, EveryBlockIsPageAligned) {
  fixture f;
  std::mt19937 rng(3);
  for (int i = 0; i < 300; ++i) {
    const std::uintptr_t a = f.must_allocate(1 + rng() % (3 * kMiB));
    EXPECT_EQ(a % host_pool::kPage, 0u);
  }
}

TEST(HostPool, NoBlockStartsAtASlabBase) {
  fixture f;
  std::vector<std::uintptr_t> v;
  for (int i = 0; i < 40; ++i) v.push_back(f.must_allocate(i % 2 ? 3 * kMiB : 4 * kKiB));
  v.push_back(f.must_allocate(8 * kMiB));  // a slab of its own
  for (std::uintptr_t a : v) EXPECT_NE(a % (2 * kMiB), 0u) << "a block at a slab's base";
  host_block_info info;
  EXPECT_EQ(f.pool.find(v.back() - host_pool::kPage, &info), status::invalid_pointer);
}

TEST(HostPool, ZeroBytesIsAnInvalidArgument) {
  fixture f;
  std::uintptr_t a = 7;
  EXPECT_EQ(f.pool.allocate(0, 0, &a), status::invalid_argument);
  EXPECT_EQ(a, 7u);
  EXPECT_EQ(f.resource.allocate_calls(), 0u);
}

TEST(HostPool, SecondAllocationOfASizeIsAHitFromTheSameSlab) {
  fixture f;
  const std::uintptr_t a = f.must_allocate(100 * kKiB);
  EXPECT_EQ(f.pool.stats().pool_hits, 0u);
  EXPECT_EQ(f.pool.deallocate(a), status::ok);
  const std::uintptr_t b = f.must_allocate(100 * kKiB);
  EXPECT_EQ(b, a);  // best fit: the coalesced slab's lowest block
  EXPECT_EQ(f.pool.stats().pool_hits, 1u);
  EXPECT_EQ(f.resource.allocate_calls(), 1u);
}

TEST(HostPool, SplitBlocksCoalesceBackIntoOneFreeSlab) {
  fixture f;
  std::vector<std::uintptr_t> v;
  for (int i = 0; i < 7; ++i) v.push_back(f.must_allocate(kMiB));  // the 8 MiB slab less its guard page
  EXPECT_EQ(f.pool.stats().slabs, 1u);
  for (std::size_t i = 0; i < v.size(); i += 2) EXPECT_EQ(f.pool.deallocate(v[i]), status::ok);
  // Free holes of 1 MiB and (at the end) 2 MiB less a page: a 2 MiB request needs a new slab.
  const std::uintptr_t big = f.must_allocate(2 * kMiB);
  EXPECT_EQ(f.pool.stats().slabs, 2u);
  EXPECT_EQ(f.pool.deallocate(big), status::ok);
  for (std::size_t i = 1; i < v.size(); i += 2) EXPECT_EQ(f.pool.deallocate(v[i]), status::ok);
  // Everything coalesced: a request of a whole slab less its guard fits, no third slab.
  const std::uintptr_t whole = f.must_allocate(8 * kMiB - host_pool::kPage);
  EXPECT_EQ(f.pool.stats().slabs, 2u);
  EXPECT_EQ(f.pool.deallocate(whole), status::ok);
}

TEST(HostPool, RequestsLargerThanASlabGetTheirOwnSlabRoundedTo2MiB) {
  fixture f;
  const std::uintptr_t a = f.must_allocate(9 * kMiB + 1);
  EXPECT_EQ(f.resource.bytes_in_use(), 10 * kMiB);
  EXPECT_EQ(a % (2 * kMiB), host_pool::kPage);  // right after the slab's guard page
  EXPECT_EQ(f.pool.stats().bytes_reserved, 10 * kMiB);
}

TEST(HostPool, SlabsGrowWithWhatThePoolHoldsUpToTheSlabSize) {
  host_pool_options o;  // the defaults: 2 MiB first, 64 MiB at most
  fixture f(o);
  // A small pinned user holds one 2 MiB slab, not 64 MiB.
  const std::uintptr_t first = f.must_allocate(64 * kKiB);
  EXPECT_EQ(f.pool.stats().bytes_reserved, 2 * kMiB);
  // Each new slab is as large as what the pool holds (the total doubles), up to 64 MiB.
  std::vector<std::size_t> sizes{2 * kMiB};
  std::vector<std::uintptr_t> held{first};
  while (f.pool.stats().bytes_reserved < 200 * kMiB) {
    const std::uint64_t before = f.pool.stats().bytes_reserved;
    const std::uint64_t slabs = f.pool.stats().slabs;
    // 1 MiB blocks until a new slab comes.
    while (f.pool.stats().slabs == slabs) held.push_back(f.must_allocate(kMiB));
    sizes.push_back(f.pool.stats().bytes_reserved - before);
  }
  const std::vector<std::size_t> want{2 * kMiB,  2 * kMiB,  4 * kMiB,  8 * kMiB, 16 * kMiB,
                                      32 * kMiB, 64 * kMiB, 64 * kMiB, 64 * kMiB};
  EXPECT_EQ(sizes, want);
  // A request larger than the next slab still gets a slab of its own size.
  const std::uint64_t before = f.pool.stats().bytes_reserved;
  held.push_back(f.must_allocate(100 * kMiB));
  EXPECT_EQ(f.pool.stats().bytes_reserved - before, 102 * kMiB);
  for (std::uintptr_t a : held) EXPECT_EQ(f.pool.deallocate(a), status::ok);
  // Given back, the pool starts small again.
  f.pool.release_idle();
  EXPECT_EQ(f.pool.stats().bytes_reserved, 0u);
  held = {f.must_allocate(4 * kKiB)};
  EXPECT_EQ(f.pool.stats().bytes_reserved, 2 * kMiB);
  EXPECT_EQ(f.pool.deallocate(held[0]), status::ok);
}

TEST(HostPool, DoubleInteriorAndForeignFreesAreRejected) {
  fixture f;
  const std::uintptr_t a = f.must_allocate(64 * kKiB);
  EXPECT_EQ(f.pool.deallocate(a + 4096), status::invalid_pointer);
  EXPECT_EQ(f.pool.deallocate(a - host_pool::kPage), status::invalid_pointer);  // the slab's guard
  EXPECT_EQ(f.pool.deallocate(a), status::ok);
  EXPECT_EQ(f.pool.deallocate(a), status::invalid_pointer);
  int on_stack = 0;
  EXPECT_EQ(f.pool.deallocate(reinterpret_cast<std::uintptr_t>(&on_stack)), status::unknown_pointer);
  EXPECT_TRUE(f.pool.owns(a));
  EXPECT_FALSE(f.pool.owns(reinterpret_cast<std::uintptr_t>(&on_stack)));
}

TEST(HostPool, FindAnswersForInteriorPointersOfLiveBlocksOnly) {
  fixture f;
  const std::uintptr_t a = f.must_allocate(10000, 3);
  host_block_info info;
  ASSERT_EQ(f.pool.find(a + 9999, &info), status::ok);
  EXPECT_EQ(info.base, a);
  EXPECT_EQ(info.size, 16 * kKiB);
  EXPECT_EQ(info.flags, 3u);
  EXPECT_EQ(f.pool.find(a + 16 * kKiB, &info), status::invalid_pointer);  // the free rest of the slab
  ASSERT_EQ(f.pool.deallocate(a), status::ok);
  EXPECT_EQ(f.pool.find(a, &info), status::invalid_pointer);
  EXPECT_EQ(f.pool.find(0, &info), status::unknown_pointer);
}

TEST(HostPool, ReleaseIdleReturnsOnlyFullyFreeSlabs) {
  fixture f;
  const std::uintptr_t a = f.must_allocate(kMiB);
  const std::uintptr_t b = f.must_allocate(20 * kMiB);
  EXPECT_EQ(f.pool.stats().slabs, 2u);
  EXPECT_EQ(f.pool.deallocate(b), status::ok);
  EXPECT_EQ(f.pool.release_idle(), 22 * kMiB);  // 20 MiB + the guard page, rounded to 2 MiB
  EXPECT_EQ(f.resource.live_segments(), 1u);
  EXPECT_EQ(f.pool.stats().slabs, 1u);
  EXPECT_EQ(f.pool.release_idle(), 0u);  // a's slab is in use
  EXPECT_EQ(f.pool.deallocate(a), status::ok);
  EXPECT_EQ(f.pool.release_idle(), 8 * kMiB);
  EXPECT_EQ(f.resource.live_segments(), 0u);
  EXPECT_EQ(f.pool.find(a, nullptr), status::unknown_pointer);
}

TEST(HostPool, ReleaseIdleCanKeepSomeIdleSlabs) {
  fixture f;
  const std::uintptr_t a = f.must_allocate(6 * kMiB);
  const std::uintptr_t b = f.must_allocate(6 * kMiB);
  const std::uintptr_t c = f.must_allocate(6 * kMiB);
  ASSERT_EQ(f.pool.stats().slabs, 3u);
  for (std::uintptr_t p : {a, b, c}) ASSERT_EQ(f.pool.deallocate(p), status::ok);
  EXPECT_EQ(f.pool.release_idle(1), 16 * kMiB) << "two of the three idle slabs";
  EXPECT_EQ(f.pool.stats().slabs, 1u);
  EXPECT_EQ(f.pool.release_idle(1), 0u) << "the kept one stays";
  EXPECT_EQ(f.pool.release_idle(), 8 * kMiB);
}

TEST(HostPool, SourceFailureIsReturnedAndThePoolStaysUsable) {
  fixture f;
  f.resource.fail_nth_allocation(1);
  std::uintptr_t a = 0;
  EXPECT_EQ(f.pool.allocate(4096, 0, &a), status::out_of_memory);
  EXPECT_EQ(f.pool.stats().slabs, 0u);
  EXPECT_NE(f.must_allocate(4096), 0u);
}

TEST(HostPool, StatisticsFollowAllocationsAndFrees) {
  fixture f;
  const std::uintptr_t a = f.must_allocate(3 * kKiB);      // 4 KiB
  const std::uintptr_t b = f.must_allocate(2 * kMiB + 1);  // 2 MiB + 4 KiB
  host_pool_stats s = f.pool.stats();
  EXPECT_EQ(s.requests, 2u);
  EXPECT_EQ(s.pool_hits, 1u);  // b came from a's slab
  EXPECT_EQ(s.bytes_in_use, 4 * kKiB + 2 * kMiB + 4 * kKiB);
  EXPECT_EQ(s.bytes_reserved, 8 * kMiB);
  EXPECT_EQ(s.slabs, 1u);
  ASSERT_EQ(f.pool.deallocate(b), status::ok);
  s = f.pool.stats();
  EXPECT_EQ(s.bytes_in_use, 4 * kKiB);
  EXPECT_EQ(s.peak_in_use, 4 * kKiB + 2 * kMiB + 4 * kKiB);
  EXPECT_EQ(s.peak_reserved, 8 * kMiB);
  ASSERT_EQ(f.pool.deallocate(a), status::ok);
  EXPECT_EQ(f.pool.stats().bytes_in_use, 0u);
}

TEST(HostPool, RandomStressFromFourThreadsNeverOverlapsAndKeepsContents) {
  fixture f;
  std::mutex m;
  std::map<std::uintptr_t, std::size_t> live;  // start -> size, every live block of every thread
  std::atomic<int> errors{0};
  auto worker = [&](unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<std::pair<std::uintptr_t, std::size_t>> mine;
    for (int i = 0; i < 3000; ++i) {
      if (mine.empty() || rng() % 3 != 0) {
        const std::size_t bytes = rng() % 4 == 0 ? 1 + rng() % (3 * kMiB) : 1 + rng() % (64 * kKiB);
        std::uintptr_t a = 0;
        if (f.pool.allocate(bytes, 0, &a) != status::ok) {
          ++errors;
          continue;
        }
        const std::size_t size = f.pool.rounded_size(bytes);
        {
          std::lock_guard lock(m);
          auto it = live.lower_bound(a);
          if (it != live.end() && it->first < a + size) ++errors;
          if (it != live.begin() && std::prev(it)->first + std::prev(it)->second > a) ++errors;
          live.emplace(a, size);
        }
        std::memset(reinterpret_cast<void*>(a), static_cast<int>(a >> 12 & 0xff), std::min<std::size_t>(bytes, 8192));
        mine.emplace_back(a, bytes);
      } else {
        const std::size_t k = rng() % mine.size();
        const auto [a, bytes] = mine[k];
        const auto* p = reinterpret_cast<const unsigned char*>(a);
        for (std::size_t j = 0; j < std::min<std::size_t>(bytes, 8192); j += 97)
          if (p[j] != static_cast<unsigned char>(a >> 12 & 0xff)) ++errors;
        {
          std::lock_guard lock(m);
          live.erase(a);
        }
        if (f.pool.deallocate(a) != status::ok) ++errors;
        mine[k] = mine.back();
        mine.pop_back();
      }
    }
    for (auto [a, bytes] : mine) {
      {
        std::lock_guard lock(m);
        live.erase(a);
      }
      if (f.pool.deallocate(a) != status::ok) ++errors;
    }
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 4; ++t) threads.emplace_back(worker, 100 + t);
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(f.pool.stats().bytes_in_use, 0u);
  EXPECT_EQ(f.pool.release_idle(), f.pool.stats().peak_reserved);
  EXPECT_EQ(f.resource.live_segments(), 0u);
}

}  // namespace host_pool_test
}  // namespace poolshim::pool

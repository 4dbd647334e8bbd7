// device_pool's controls of idle memory (issue #17) over fake_segment_resource: trim gives back
// whole free segments until the bytes asked are covered and never one holding a live block or a
// freed block whose fence has not passed; preallocate takes small segments the pool then serves
// from; idle_bytes says what a trim could take.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "pool/device_pool.h"
#include "pool/size_classes.h"
#include "support/fake_segment_resource.h"
#include "support/manual_fence.h"

namespace poolshim::pool {
namespace device_pool_trim_test {  // named, not anonymous: a unity build puts several test files in one unit

constexpr std::size_t kMiB = std::size_t{1} << 20;

std::uintptr_t must_allocate(device_pool& p, std::size_t bytes) {
  std::uintptr_t a = 0;
  EXPECT_EQ(p.allocate(bytes, &a), status::ok) << bytes;
  return a;
}

struct fixture {
  explicit fixture(device_pool_options o = {.thread_cache_bytes = 0}) : pool(resource, fence, o) {}
  fake_segment_resource resource;
  manual_fence fence;
  device_pool pool;
};

TEST(DevicePoolTrim, NeverReturnsASegmentThatHoldsALiveBlock) {
  fixture f;
  std::vector<std::uintptr_t> small;
  for (int i = 0; i < 8; ++i) small.push_back(must_allocate(f.pool, 512 * 1024));  // two 2 MiB segments
  const std::uintptr_t big = must_allocate(f.pool, 64 * kMiB);
  ASSERT_EQ(f.pool.stats().segments, 3u);
  // One block of each small segment stays live, the other three are freed (and ready).
  for (int i = 0; i < 8; ++i) {
    if (i % 4 != 0) {
      ASSERT_EQ(f.pool.deallocate(small[i]), status::ok);
    }
  }
  f.fence.advance();
  EXPECT_EQ(f.pool.trim(SIZE_MAX), 0u) << "every segment holds a live block";
  EXPECT_EQ(f.pool.stats().segments, 3u);
  EXPECT_EQ(f.pool.block_size(small[0]), 512u * 1024) << "the live block is intact";
  EXPECT_EQ(f.pool.block_size(big), 64 * kMiB);
  ASSERT_EQ(f.pool.deallocate(big), status::ok);
  f.fence.advance();
  EXPECT_EQ(f.pool.trim(1), 64 * kMiB) << "the large block's segment was wholly free";
  EXPECT_EQ(f.pool.stats().segments, 2u);
  EXPECT_EQ(f.resource.bytes_in_use(), 4 * kMiB);
}

TEST(DevicePoolTrim, KeepsAFreedBlockWhoseFenceHasNotPassed) {
  fixture f;
  const std::uintptr_t a = must_allocate(f.pool, 8 * kMiB);
  ASSERT_EQ(f.pool.deallocate(a), status::ok);  // stamped with an epoch not yet complete
  EXPECT_EQ(f.pool.trim(SIZE_MAX), 0u) << "the device may still be using the block";
  EXPECT_EQ(f.resource.live_segments(), 1u);
  f.fence.advance();
  EXPECT_EQ(f.pool.trim(SIZE_MAX), large_class_size(8 * kMiB));
  EXPECT_EQ(f.resource.live_segments(), 0u);
}

TEST(DevicePoolTrim, GivesBackAtLeastTheBytesAskedAndKeepsTheRest) {
  fixture f;
  std::vector<std::uintptr_t> v;
  for (int i = 0; i < 6; ++i) v.push_back(must_allocate(f.pool, 16 * kMiB));
  for (std::uintptr_t a : v) ASSERT_EQ(f.pool.deallocate(a), status::ok);
  f.fence.advance();
  const std::size_t seg = large_class_size(16 * kMiB);
  EXPECT_EQ(f.pool.idle_bytes(), 6 * seg);
  const std::size_t got = f.pool.trim(2 * seg + 1);
  EXPECT_EQ(got, 3 * seg) << "whole segments until the bytes asked are covered";
  EXPECT_EQ(f.pool.idle_bytes(), 3 * seg);
  EXPECT_EQ(f.resource.bytes_in_use(), 3 * seg);
  EXPECT_EQ(f.pool.trim(0), 0u);
  EXPECT_EQ(f.pool.trim(SIZE_MAX), 3 * seg);
  EXPECT_EQ(f.pool.idle_bytes(), 0u);
}

// What the idle report says (issue #17): only what a trim could give back, so the daemon never
// asks for the free part of a segment that holds a live block, nor a block waiting for its fence.
TEST(DevicePoolTrim, ReleasableBytesAreWhatATrimCouldGiveBack) {
  fixture f;
  const std::uintptr_t live = must_allocate(f.pool, 512 * 1024);
  const std::uintptr_t big = must_allocate(f.pool, 8 * kMiB);
  EXPECT_EQ(f.pool.idle_bytes(), 2 * kMiB - 512 * 1024) << "the free part of the small segment";
  EXPECT_EQ(f.pool.releasable_bytes(), 0u) << "that segment holds a live block";
  ASSERT_EQ(f.pool.deallocate(big), status::ok);
  EXPECT_EQ(f.pool.releasable_bytes(), 0u) << "the freed block's fence has not passed";
  f.fence.advance();
  EXPECT_EQ(f.pool.releasable_bytes(), large_class_size(8 * kMiB));
  ASSERT_EQ(f.pool.deallocate(live), status::ok);
  f.fence.advance();
  const std::size_t all = f.pool.releasable_bytes();
  EXPECT_EQ(all, large_class_size(8 * kMiB) + 2 * kMiB);
  EXPECT_EQ(f.pool.trim(SIZE_MAX), all);
  EXPECT_EQ(f.pool.releasable_bytes(), 0u);
}

TEST(DevicePoolTrim, PreallocatedSegmentsServeSmallRequestsWithoutTheSource) {
  fixture f;
  EXPECT_EQ(f.pool.preallocate(7 * kMiB), 8 * kMiB) << "four 2 MiB segments";
  EXPECT_EQ(f.pool.idle_bytes(), 8 * kMiB);
  const std::uint64_t calls = f.resource.allocate_calls();
  for (int i = 0; i < 16; ++i) must_allocate(f.pool, 256 * 1024);
  EXPECT_EQ(f.resource.allocate_calls(), calls) << "served from the preallocated segments";
  EXPECT_EQ(f.pool.idle_bytes(), 4 * kMiB);
}

TEST(DevicePoolTrim, PreallocationStopsWhereTheSourceRunsOut) {
  fake_segment_resource resource(6 * kMiB);
  manual_fence fence;
  device_pool pool(resource, fence, {.thread_cache_bytes = 0});
  EXPECT_EQ(pool.preallocate(64 * kMiB), 6 * kMiB);
}

}  // namespace device_pool_trim_test
}  // namespace poolshim::pool

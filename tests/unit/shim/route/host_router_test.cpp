// The host router (shim/route/host_router.h) on the simulated driver: pinned allocations from
// registered slabs of the current context's pool (local: the ctest names no daemon), the flags it
// honours (Portable, Mapped) and passes through (WriteCombined, unknown), the queries it answers for
// pooled pointers, frees (interior, double, foreign) and POOLSHIM_FREE_SYNC: device waits for work
// in flight, fence keeps the block back until its fence has passed.
#include "route/host_router.h"

#include <cuda.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#include "base/process.h"
#include "route/capture_state.h"
#include "route/fence_tracker.h"
#include "route_test_support.h"

namespace poolshim::host_router {
namespace {

using route_test::attribute;
using route_test::delayed_opener;
using route_test::gate;
using route_test::k_untouched;
using route_test::primary_context;

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_ = primary_context();
    ASSERT_NE(ctx_, nullptr);
    ASSERT_EQ(cuCtxSetCurrent(ctx_), CUDA_SUCCESS);
    ASSERT_EQ(base::mode(), run_mode::pool);
  }
  static void* alloc(std::size_t bytes, unsigned flags = 0) {
    void* p = nullptr;
    CUresult r = k_untouched;
    EXPECT_TRUE(try_alloc(&p, bytes, flags, &r)) << bytes;
    EXPECT_EQ(r, CUDA_SUCCESS) << bytes;
    return p;
  }
  static void release(void* p) {
    CUresult r = k_untouched;
    EXPECT_TRUE(try_free(p, &r));
    EXPECT_EQ(r, CUDA_SUCCESS);
  }
  static std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }
  CUcontext ctx_ = nullptr;
};

// POOLSHIM_FREE_SYNC=device (unset).
class HostRouter : public RouterTest {
 protected:
  void SetUp() override {
    RouterTest::SetUp();
    ASSERT_EQ(base::current_config().free_sync, free_sync_mode::device);
  }
};

TEST_F(HostRouter, ServesPinnedMemoryFromARegisteredSlabOfTheCurrentContext) {
  const totals before = sum_of_pools();
  void* p = alloc(1000);
  ASSERT_NE(p, nullptr);
  const totals after = sum_of_pools();
  EXPECT_EQ(addr(p) % 4096, 0u);
  CUresult r = k_untouched;
  EXPECT_EQ(attribute<unsigned>(CU_POINTER_ATTRIBUTE_MEMORY_TYPE, addr(p), &r), unsigned{CU_MEMORYTYPE_HOST});
  EXPECT_EQ(r, CUDA_SUCCESS) << "not pinned memory";
  EXPECT_EQ(attribute<CUcontext>(CU_POINTER_ATTRIBUTE_CONTEXT, addr(p)), ctx_);
  std::memset(p, 0xab, 1000);  // host memory, writable
  EXPECT_EQ(after.requests, before.requests + 1);
  EXPECT_EQ(after.bytes_in_use, before.bytes_in_use + 4096);
  EXPECT_GE(after.slabs, 1u);
  release(p);
  EXPECT_EQ(sum_of_pools().bytes_in_use, before.bytes_in_use);
}

TEST_F(HostRouter, FreedBlockIsReusedWithoutANewSlab) {
  release(alloc(8192));
  const totals before = sum_of_pools();
  void* p = alloc(8192);
  const totals after = sum_of_pools();
  EXPECT_EQ(after.requests, before.requests + 1);
  EXPECT_EQ(after.pool_hits, before.pool_hits + 1);
  EXPECT_EQ(after.slabs, before.slabs);
  EXPECT_EQ(after.bytes_reserved, before.bytes_reserved);
  release(p);
}

TEST_F(HostRouter, PortableAndMappedAreHonouredAndReportedByTheFlagQuery) {
  for (unsigned flags : {0u, unsigned{CU_MEMHOSTALLOC_PORTABLE}, unsigned{CU_MEMHOSTALLOC_DEVICEMAP},
                         unsigned{CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP}}) {
    void* p = alloc(4096, flags);
    ASSERT_NE(p, nullptr) << flags;
    unsigned got = ~0u;
    CUresult r = k_untouched;
    EXPECT_TRUE(try_get_flags(&got, p, &r));
    EXPECT_EQ(r, CUDA_SUCCESS);
    EXPECT_EQ(got, flags | CU_MEMHOSTALLOC_DEVICEMAP) << flags;  // as the driver reports its own
    got = ~0u;
    EXPECT_TRUE(try_get_flags(&got, static_cast<char*>(p) + 100, &r));
    EXPECT_EQ(got, flags | CU_MEMHOSTALLOC_DEVICEMAP) << "interior pointer, flags " << flags;
    release(p);
  }
}

TEST_F(HostRouter, WriteCombinedAndUnknownFlagsGoToTheDriver) {
  void* p = nullptr;
  CUresult r = k_untouched;
  EXPECT_FALSE(try_alloc(&p, 4096, CU_MEMHOSTALLOC_WRITECOMBINED, &r));
  EXPECT_FALSE(try_alloc(&p, 4096, CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_WRITECOMBINED, &r));
  EXPECT_FALSE(try_alloc(&p, 4096, 0x80, &r));
  EXPECT_EQ(p, nullptr);
  EXPECT_EQ(r, k_untouched);
}

TEST_F(HostRouter, DevicePointerOfAPooledPointerIsTheDriversAnswerForItsSlab) {
  void* p = alloc(4096, CU_MEMHOSTALLOC_DEVICEMAP);
  CUdeviceptr expected = 0;
  ASSERT_EQ(cuMemHostGetDevicePointer(&expected, p, 0), CUDA_SUCCESS) << "the slab is not registered";
  CUdeviceptr d = 0;
  CUresult r = k_untouched;
  EXPECT_TRUE(try_get_device_pointer(&d, p, 0, &r));
  EXPECT_EQ(r, CUDA_SUCCESS);
  EXPECT_EQ(d, expected);
  EXPECT_TRUE(try_get_device_pointer(&d, static_cast<char*>(p) + 100, 0, &r));
  EXPECT_EQ(d, expected + 100);
  EXPECT_TRUE(try_get_device_pointer(&d, p, 1, &r));
  EXPECT_EQ(r, CUDA_ERROR_INVALID_VALUE) << "flags must be 0: the driver's answer";
  release(p);
  // Freed: the slab is still registered, but the pool answers as for freed memory.
  r = k_untouched;
  EXPECT_TRUE(try_get_device_pointer(&d, p, 0, &r));
  EXPECT_EQ(r, CUDA_ERROR_INVALID_VALUE);
  unsigned flags = 0;
  r = k_untouched;
  EXPECT_TRUE(try_get_flags(&flags, p, &r));
  EXPECT_EQ(r, CUDA_ERROR_INVALID_VALUE);
}

TEST_F(HostRouter, InteriorPointerAndSecondFreeAreInvalidValueAndTheBlockSurvivesTheFirst) {
  void* p = alloc(16384);
  CUresult r = k_untouched;
  EXPECT_TRUE(try_free(static_cast<char*>(p) + 4096, &r));
  EXPECT_EQ(r, CUDA_ERROR_INVALID_VALUE);
  unsigned flags = 0;
  EXPECT_TRUE(try_get_flags(&flags, p, &r));
  EXPECT_EQ(r, CUDA_SUCCESS) << "an interior free released the block";
  release(p);
  r = k_untouched;
  EXPECT_TRUE(try_free(p, &r));
  EXPECT_EQ(r, CUDA_ERROR_INVALID_VALUE);
}

TEST_F(HostRouter, PooledPointerIsNoSlabBaseSoUnregisteringItIsRefused) {
  void* p = alloc(4096);
  EXPECT_EQ(cuMemHostUnregister(p), CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED);
  CUresult r = k_untouched;
  EXPECT_EQ(attribute<unsigned>(CU_POINTER_ATTRIBUTE_MEMORY_TYPE, addr(p), &r), unsigned{CU_MEMORYTYPE_HOST});
  EXPECT_EQ(r, CUDA_SUCCESS) << "the slab was unpinned";
  release(p);
}

TEST_F(HostRouter, MemoryOutsideThePoolsSlabsIsNotItsBusiness) {
  void* driver = nullptr;
  ASSERT_EQ(cuMemHostAlloc(&driver, 4096, 0), CUDA_SUCCESS);  // the driver's own pinned memory
  std::vector<char> heap(4096);
  CUresult r = k_untouched;
  unsigned flags = 0;
  CUdeviceptr d = 0;
  for (void* p : {driver, static_cast<void*>(heap.data())}) {
    EXPECT_FALSE(try_free(p, &r));
    EXPECT_FALSE(try_get_flags(&flags, p, &r));
    EXPECT_FALSE(try_get_device_pointer(&d, p, 0, &r));
  }
  EXPECT_FALSE(try_free(nullptr, &r));
  EXPECT_EQ(r, k_untouched);
  EXPECT_EQ(cuMemFreeHost(driver), CUDA_SUCCESS);
}

TEST_F(HostRouter, CaptureBadArgumentsAndAMissingContextAreTheDriversToAnswer) {
  void* p = nullptr;
  CUresult r = k_untouched;
  capture_state::note_capture(+1);
  EXPECT_FALSE(try_alloc(&p, 4096, 0, &r));
  capture_state::note_capture(-1);
  EXPECT_FALSE(try_alloc(nullptr, 4096, 0, &r));
  EXPECT_FALSE(try_alloc(&p, 0, 0, &r));
  ASSERT_EQ(cuCtxSetCurrent(nullptr), CUDA_SUCCESS);
  EXPECT_FALSE(try_alloc(&p, 4096, 0, &r));
  EXPECT_EQ(p, nullptr);
  EXPECT_EQ(r, k_untouched);
}

// cuMemFreeHost synchronises (pinned memory may be in flight on a copy engine): so does the pool.
TEST_F(HostRouter, FreeWaitsForWorkInFlightAsCuMemFreeHostDoes) {
  void* p = alloc(32768);
  gate g;
  ASSERT_EQ(g.hold(nullptr), CUDA_SUCCESS);  // the legacy stream of the current context
  delayed_opener opener(g);
  CUresult r = k_untouched;
  EXPECT_TRUE(try_free(p, &r));
  EXPECT_EQ(r, CUDA_SUCCESS);
  EXPECT_TRUE(opener.opened()) << "the free returned while work was in flight";
}

// POOLSHIM_FREE_SYNC=fence.
class HostRouterFenceMode : public RouterTest {
 protected:
  void SetUp() override {
    RouterTest::SetUp();
    ASSERT_EQ(base::current_config().free_sync, free_sync_mode::fence);
  }
};

TEST_F(HostRouterFenceMode, FreedBlockIsFreeToTheQueriesAtOnceAndBackInThePoolAfterItsFence) {
  void* p = alloc(3 * 4096);  // a 16 KiB block
  const totals start = sum_of_pools();
  gate g;
  ASSERT_EQ(g.hold(nullptr), CUDA_SUCCESS);  // work that may still read p
  const std::uint64_t epoch = fence_tracker::fence().epoch_for_free();
  CUresult r = k_untouched;
  EXPECT_TRUE(try_free(p, &r));
  EXPECT_EQ(r, CUDA_SUCCESS);
  EXPECT_FALSE(g.is_open()) << "the free waited for the stream (or the watchdog opened the gate)";
  EXPECT_EQ(sum_of_pools().bytes_in_use, start.bytes_in_use - 16384) << "a deferred free is free to the program";
  unsigned flags = 0;
  r = k_untouched;
  EXPECT_TRUE(try_get_flags(&flags, p, &r));
  EXPECT_EQ(r, CUDA_ERROR_INVALID_VALUE);
  r = k_untouched;
  EXPECT_TRUE(try_free(p, &r));
  EXPECT_EQ(r, CUDA_ERROR_INVALID_VALUE) << "a second free of a deferred block";
  // While the fence is held, the block is not the pool's to hand out.
  void* q = alloc(3 * 4096);
  EXPECT_NE(q, p);
  g.open();
  fence_tracker::fence().wait_for(epoch);
  // The next call drains the block back; its bytes are counted once, not twice.
  release(q);
  EXPECT_EQ(sum_of_pools().bytes_in_use, start.bytes_in_use - 16384);
  void* again = alloc(3 * 4096);
  EXPECT_EQ(sum_of_pools().bytes_in_use, start.bytes_in_use);
  release(again);
  EXPECT_EQ(sum_of_pools().bytes_in_use, start.bytes_in_use - 16384);
}

}  // namespace
}  // namespace poolshim::host_router

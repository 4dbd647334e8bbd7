// The device router (shim/route/device_router.h) on the simulated driver: what it serves from the
// current context's pool and what it leaves to the driver (foreign pointers, captures, other modes),
// reuse, small and large blocks (segments, IPC), forgotten contexts, idle bytes, the OOM path and
// POOLSHIM_FREE_SYNC. Mode and free sync are read once per process: each fixture checks the one its
// ctest entry sets. Each test has request sizes of its own (a cached block of another's is no proof).
#include "route/device_router.h"

#include <cuda.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "base/process.h"
#include "pool/size_classes.h"
#include "route/capture_state.h"
#include "route/fence_tracker.h"
#include "route_test_support.h"

namespace poolshim::device_router {
namespace {

using route_test::attribute;
using route_test::delayed_opener;
using route_test::delayed_opener_fn;
using route_test::gate;
using route_test::k_untouched;
using route_test::primary_context;

constexpr std::size_t kMiB = std::size_t{1} << 20;

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_ = primary_context();
    ASSERT_NE(ctx_, nullptr);
    ASSERT_EQ(cuCtxSetCurrent(ctx_), CUDA_SUCCESS);
  }
  static CUdeviceptr alloc(std::size_t bytes) {
    CUdeviceptr p = 0;
    CUresult r = k_untouched;
    EXPECT_TRUE(try_alloc(&p, bytes, &r)) << bytes;
    EXPECT_EQ(r, CUDA_SUCCESS) << bytes;
    return p;
  }
  static void release(CUdeviceptr p) {
    CUresult r = k_untouched;
    EXPECT_TRUE(try_free(p, &r));
    EXPECT_EQ(r, CUDA_SUCCESS);
  }
  CUcontext ctx_ = nullptr;
};

// POOLSHIM_MODE=pool (unset), POOLSHIM_FREE_SYNC=device (unset).
class DeviceRouter : public RouterTest {
 protected:
  void SetUp() override {
    RouterTest::SetUp();
    ASSERT_EQ(base::mode(), run_mode::pool);
    ASSERT_EQ(base::current_config().free_sync, free_sync_mode::device);
  }
};

TEST_F(DeviceRouter, ServesASmallRequestFromASegmentOfTheCurrentContext) {
  CUdeviceptr p = 0;
  CUresult r = k_untouched;
  int device = -1;
  ASSERT_TRUE(try_alloc(&p, 1000, &r, &device));
  ASSERT_EQ(r, CUDA_SUCCESS);
  EXPECT_EQ(device, 0);
  EXPECT_EQ(p % 512, 0u);
  EXPECT_EQ(attribute<unsigned>(CU_POINTER_ATTRIBUTE_MEMORY_TYPE, p), unsigned{CU_MEMORYTYPE_DEVICE});
  EXPECT_EQ(attribute<CUcontext>(CU_POINTER_ATTRIBUTE_CONTEXT, p), ctx_);
  // One allocation identity: the driver reports the 2 MiB segment that holds the block.
  CUdeviceptr base = 0;
  std::size_t size = 0;
  ASSERT_EQ(cuMemGetAddressRange(&base, &size, p), CUDA_SUCCESS);
  EXPECT_EQ(size, 2 * kMiB);
  EXPECT_LE(base, p);
  EXPECT_LT(p + 1000, base + size);
  CUdeviceptr segment = 0;
  std::size_t bytes = 0;
  ASSERT_TRUE(small_block(p, &segment, &bytes));
  EXPECT_EQ(segment, base);
  EXPECT_EQ(bytes, 1024u);
  release(p);
}

TEST_F(DeviceRouter, FreedSmallBlockIsReusedForTheNextRequestOfItsSize) {
  const CUdeviceptr a = alloc(3000);
  release(a);
  const totals before = sum_of_pools();
  const CUdeviceptr b = alloc(2900);  // the same 3 KiB block size
  const totals after = sum_of_pools();
  EXPECT_EQ(b, a);
  EXPECT_EQ(after.requests, before.requests + 1);
  EXPECT_EQ(after.pool_hits, before.pool_hits + 1);
  EXPECT_EQ(after.bytes_in_use, before.bytes_in_use + 3072);
  EXPECT_EQ(after.segments, before.segments);
  release(b);
}

TEST_F(DeviceRouter, FreedLargeBlockIsReusedWholeForTheNextRequestOfItsClass) {
  const std::size_t cls = pool::large_class_size(3 * kMiB + 5);
  ASSERT_EQ(cls, 3 * kMiB + 32 * 1024);  // 64 classes per power of two
  const totals start = sum_of_pools();
  const CUdeviceptr a = alloc(3 * kMiB + 5);
  // A dedicated segment of the class size, and the block is its base.
  CUdeviceptr base = 0;
  std::size_t size = 0;
  ASSERT_EQ(cuMemGetAddressRange(&base, &size, a), CUDA_SUCCESS);
  EXPECT_EQ(base, a);
  EXPECT_EQ(size, cls);
  EXPECT_EQ(sum_of_pools().bytes_reserved, start.bytes_reserved + cls);
  release(a);
  const totals before = sum_of_pools();
  const CUdeviceptr b = alloc(3 * kMiB + 20 * 1024);  // the same class
  const totals after = sum_of_pools();
  EXPECT_EQ(b, a);
  EXPECT_EQ(after.pool_hits, before.pool_hits + 1);
  EXPECT_EQ(after.segments, before.segments);
  EXPECT_EQ(after.bytes_reserved, before.bytes_reserved);
  EXPECT_EQ(after.bytes_in_use, before.bytes_in_use + cls);
  release(b);
}

TEST_F(DeviceRouter, PointerNotFromThePoolIsNotItsBusiness) {
  CUdeviceptr raw = 0;
  ASSERT_EQ(cuMemAlloc(&raw, 4096), CUDA_SUCCESS);  // the driver's own, as if the shim passed it on
  CUresult r = k_untouched;
  EXPECT_FALSE(try_free(raw, &r));
  EXPECT_FALSE(try_free(0, &r));
  EXPECT_EQ(r, k_untouched);
  EXPECT_FALSE(refuses_ipc(raw));
  CUdeviceptr segment = 0;
  std::size_t bytes = 0;
  EXPECT_FALSE(small_block(raw, &segment, &bytes));
  EXPECT_EQ(cuMemFree(raw), CUDA_SUCCESS);
}

TEST_F(DeviceRouter, InteriorPointerAndSecondFreeAreInvalidValueAndTheBlockSurvivesTheFirst) {
  const CUdeviceptr p = alloc(8192);
  CUresult r = k_untouched;
  EXPECT_TRUE(try_free(p + 512, &r));
  EXPECT_EQ(r, CUDA_ERROR_INVALID_VALUE);
  CUdeviceptr segment = 0;
  std::size_t bytes = 0;
  EXPECT_TRUE(small_block(p, &segment, &bytes)) << "an interior free released the block";
  release(p);
  r = k_untouched;
  EXPECT_TRUE(try_free(p, &r));
  EXPECT_EQ(r, CUDA_ERROR_INVALID_VALUE);
  EXPECT_FALSE(small_block(p, &segment, &bytes));
}

TEST_F(DeviceRouter, SmallBlocksRefuseIpcAndLargeBlocksKeepTheirRealHandle) {
  const CUdeviceptr small = alloc(20000);
  const CUdeviceptr limit = alloc(kMiB);  // the small limit itself is small
  const CUdeviceptr large = alloc(kMiB + 1);
  EXPECT_TRUE(refuses_ipc(small));
  EXPECT_TRUE(refuses_ipc(limit));
  EXPECT_FALSE(refuses_ipc(large));
  EXPECT_TRUE(refuses_ipc(large + 512)) << "a handle of the segment would not open at this pointer";
  CUdeviceptr segment = 0;
  std::size_t bytes = 0;
  EXPECT_TRUE(small_block(small, &segment, &bytes));
  EXPECT_EQ(bytes, 20480u);
  EXPECT_TRUE(small_block(limit, &segment, &bytes));
  EXPECT_EQ(bytes, kMiB);
  EXPECT_FALSE(small_block(large, &segment, &bytes));
  EXPECT_FALSE(small_block(small + 512, &segment, &bytes)) << "an interior pointer is no block's start";
  CUipcMemHandle h{};
  EXPECT_EQ(cuIpcGetMemHandle(&h, large), CUDA_SUCCESS) << "the large block is not a whole driver allocation";
  release(small);
  release(limit);
  release(large);
}

TEST_F(DeviceRouter, AllocationsDuringACaptureGoToTheDriver) {
  capture_state::note_capture(+1);
  CUdeviceptr p = 0;
  CUresult r = k_untouched;
  EXPECT_FALSE(try_alloc(&p, 5000, &r));
  EXPECT_FALSE(try_alloc(&p, 5 * kMiB, &r));
  EXPECT_EQ(p, 0u);
  EXPECT_EQ(r, k_untouched);
  capture_state::note_capture(-1);
  EXPECT_TRUE(try_alloc(&p, 5000, &r));
  EXPECT_EQ(r, CUDA_SUCCESS);
  release(p);
}

TEST_F(DeviceRouter, BadArgumentsAndAMissingContextAreTheDriversToAnswer) {
  CUdeviceptr p = 0;
  CUresult r = k_untouched;
  EXPECT_FALSE(try_alloc(nullptr, 4096, &r));
  EXPECT_FALSE(try_alloc(&p, 0, &r));
  ASSERT_EQ(cuCtxSetCurrent(nullptr), CUDA_SUCCESS);
  CUcontext none = ctx_;
  ASSERT_EQ(cuCtxGetCurrent(&none), CUDA_SUCCESS);
  ASSERT_EQ(none, nullptr);
  EXPECT_FALSE(try_alloc(&p, 4096, &r));
  EXPECT_EQ(p, 0u);
  EXPECT_EQ(r, k_untouched);
}

TEST_F(DeviceRouter, ForgottenContextsPoolNoLongerClaimsItsPointers) {
  CUdevice dev0 = 0;
  ASSERT_EQ(cuDeviceGet(&dev0, 0), CUDA_SUCCESS);
  CUcontext other = nullptr;
  ASSERT_EQ(cuCtxCreate(&other, nullptr, 0, dev0), CUDA_SUCCESS);  // current from here
  const CUdeviceptr p = alloc(4096);
  EXPECT_EQ(attribute<CUcontext>(CU_POINTER_ATTRIBUTE_CONTEXT, p), other);
  EXPECT_TRUE(refuses_ipc(p));
  forget_context(other);
  CUresult r = k_untouched;
  EXPECT_FALSE(try_free(p, &r));
  EXPECT_EQ(r, k_untouched);
  EXPECT_FALSE(refuses_ipc(p));
  // The context, still current, gets a new pool, not the retired one's blocks.
  const CUdeviceptr q = alloc(4096);
  EXPECT_NE(q, p);
  CUdeviceptr base_p = 0, base_q = 0;
  ASSERT_EQ(cuMemGetAddressRange(&base_p, nullptr, p), CUDA_SUCCESS);
  ASSERT_EQ(cuMemGetAddressRange(&base_q, nullptr, q), CUDA_SUCCESS);
  EXPECT_NE(base_q, base_p) << "the new pool handed out a segment of the retired one";
  release(q);
  forget_context(other);  // as the destroy hook does
  EXPECT_EQ(cuCtxDestroy(other), CUDA_SUCCESS);
}

// The destroy and reset hooks forget a context once its memory is gone: the figures the shim
// publishes (poolshim_get_counters' pool_bytes_in_use / pool_bytes_reserved / pool_segments, the
// stats file, POOLSHIM_SUMMARY) must stop counting that memory (they kept it until this test).
TEST_F(DeviceRouter, ForgottenContextsMemoryLeavesTheTotals) {
  const totals before = sum_of_pools();
  CUdevice dev0 = 0;
  ASSERT_EQ(cuDeviceGet(&dev0, 0), CUDA_SUCCESS);
  CUcontext other = nullptr;
  ASSERT_EQ(cuCtxCreate(&other, nullptr, 0, dev0), CUDA_SUCCESS);
  const CUdeviceptr p = alloc(6 * kMiB + 1);
  const std::size_t cls = pool::large_class_size(6 * kMiB + 1);
  EXPECT_EQ(sum_of_pools().bytes_reserved, before.bytes_reserved + cls);
  (void)p;
  ASSERT_EQ(cuCtxDestroy(other), CUDA_SUCCESS);  // the block's memory goes with the context
  forget_context(other);                         // what the destroy hook then does
  const totals after = sum_of_pools();
  EXPECT_EQ(after.bytes_reserved, before.bytes_reserved);
  EXPECT_EQ(after.bytes_in_use, before.bytes_in_use);
  EXPECT_EQ(after.segments, before.segments);
}

TEST_F(DeviceRouter, IdleBytesOfTheDeviceCountFreedBlocksTheCurrentContextsPoolKeeps) {
  const std::size_t cls = pool::large_class_size(5 * kMiB + 7);
  ASSERT_EQ(cls, 5 * kMiB + 64 * 1024);  // 64 classes per power of two
  // Measured after the allocation: before its new segment the pool's idle bound may return idle
  // blocks earlier tests left.
  const CUdeviceptr p = alloc(5 * kMiB + 7);
  const std::size_t before = idle_bytes_of_current_device();
  release(p);
  EXPECT_EQ(idle_bytes_of_current_device(), before + cls);
  const CUdeviceptr q = alloc(5 * kMiB + 60 * 1024);  // the same class: the cached block again
  EXPECT_EQ(q, p);
  EXPECT_EQ(idle_bytes_of_current_device(), before);
  release(q);
}

TEST_F(DeviceRouter, OutOfMemoryIsCudasErrorAndThePoolStaysUsable) {
  CUdeviceptr p = 0;
  CUresult r = k_untouched;
  ASSERT_TRUE(try_alloc(&p, 1024 * kMiB, &r)) << "the ctest entry gives the device 512 MiB";
  EXPECT_EQ(r, CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(p, 0u);
  const CUdeviceptr q = alloc(4608);
  EXPECT_NE(q, 0u);
  release(q);
}

// cudaFree "may perform implicit synchronization", and programs rely on it: in device mode a
// free of pooled memory returns only once the context's work is done.
TEST_F(DeviceRouter, FreeWaitsForTheContextsWorkAsCudaFreeDoes) {
  const CUdeviceptr p = alloc(6000);
  gate g;
  ASSERT_EQ(g.hold(nullptr), CUDA_SUCCESS);  // the legacy stream
  delayed_opener opener(g);
  CUresult r = k_untouched;
  EXPECT_TRUE(try_free(p, &r));
  EXPECT_EQ(r, CUDA_SUCCESS);
  EXPECT_TRUE(opener.opened()) << "the free returned while the context still worked";
}

// POOLSHIM_FREE_SYNC=fence: no host synchronisation; a freed block waits for the fence.
class DeviceRouterFenceMode : public RouterTest {
 protected:
  void SetUp() override {
    RouterTest::SetUp();
    ASSERT_EQ(base::mode(), run_mode::pool);
    ASSERT_EQ(base::current_config().free_sync, free_sync_mode::fence);
  }
};

TEST_F(DeviceRouterFenceMode, FreeReturnsAtOnceAndTheBlockIsReusedOnlyAfterTheFence) {
  const CUdeviceptr p = alloc(3000);
  gate g;
  ASSERT_EQ(g.hold(nullptr), CUDA_SUCCESS);  // work that may still read p
  const std::uint64_t epoch = fence_tracker::fence().epoch_for_free();
  CUresult r = k_untouched;
  EXPECT_TRUE(try_free(p, &r));
  EXPECT_EQ(r, CUDA_SUCCESS);
  EXPECT_FALSE(g.is_open()) << "the free waited for the stream (or the watchdog opened the gate)";
  const CUdeviceptr q = alloc(3000);
  EXPECT_NE(q, p) << "a block was handed out again before its fence passed";
  g.open();
  fence_tracker::fence().wait_for(epoch);
  const CUdeviceptr again = alloc(3000);
  EXPECT_EQ(again, p) << "the block did not come back once its fence passed";
  release(q);
  release(again);
}

TEST_F(DeviceRouterFenceMode, ForeignPointerIsNotItsBusinessAndInteriorOrSecondFreesAreInvalidValue) {
  CUdeviceptr raw = 0;
  ASSERT_EQ(cuMemAlloc(&raw, 4096), CUDA_SUCCESS);
  CUresult r = k_untouched;
  EXPECT_FALSE(try_free(raw, &r));
  EXPECT_EQ(r, k_untouched);
  EXPECT_EQ(cuMemFree(raw), CUDA_SUCCESS);
  const CUdeviceptr p = alloc(8192);
  EXPECT_TRUE(try_free(p + 512, &r));
  EXPECT_EQ(r, CUDA_ERROR_INVALID_VALUE);
  release(p);
  r = k_untouched;
  EXPECT_TRUE(try_free(p, &r));
  EXPECT_EQ(r, CUDA_ERROR_INVALID_VALUE);
}

// POOLSHIM_MODE=observe and POOLSHIM_MODE=off (two ctest entries run these).
class DeviceRouterNotPooling : public RouterTest {
 protected:
  void SetUp() override {
    RouterTest::SetUp();
    ASSERT_NE(base::mode(), run_mode::pool);
  }
};

TEST_F(DeviceRouterNotPooling, EveryCallIsTheDriversAndNoPoolIsMade) {
  CUdeviceptr p = 0;
  CUresult r = k_untouched;
  EXPECT_FALSE(try_alloc(&p, 4096, &r));
  EXPECT_FALSE(try_alloc(&p, 8 * kMiB, &r));
  EXPECT_EQ(p, 0u);
  CUdeviceptr raw = 0;
  ASSERT_EQ(cuMemAlloc(&raw, 4096), CUDA_SUCCESS);
  EXPECT_FALSE(try_free(raw, &r));
  EXPECT_FALSE(refuses_ipc(raw));
  CUdeviceptr segment = 0;
  std::size_t bytes = 0;
  EXPECT_FALSE(small_block(raw, &segment, &bytes));
  EXPECT_EQ(r, k_untouched);
  EXPECT_EQ(idle_bytes_of_current_device(), 0u);
  const totals t = sum_of_pools();
  EXPECT_EQ(t.requests, 0u);
  EXPECT_EQ(t.segments, 0u);
  EXPECT_EQ(cuMemFree(raw), CUDA_SUCCESS);
}

// Its own ctest entry, POOLSHIM_SIM_FAIL_ALLOC_AT=1,2,4: the process's 1st, 2nd and 4th device
// allocations fail. The OOM path retries once, then answers with the driver's error. One test, so
// that the order of the allocations is its own.
TEST(DeviceRouterUnderInjectedDriverFailures, OneFailureIsRetriedAndTwoInARowAreCudasOutOfMemory) {
  ASSERT_EQ(base::mode(), run_mode::pool);
  ASSERT_NE(primary_context(), nullptr);
  ASSERT_EQ(cuCtxSetCurrent(primary_context()), CUDA_SUCCESS);
  CUdeviceptr p = 0;
  CUresult r = k_untouched;
  ASSERT_TRUE(try_alloc(&p, 4096, &r));  // segments 1 and 2 fail
  EXPECT_EQ(r, CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(sum_of_pools().segments, 0u);
  ASSERT_TRUE(try_alloc(&p, 4096, &r));  // the 3rd succeeds
  EXPECT_EQ(r, CUDA_SUCCESS);
  EXPECT_TRUE(try_free(p, &r));
  CUdeviceptr q = 0;
  ASSERT_TRUE(try_alloc(&q, 4 * kMiB, &r));  // the 4th fails, the retry (5th) succeeds
  EXPECT_EQ(r, CUDA_SUCCESS);
  EXPECT_NE(q, 0u);
  EXPECT_TRUE(try_free(q, &r));
  EXPECT_EQ(r, CUDA_SUCCESS);
}

// Its own ctest entry, POOLSHIM_PREALLOCATE=0:2M: the pools' maintenance (trims, preallocation)
// against other threads (issue #17 review). A segment listener (heard before a segment is given
// back, after one is taken) holds the thread it is armed for until the test opens it, or a
// watchdog does after 10 s: a call that only returned because the watchdog opened did wait for the
// held thread.
class DeviceRouterMaintenance : public RouterTest {
 protected:
  static void SetUpTestSuite() { set_segment_listener(&DeviceRouterMaintenance::heard); }
  static void TearDownTestSuite() { set_segment_listener(nullptr); }
  void SetUp() override {
    RouterTest::SetUp();
    ASSERT_EQ(cuDeviceGet(&dev0_, 0), CUDA_SUCCESS);
    armed_thread_.store(std::thread::id{});
    armed_base_ = 0;
    armed_taken_ = false;
    held_ = open_ = by_watchdog_ = false;
  }
  // Holds the next event of `taken` (and of the segment at `base`, when not 0) on thread t.
  static void arm(std::thread::id t, bool taken, std::uintptr_t base = 0) {
    armed_base_ = base;
    armed_taken_ = taken;
    armed_thread_.store(t);
  }
  static bool wait_until_held() {
    for (int i = 0; i < 10000 && !held_.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return held_.load();
  }
  static void open() { open_.store(true); }
  static void heard(int, std::uintptr_t base, std::size_t, bool taken) noexcept {
    if (std::this_thread::get_id() != armed_thread_.load() || taken != armed_taken_.load() ||
        (armed_base_.load() != 0 && base != armed_base_.load()))
      return;
    armed_thread_.store(std::thread::id{});  // once
    held_.store(true);
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!open_.load()) {
      if (std::chrono::steady_clock::now() > end) {
        by_watchdog_.store(true);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  CUdevice dev0_ = 0;
  static inline std::atomic<std::thread::id> armed_thread_{};
  static inline std::atomic<std::uintptr_t> armed_base_{0};
  static inline std::atomic<bool> armed_taken_{false}, held_{false}, open_{false}, by_watchdog_{false};
};

// A context reset (cudaDeviceReset: the hook forgets the pool, then the driver frees every
// allocation of the context) racing with an idle trim: forget_context must not return while the
// trim is still giving one of the context's segments back, or that cuMemFree would come after the
// reset (and could free another allocation at the same address).
TEST_F(DeviceRouterMaintenance, ForgettingAContextWaitsForATrimGivingItsMemoryBack) {
  CUcontext other = nullptr;
  ASSERT_EQ(cuCtxCreate(&other, nullptr, 0, dev0_), CUDA_SUCCESS);  // current from here
  const CUdeviceptr p = alloc(3 * kMiB);                            // a segment of its own, cached whole once freed
  release(p);
  std::thread trimmer([&] {
    arm(std::this_thread::get_id(), /*taken=*/false, static_cast<std::uintptr_t>(p));
    (void)trim(SIZE_MAX, /*keep_preallocated=*/false);  // gives the segment back: held in the listener
  });
  if (!wait_until_held()) {
    open();
    trimmer.join();
    FAIL() << "the trim did not give the segment back";
  }
  {
    delayed_opener_fn opener(&DeviceRouterMaintenance::open);
    forget_context(other);  // what the reset hook does before the driver's reset
    EXPECT_TRUE(opener.opened()) << "forget_context returned while a trim was giving the context's segment back";
  }
  trimmer.join();
  EXPECT_FALSE(by_watchdog_.load());
  EXPECT_EQ(cuCtxDestroy(other), CUDA_SUCCESS);
}

// POOLSHIM_PREALLOCATE runs at a pool's creation: while it takes its segments (driver calls, or a
// lease from poolshimd that may wait for memory), another context's first allocation must not wait
// for it (it did: the preallocation ran under the pool-creation lock).
TEST_F(DeviceRouterMaintenance, APreallocationDoesNotHoldAnotherContextsFirstAllocation) {
  CUcontext first = nullptr, second = nullptr;
  ASSERT_EQ(cuCtxCreate(&first, nullptr, 0, dev0_), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxCreate(&second, nullptr, 0, dev0_), CUDA_SUCCESS);
  CUdeviceptr a = 0;
  std::thread preallocating([&] {
    ASSERT_EQ(cuCtxSetCurrent(first), CUDA_SUCCESS);
    arm(std::this_thread::get_id(), /*taken=*/true);  // its pool's preallocated segment: held
    a = alloc(4096);
  });
  if (!wait_until_held()) {
    open();
    preallocating.join();
    FAIL() << "no preallocation (POOLSHIM_PREALLOCATE=0:2M)";
  }
  std::thread other([&] {
    ASSERT_EQ(cuCtxSetCurrent(second), CUDA_SUCCESS);
    release(alloc(4096));
  });
  other.join();  // before the preallocation is let go: unless the watchdog let it go
  EXPECT_FALSE(by_watchdog_.load()) << "the other context's first allocation waited for the preallocation";
  open();
  preallocating.join();
  ASSERT_EQ(cuCtxSetCurrent(first), CUDA_SUCCESS);
  release(a);
  EXPECT_EQ(cuCtxDestroy(first), CUDA_SUCCESS);
  forget_context(first);
  EXPECT_EQ(cuCtxDestroy(second), CUDA_SUCCESS);
  forget_context(second);
}

// Two threads release a primary context at once (each hook pauses its maintenance): the first
// release is not the last and resumes, the second destroys the context. Trims must stay out until
// every pauser is done, or one frees the context's memory while the driver destroys it.
TEST_F(DeviceRouterMaintenance, APauseLastsUntilEveryPauserHasResumed) {
  (void)trim(SIZE_MAX, /*keep_preallocated=*/false);  // the other tests' pools: nothing idle left
  CUcontext other = nullptr;
  ASSERT_EQ(cuCtxCreate(&other, nullptr, 0, dev0_), CUDA_SUCCESS);  // current from here
  release(alloc(3 * kMiB));                                         // idle: a trim would give it back
  pause_maintenance(other);                                         // the first release's hook
  pause_maintenance(other);                                         // the second's
  resume_maintenance(other);                                        // the first was not the last
  EXPECT_EQ(trim(SIZE_MAX, /*keep_preallocated=*/false), 0U) << "a trim ran while a release was in flight";
  resume_maintenance(other);
  EXPECT_GE(trim(SIZE_MAX, /*keep_preallocated=*/false), 3 * kMiB);
  EXPECT_EQ(cuCtxDestroy(other), CUDA_SUCCESS);
  forget_context(other);
}

}  // namespace
}  // namespace poolshim::device_router

// The fence tracker (shim/route/fence_tracker.h) against the simulated driver, without preloading:
// each test holds a stream with a gate (a host function that waits for a flag), starts a fence and
// checks that the fence passes exactly when the gated work is done — for a non-blocking stream the
// hooks reported, a blocking stream and the per-thread default stream they did not (the legacy
// record covers them), a stream destroyed with work pending, and a capture in progress (the fence
// is deferred). Run with POOLSHIM_FREE_SYNC=fence (the ctest sets it).
#include "route/fence_tracker.h"

#include <cuda.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "route/capture_state.h"
#include "route/device_router.h"

namespace poolshim::fence_tracker {
namespace {

struct gate {
  std::atomic<bool> open{false};
  static void CUDA_CB wait(void* self) {
    auto* g = static_cast<gate*>(self);
    while (!g->open.load(std::memory_order_acquire)) std::this_thread::yield();
  }
};

class FenceTracker : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
    CUdevice dev = 0;
    ASSERT_EQ(cuDeviceGet(&dev, 0), CUDA_SUCCESS);
    ASSERT_EQ(cuDevicePrimaryCtxRetain(&ctx_, dev), CUDA_SUCCESS);
    note_context(ctx_);  // what the retain hook reports under the shim
  }
  void SetUp() override { ASSERT_EQ(cuCtxSetCurrent(ctx_), CUDA_SUCCESS); }

  static pool::fence& f() { return fence(); }
  static std::uint64_t completed() { return f().completed_epoch()->load(std::memory_order_acquire); }
  // A full batch of frees: starts a fence now; returns the epoch the frees were stamped with.
  static std::uint64_t free_a_batch() {
    const std::uint64_t epoch = f().epoch_for_free();
    note_free(std::size_t{64} << 20);
    return epoch;
  }
  // Gives the fence every chance to pass without the gated work: polls for a while.
  static bool passes_within(std::uint64_t epoch, std::chrono::milliseconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    do {
      f().poll(epoch);
      if (completed() >= epoch) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    } while (std::chrono::steady_clock::now() < end);
    return false;
  }
  // The gate on `stream` holds the fence; once it opens and the stream drains, the fence passes.
  static void expect_held_then_passed(CUstream stream, gate& g, CUstream sync_with) {
    const std::uint64_t epoch = free_a_batch();
    EXPECT_FALSE(passes_within(epoch, std::chrono::milliseconds(30))) << "the fence passed gated work";
    g.open.store(true, std::memory_order_release);
    if (sync_with != nullptr) {
      EXPECT_EQ(cuStreamSynchronize(sync_with), CUDA_SUCCESS);
    } else {
      EXPECT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);
    }
    EXPECT_TRUE(passes_within(epoch, std::chrono::seconds(5))) << "the fence did not pass after the work";
    (void)stream;
  }

  static inline CUcontext ctx_ = nullptr;
};

TEST_F(FenceTracker, PassesAtOnceWhenEveryStreamIsIdle) {
  const std::uint64_t issued = get_stats().fences_issued;
  const std::uint64_t epoch = free_a_batch();
  EXPECT_EQ(get_stats().fences_issued, issued + 1);
  EXPECT_GE(f().epoch_for_free(), epoch + 1) << "frees after a fence is started belong to the next one";
  EXPECT_TRUE(passes_within(epoch, std::chrono::seconds(5)));
}

TEST_F(FenceTracker, FewerFreesThanABatchStartNoFence) {
  const std::uint64_t issued = get_stats().fences_issued;
  for (int i = 0; i < 10; ++i) note_free(512);
  EXPECT_EQ(get_stats().fences_issued, issued);
}

TEST_F(FenceTracker, NonBlockingStreamReportedByTheHooksHoldsTheFence) {
  CUstream s = nullptr;
  ASSERT_EQ(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING), CUDA_SUCCESS);
  note_stream_created(s, CU_STREAM_NON_BLOCKING);
  EXPECT_GE(get_stats().streams_tracked, 1u);
  gate g;
  ASSERT_EQ(cuLaunchHostFunc(s, &gate::wait, &g), CUDA_SUCCESS);
  expect_held_then_passed(s, g, s);
  note_stream_destroying(s);
  EXPECT_EQ(cuStreamDestroy(s), CUDA_SUCCESS);
}

TEST_F(FenceTracker, BlockingStreamIsCoveredByTheLegacyRecordWithoutBeingTracked) {
  CUstream s = nullptr;
  ASSERT_EQ(cuStreamCreate(&s, CU_STREAM_DEFAULT), CUDA_SUCCESS);  // not reported to the tracker
  gate g;
  ASSERT_EQ(cuLaunchHostFunc(s, &gate::wait, &g), CUDA_SUCCESS);
  expect_held_then_passed(s, g, s);
  EXPECT_EQ(cuStreamDestroy(s), CUDA_SUCCESS);
}

TEST_F(FenceTracker, PerThreadDefaultStreamIsCoveredByTheLegacyRecord) {
  gate g;
  ASSERT_EQ(cuLaunchHostFunc(CU_STREAM_PER_THREAD, &gate::wait, &g), CUDA_SUCCESS);
  expect_held_then_passed(CU_STREAM_PER_THREAD, g, CU_STREAM_PER_THREAD);
}

TEST_F(FenceTracker, StreamDestroyedWithWorkPendingStaysCovered) {
  CUstream s = nullptr;
  ASSERT_EQ(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING), CUDA_SUCCESS);
  note_stream_created(s, CU_STREAM_NON_BLOCKING);
  gate g;
  ASSERT_EQ(cuLaunchHostFunc(s, &gate::wait, &g), CUDA_SUCCESS);
  note_stream_destroying(s);
  ASSERT_EQ(cuStreamDestroy(s), CUDA_SUCCESS);  // the gated work still runs
  expect_held_then_passed(nullptr, g, nullptr);
}

TEST_F(FenceTracker, DeferredWhileACaptureIsActiveThenStartedOnAMiss) {
  capture_state::note_capture(+1);
  const std::uint64_t deferred = get_stats().fences_deferred;
  const std::uint64_t epoch = free_a_batch();
  EXPECT_EQ(get_stats().fences_deferred, deferred + 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(1));  // past the time slice
  EXPECT_FALSE(passes_within(epoch, std::chrono::milliseconds(5))) << "a fence was recorded during a capture";
  capture_state::note_capture(-1);
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(passes_within(epoch, std::chrono::seconds(5))) << "a miss after the capture did not start the fence";
}

TEST_F(FenceTracker, WaitForBlocksUntilTheGatedWorkIsDone) {
  CUstream s = nullptr;
  ASSERT_EQ(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING), CUDA_SUCCESS);
  note_stream_created(s, CU_STREAM_NON_BLOCKING);
  gate g;
  ASSERT_EQ(cuLaunchHostFunc(s, &gate::wait, &g), CUDA_SUCCESS);
  const std::uint64_t epoch = f().epoch_for_free();  // no batch: wait_for starts the fence itself
  const std::uint64_t waits = get_stats().fence_waits;
  std::thread opener([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    g.open.store(true, std::memory_order_release);
  });
  f().wait_for(epoch);
  EXPECT_TRUE(g.open.load()) << "wait_for returned before the gated work ran";
  EXPECT_GE(completed(), epoch);
  EXPECT_EQ(get_stats().fence_waits, waits + 1);
  opener.join();
  note_stream_destroying(s);
  EXPECT_EQ(cuStreamDestroy(s), CUDA_SUCCESS);
}

}  // namespace
}  // namespace poolshim::fence_tracker

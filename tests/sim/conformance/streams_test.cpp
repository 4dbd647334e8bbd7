// Streams and events: real asynchrony, in-order execution, the legacy stream's barriers against
// blocking streams (and none against non-blocking ones), per-thread default streams, events and
// cross-stream waits, cudaDeviceSynchronize. Every ordering claim is proved with a gate (a host
// function that holds a stream until the test opens it), never with timing alone.
//
// Only one gate is closed at any time: real CUDA may run the host functions of all streams on one
// driver thread, so two closed gates could wait on each other.
#include <future>
#include <thread>

#include "conformance.h"

namespace conformance {
namespace {

using namespace std::chrono_literals;
constexpr std::size_t n = std::size_t{64} << 10;

TEST(Streams, WorkIsAsynchronousUntilTheHostFunctionReturns) {
  auto s = make_stream();
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(s.get()));
  EXPECT_TRUE(g.wait_entered());
  EXPECT_EQ(cudaErrorNotReady, cudaStreamQuery(s.get()));
  EXPECT_TRUE(stays_not_ready(s.get(), 50ms));
  g.open();
  EXPECT_EQ(cudaSuccess, cudaStreamSynchronize(s.get()));
  EXPECT_EQ(cudaSuccess, cudaStreamQuery(s.get()));
  EXPECT_FALSE(g.timed_out());
}

TEST(Streams, OperationsOnOneStreamRunInOrder) {
  auto s = make_stream(cudaStreamNonBlocking);
  auto d = device_alloc(n);
  auto src = pinned_alloc(n), out1 = pinned_alloc(n), out2 = pinned_alloc(n);
  std::memset(src.get(), 0xa1, n);
  std::memset(out1.get(), 0, n);
  std::memset(out2.get(), 0, n);
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(s.get()));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(d.get(), src.get(), n, cudaMemcpyHostToDevice, s.get()));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(out1.get(), d.get(), n, cudaMemcpyDeviceToHost, s.get()));
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(d.get(), 0xb2, n, s.get()));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(out2.get(), d.get(), n, cudaMemcpyDeviceToHost, s.get()));
  std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(all_bytes_are(out1.get(), 0, n)) << "ran before the gate opened";
  // A copy from pinned memory reads its source when it runs, not when it is enqueued.
  std::memset(src.get(), 0xa3, n);
  g.open();
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(s.get()));
  EXPECT_TRUE(all_bytes_are(out1.get(), 0xa3, n));
  EXPECT_TRUE(all_bytes_are(out2.get(), 0xb2, n));
}

TEST(Streams, LegacyStreamWaitsForBlockingStreams) {
  auto blocking = make_stream(cudaStreamDefault);
  auto d = device_alloc(n);
  fill_device(d.get(), 0x01, n);
  auto src = pinned_alloc(n), out = pinned_alloc(n);
  std::memset(src.get(), 0x5e, n);
  std::memset(out.get(), 0, n);
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(blocking.get()));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(d.get(), src.get(), n, cudaMemcpyHostToDevice, blocking.get()));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(out.get(), d.get(), n, cudaMemcpyDeviceToHost, cudaStreamLegacy));
  EXPECT_TRUE(stays_not_ready(cudaStreamLegacy));
  g.open();
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(cudaStreamLegacy));
  // The legacy copy ran after the blocking stream's write.
  EXPECT_TRUE(all_bytes_are(out.get(), 0x5e, n));
}

TEST(Streams, BlockingStreamsWaitForTheLegacyStream) {
  auto blocking = make_stream(cudaStreamDefault);
  auto d = device_alloc(n);
  fill_device(d.get(), 0x01, n);
  auto src = pinned_alloc(n), out = pinned_alloc(n);
  std::memset(src.get(), 0x6f, n);
  std::memset(out.get(), 0, n);
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(cudaStreamLegacy));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(d.get(), src.get(), n, cudaMemcpyHostToDevice, cudaStreamLegacy));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(out.get(), d.get(), n, cudaMemcpyDeviceToHost, blocking.get()));
  EXPECT_TRUE(stays_not_ready(blocking.get()));
  g.open();
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(blocking.get()));
  EXPECT_TRUE(all_bytes_are(out.get(), 0x6f, n));
}

TEST(Streams, NonBlockingStreamDoesNotWaitForTheLegacyStream) {
  auto nonblocking = make_stream(cudaStreamNonBlocking);
  auto d = device_alloc(n);
  fill_device(d.get(), 0x01, n);
  auto src = pinned_alloc(n), out = pinned_alloc(n);
  std::memset(src.get(), 0x7a, n);
  std::memset(out.get(), 0, n);
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(cudaStreamLegacy));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(d.get(), src.get(), n, cudaMemcpyHostToDevice, cudaStreamLegacy));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(out.get(), d.get(), n, cudaMemcpyDeviceToHost, nonblocking.get()));
  EXPECT_EQ(cudaSuccess, wait_idle(nonblocking.get())) << "non-blocking stream waited for legacy";
  EXPECT_FALSE(g.finished());
  EXPECT_TRUE(all_bytes_are(out.get(), 0x01, n));  // read before the legacy stream's write
  g.open();
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(cudaStreamLegacy));
}

TEST(Streams, LegacyStreamDoesNotWaitForNonBlockingStreams) {
  auto nonblocking = make_stream(cudaStreamNonBlocking);
  auto d = device_alloc(n);
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(nonblocking.get()));
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(d.get(), 0x33, n, cudaStreamLegacy));
  EXPECT_EQ(cudaSuccess, wait_idle(cudaStreamLegacy)) << "legacy stream waited for non-blocking";
  EXPECT_FALSE(g.finished());
  EXPECT_TRUE(device_bytes_are(d.get(), 0x33, n));  // synchronous copy on legacy: still not held
  EXPECT_EQ(cudaErrorNotReady, cudaStreamQuery(nonblocking.get()));
  g.open();
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(nonblocking.get()));
}

TEST(Streams, BlockingStreamsDoNotWaitForEachOther) {
  // Two blocking streams are ordered only through the legacy stream, not against each other.
  auto a = make_stream(cudaStreamDefault), b = make_stream(cudaStreamDefault);
  auto d = device_alloc(n);
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(a.get()));
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(d.get(), 0x44, n, b.get()));
  EXPECT_EQ(cudaSuccess, wait_idle(b.get()));
  EXPECT_FALSE(g.finished());
  g.open();
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(a.get()));
}

TEST(Streams, PerThreadDefaultStreamsOfTwoThreadsAreIndependent) {
  auto d = device_alloc(n);
  gate g;
  std::promise<void> held;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  cudaError_t held_query = cudaSuccess, held_after = cudaErrorUnknown;
  std::jthread holder([&] {
    cudaSetDevice(0);
    if (g.block(cudaStreamPerThread) != cudaSuccess) {
      held.set_value();
      return;
    }
    held.set_value();
    released.wait();
    held_query = cudaStreamQuery(cudaStreamPerThread);  // still held by this thread's gate
    g.open();
    held_after = cudaStreamSynchronize(cudaStreamPerThread);
  });
  held.get_future().wait();
  cudaError_t worker_sync = cudaErrorUnknown;
  std::jthread worker([&] {
    cudaSetDevice(0);
    if (cudaMemsetAsync(d.get(), 0x55, n, cudaStreamPerThread) != cudaSuccess) return;
    worker_sync = wait_idle(cudaStreamPerThread);
  });
  worker.join();
  EXPECT_EQ(cudaSuccess, worker_sync) << "one thread's per-thread stream waited for another's";
  EXPECT_FALSE(g.finished());
  release.set_value();
  holder.join();
  EXPECT_EQ(cudaErrorNotReady, held_query);
  EXPECT_EQ(cudaSuccess, held_after);
  EXPECT_TRUE(device_bytes_are(d.get(), 0x55, n));
}

TEST(Streams, PerThreadDefaultStreamWaitsForTheLegacyStream) {
  auto d = device_alloc(n);
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(cudaStreamLegacy));
  std::promise<void> queried;
  std::promise<void> release;
  cudaError_t held_query = cudaSuccess, after = cudaErrorUnknown;
  // The thread stays alive until its per-thread stream has drained.
  std::jthread t([&, released = release.get_future()]() mutable {
    cudaSetDevice(0);
    if (cudaMemsetAsync(d.get(), 0x12, n, cudaStreamPerThread) == cudaSuccess) {
      std::this_thread::sleep_for(30ms);
      held_query = cudaStreamQuery(cudaStreamPerThread);
    }
    queried.set_value();
    released.wait();
    after = cudaStreamSynchronize(cudaStreamPerThread);
  });
  queried.get_future().wait();
  EXPECT_EQ(cudaErrorNotReady, held_query);
  g.open();
  release.set_value();
  t.join();
  EXPECT_EQ(cudaSuccess, after);
  EXPECT_TRUE(device_bytes_are(d.get(), 0x12, n));
}

TEST(Streams, DeviceSynchronizeWaitsForEveryStream) {
  auto nonblocking = make_stream(cudaStreamNonBlocking);
  auto d = device_alloc(n);
  auto out = pinned_alloc(n);
  std::memset(out.get(), 0, n);
  fill_device(d.get(), 0x21, n);
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(nonblocking.get()));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(out.get(), d.get(), n, cudaMemcpyDeviceToHost, nonblocking.get()));
  ASSERT_TRUE(g.wait_entered());
  std::jthread opener([&] {
    std::this_thread::sleep_for(100ms);
    g.open();
  });
  ASSERT_EQ(cudaSuccess, cudaDeviceSynchronize());
  EXPECT_TRUE(g.finished());
  EXPECT_TRUE(all_bytes_are(out.get(), 0x21, n)) << "cudaDeviceSynchronize returned early";
}

TEST(Streams, StreamSynchronizeWaitsOnlyForItsStream) {
  auto a = make_stream(cudaStreamNonBlocking), b = make_stream(cudaStreamNonBlocking);
  auto d = device_alloc(n);
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(a.get()));
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(d.get(), 1, n, b.get()));
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(b.get()));
  EXPECT_EQ(cudaErrorNotReady, cudaStreamQuery(a.get()));
  g.open();
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(a.get()));
}

TEST(Streams, DestroyingAStreamWithPendingWorkLetsTheWorkFinish) {
  auto d = device_alloc(n);
  fill_device(d.get(), 0x2e, n);
  auto out = pinned_alloc(n);
  std::memset(out.get(), 0, n);
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaSuccess, cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(s));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(out.get(), d.get(), n, cudaMemcpyDeviceToHost, s));
  // "the function will return immediately and the resources associated with stream will be
  // released automatically once the device has completed all work in stream".
  EXPECT_EQ(cudaSuccess, cudaStreamDestroy(s));
  EXPECT_FALSE(g.finished());
  g.open();
  ASSERT_EQ(cudaSuccess, cudaDeviceSynchronize());
  EXPECT_TRUE(g.finished());
  EXPECT_TRUE(all_bytes_are(out.get(), 0x2e, n)) << "the destroyed stream's work was dropped";
  if (::testing::Test::HasFailure()) {
    // The work may still be pending: keep its buffers alive rather than free them under it.
    (void)out.release();
    (void)d.release();
  }
}

// ---- events ---------------------------------------------------------------------------------------

TEST(Events, QueryIsNotReadyUntilTheRecordedWorkCompletes) {
  auto s = make_stream(cudaStreamNonBlocking);
  auto e = make_event();
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(s.get()));
  ASSERT_EQ(cudaSuccess, cudaEventRecord(e.get(), s.get()));
  EXPECT_EQ(cudaErrorNotReady, cudaEventQuery(e.get()));
  g.open();
  EXPECT_EQ(cudaSuccess, cudaEventSynchronize(e.get()));
  EXPECT_EQ(cudaSuccess, cudaEventQuery(e.get()));
}

TEST(Events, NeverRecordedEventIsComplete) {
  auto e = make_event();
  EXPECT_EQ(cudaSuccess, cudaEventQuery(e.get()));
  EXPECT_EQ(cudaSuccess, cudaEventSynchronize(e.get()));
  // Waiting on it adds no dependency.
  auto s = make_stream(cudaStreamNonBlocking);
  ASSERT_EQ(cudaSuccess, cudaStreamWaitEvent(s.get(), e.get(), 0));
  EXPECT_EQ(cudaSuccess, wait_idle(s.get()));
}

TEST(Events, ElapsedTimeCoversTheWorkBetweenTwoRecords) {
  auto s = make_stream(cudaStreamNonBlocking);
  auto start = make_event(), stop = make_event();
  ASSERT_EQ(cudaSuccess, cudaEventRecord(start.get(), s.get()));
  ASSERT_EQ(cudaSuccess, cudaLaunchHostFunc(
                             s.get(), [](void*) { std::this_thread::sleep_for(30ms); }, nullptr));
  ASSERT_EQ(cudaSuccess, cudaEventRecord(stop.get(), s.get()));
  ASSERT_EQ(cudaSuccess, cudaEventSynchronize(stop.get()));
  float ms = -1;
  ASSERT_EQ(cudaSuccess, cudaEventElapsedTime(&ms, start.get(), stop.get()));
  EXPECT_GE(ms, 20.0f);
  EXPECT_LT(ms, 5000.0f);
}

TEST(Events, ElapsedTimeWithAnUnrecordedEventIsInvalidResourceHandle) {
  auto recorded = make_event(), never = make_event();
  ASSERT_EQ(cudaSuccess, cudaEventRecord(recorded.get(), cudaStreamLegacy));
  ASSERT_EQ(cudaSuccess, cudaEventSynchronize(recorded.get()));
  clear_last_error();
  float ms = 0;
  EXPECT_EQ(cudaErrorInvalidResourceHandle, cudaEventElapsedTime(&ms, recorded.get(), never.get()));
  EXPECT_EQ(cudaErrorInvalidResourceHandle, cudaEventElapsedTime(&ms, never.get(), recorded.get()));
  clear_last_error();
}

TEST(Events, ElapsedTimeWithATimingDisabledEventIsInvalidResourceHandle) {
  auto timed = make_event(), untimed = make_event(cudaEventDisableTiming);
  ASSERT_EQ(cudaSuccess, cudaEventRecord(timed.get(), cudaStreamLegacy));
  ASSERT_EQ(cudaSuccess, cudaEventRecord(untimed.get(), cudaStreamLegacy));
  ASSERT_EQ(cudaSuccess, cudaEventSynchronize(untimed.get()));
  ASSERT_EQ(cudaSuccess, cudaEventSynchronize(timed.get()));
  clear_last_error();
  float ms = 0;
  EXPECT_EQ(cudaErrorInvalidResourceHandle, cudaEventElapsedTime(&ms, timed.get(), untimed.get()));
  clear_last_error();
}

TEST(Events, ElapsedTimeOfAPendingEventIsNotReady) {
  auto s = make_stream(cudaStreamNonBlocking);
  auto start = make_event(), stop = make_event();
  ASSERT_EQ(cudaSuccess, cudaEventRecord(start.get(), s.get()));
  ASSERT_EQ(cudaSuccess, cudaEventSynchronize(start.get()));
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(s.get()));
  ASSERT_EQ(cudaSuccess, cudaEventRecord(stop.get(), s.get()));
  float ms = 0;
  EXPECT_EQ(cudaErrorNotReady, cudaEventElapsedTime(&ms, start.get(), stop.get()));
  g.open();
  ASSERT_EQ(cudaSuccess, cudaEventSynchronize(stop.get()));
  EXPECT_EQ(cudaSuccess, cudaEventElapsedTime(&ms, start.get(), stop.get()));
  clear_last_error();
}

TEST(Events, StreamWaitEventOrdersWorkAcrossStreams) {
  auto producer = make_stream(cudaStreamNonBlocking), consumer = make_stream(cudaStreamNonBlocking);
  auto d = device_alloc(n);
  fill_device(d.get(), 0x01, n);
  auto src = pinned_alloc(n), out = pinned_alloc(n);
  std::memset(src.get(), 0x9c, n);
  std::memset(out.get(), 0, n);
  auto e = make_event(cudaEventDisableTiming);
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(producer.get()));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(d.get(), src.get(), n, cudaMemcpyHostToDevice, producer.get()));
  ASSERT_EQ(cudaSuccess, cudaEventRecord(e.get(), producer.get()));
  ASSERT_EQ(cudaSuccess, cudaStreamWaitEvent(consumer.get(), e.get(), 0));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(out.get(), d.get(), n, cudaMemcpyDeviceToHost, consumer.get()));
  EXPECT_TRUE(stays_not_ready(consumer.get()));
  g.open();
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(consumer.get()));
  EXPECT_TRUE(all_bytes_are(out.get(), 0x9c, n));
}

TEST(Events, WaitUsesTheRecordAtTheTimeOfTheCall) {
  // cudaStreamWaitEvent waits for the most recent record before the call; a later re-record of
  // the event does not hold the waiting stream (cuda_runtime_api.h, cudaEventRecord).
  auto a = make_stream(cudaStreamNonBlocking), b = make_stream(cudaStreamNonBlocking);
  auto e = make_event(cudaEventDisableTiming);
  auto d = device_alloc(n);
  ASSERT_EQ(cudaSuccess, cudaEventRecord(e.get(), a.get()));
  ASSERT_EQ(cudaSuccess, cudaEventSynchronize(e.get()));
  ASSERT_EQ(cudaSuccess, cudaStreamWaitEvent(b.get(), e.get(), 0));
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(a.get()));
  ASSERT_EQ(cudaSuccess, cudaEventRecord(e.get(), a.get()));  // re-record: now pending
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(d.get(), 0x31, n, b.get()));
  EXPECT_EQ(cudaSuccess, wait_idle(b.get()));
  EXPECT_EQ(cudaErrorNotReady, cudaEventQuery(e.get()));
  g.open();
  ASSERT_EQ(cudaSuccess, cudaEventSynchronize(e.get()));
}

}  // namespace
}  // namespace conformance

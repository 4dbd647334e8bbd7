// Stream capture: captured work is recorded, not run, until the graph is launched; the legacy
// stream may not be used while a blocking stream captures; unsafe calls (cudaMalloc) are refused
// during a Global capture unless the thread switches itself to Relaxed mode.
#include "conformance.h"

namespace conformance {
namespace capture_test {  // named, not anonymous: a unity build puts several test files in one unit

constexpr std::size_t n = std::size_t{64} << 10;

struct graph_destroy {
  void operator()(cudaGraph_t g) const noexcept { cudaGraphDestroy(g); }
};
struct graph_exec_destroy {
  void operator()(cudaGraphExec_t g) const noexcept { cudaGraphExecDestroy(g); }
};
using graph_ptr = std::unique_ptr<CUgraph_st, graph_destroy>;
using graph_exec_ptr = std::unique_ptr<CUgraphExec_st, graph_exec_destroy>;

cudaStreamCaptureStatus capture_status(cudaStream_t s) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  EXPECT_EQ(cudaSuccess, cudaStreamIsCapturing(s, &st));
  return st;
}

TEST(Capture, CapturedWorkRunsOnlyWhenTheGraphIsLaunched) {
  auto s = make_stream(cudaStreamNonBlocking);
  auto d = device_alloc(n);
  fill_device(d.get(), 0x00, n);
  auto out = pinned_alloc(n);
  std::memset(out.get(), 0, n);

  EXPECT_EQ(cudaStreamCaptureStatusNone, capture_status(s.get()));
  ASSERT_EQ(cudaSuccess, cudaStreamBeginCapture(s.get(), cudaStreamCaptureModeGlobal));
  EXPECT_EQ(cudaStreamCaptureStatusActive, capture_status(s.get()));
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(d.get(), 0x7f, n, s.get()));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(out.get(), d.get(), n, cudaMemcpyDeviceToHost, s.get()));
  cudaGraph_t raw = nullptr;
  ASSERT_EQ(cudaSuccess, cudaStreamEndCapture(s.get(), &raw));
  graph_ptr graph(raw);
  ASSERT_NE(nullptr, graph.get());
  EXPECT_EQ(cudaStreamCaptureStatusNone, capture_status(s.get()));

  // Nothing ran: neither the memset nor the copy.
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(s.get()));
  EXPECT_TRUE(device_bytes_are(d.get(), 0x00, n));
  EXPECT_TRUE(all_bytes_are(out.get(), 0x00, n));

  cudaGraphExec_t raw_exec = nullptr;
  ASSERT_EQ(cudaSuccess, cudaGraphInstantiate(&raw_exec, graph.get(), 0));
  graph_exec_ptr exec(raw_exec);
  ASSERT_EQ(cudaSuccess, cudaGraphLaunch(exec.get(), s.get()));
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(s.get()));
  EXPECT_TRUE(device_bytes_are(d.get(), 0x7f, n));
  EXPECT_TRUE(all_bytes_are(out.get(), 0x7f, n));

  // A graph replays: reset the bytes and launch again.
  fill_device(d.get(), 0x00, n);
  std::memset(out.get(), 0, n);
  ASSERT_EQ(cudaSuccess, cudaGraphLaunch(exec.get(), s.get()));
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(s.get()));
  EXPECT_TRUE(all_bytes_are(out.get(), 0x7f, n));
}

TEST(Capture, CaptureOnTheLegacyStreamIsRefused) {
  clear_last_error();
  // "Capture may not be initiated if stream is cudaStreamLegacy"; the header lists InvalidValue
  // but real drivers are reported to answer 900 (StreamCaptureUnsupported): any error conforms,
  // a GPU run shows which.
  EXPECT_NE(cudaSuccess, cudaStreamBeginCapture(cudaStreamLegacy, cudaStreamCaptureModeGlobal));
  clear_last_error();
  EXPECT_EQ(cudaStreamCaptureStatusNone, capture_status(cudaStreamLegacy));
  auto d = device_alloc(n);
  fill_device(d.get(), 0x18, n);  // the legacy stream is still usable
  EXPECT_TRUE(device_bytes_are(d.get(), 0x18, n));
}

TEST(Capture, LegacyStreamUseDuringABlockingCaptureFailsAndInvalidatesIt) {
  auto blocking = make_stream(cudaStreamDefault);
  auto d = device_alloc(n);
  fill_device(d.get(), 0x00, n);
  clear_last_error();
  ASSERT_EQ(cudaSuccess, cudaStreamBeginCapture(blocking.get(), cudaStreamCaptureModeGlobal));
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(d.get(), 0x01, n, blocking.get()));
  // The legacy stream would depend on the capturing blocking stream: 906 (driver_types.h).
  EXPECT_EQ(cudaErrorStreamCaptureImplicit, cudaMemset(d.get(), 0x02, n));
  EXPECT_EQ(cudaStreamCaptureStatusInvalidated, capture_status(blocking.get()));
  cudaGraph_t raw = reinterpret_cast<cudaGraph_t>(0x1);
  // The capture was invalidated by the illegal use (reported behaviour; a GPU run verifies).
  EXPECT_EQ(cudaErrorStreamCaptureInvalidated, cudaStreamEndCapture(blocking.get(), &raw));
  EXPECT_EQ(nullptr, raw);  // "If capture was invalidated ... a NULL graph will be returned"
  if (raw != nullptr && raw != reinterpret_cast<cudaGraph_t>(0x1)) cudaGraphDestroy(raw);
  clear_last_error();
  // After the capture ended, both streams work again and nothing captured ever ran.
  EXPECT_EQ(cudaStreamCaptureStatusNone, capture_status(blocking.get()));
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(blocking.get()));
  EXPECT_TRUE(device_bytes_are(d.get(), 0x00, n));
  fill_device(d.get(), 0x03, n);
  EXPECT_TRUE(device_bytes_are(d.get(), 0x03, n));
}

TEST(Capture, IsCapturingOnTheLegacyStreamDuringABlockingCaptureIsImplicitWithoutInvalidating) {
  auto blocking = make_stream(cudaStreamDefault);
  auto d = device_alloc(n);
  clear_last_error();
  ASSERT_EQ(cudaSuccess, cudaStreamBeginCapture(blocking.get(), cudaStreamCaptureModeGlobal));
  cudaStreamCaptureStatus st{};
  // cudaStreamIsCapturing: "will return cudaErrorStreamCaptureImplicit ... The blocking stream
  // capture is not invalidated."
  EXPECT_EQ(cudaErrorStreamCaptureImplicit, cudaStreamIsCapturing(cudaStreamLegacy, &st));
  clear_last_error();
  EXPECT_EQ(cudaStreamCaptureStatusActive, capture_status(blocking.get()));
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(d.get(), 0x01, n, blocking.get()));
  cudaGraph_t raw = nullptr;
  EXPECT_EQ(cudaSuccess, cudaStreamEndCapture(blocking.get(), &raw));
  graph_ptr graph(raw);
  EXPECT_NE(nullptr, graph.get());
}

TEST(Capture, NonBlockingCaptureLeavesTheLegacyStreamUsable) {
  auto nonblocking = make_stream(cudaStreamNonBlocking);
  auto d = device_alloc(n), e = device_alloc(n);
  ASSERT_EQ(cudaSuccess, cudaStreamBeginCapture(nonblocking.get(), cudaStreamCaptureModeGlobal));
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(d.get(), 0x01, n, nonblocking.get()));
  EXPECT_EQ(cudaSuccess, cudaMemsetAsync(e.get(), 0x02, n, cudaStreamLegacy));
  cudaGraph_t raw = nullptr;
  EXPECT_EQ(cudaSuccess, cudaStreamEndCapture(nonblocking.get(), &raw));
  graph_ptr graph(raw);
  EXPECT_NE(nullptr, graph.get());
  EXPECT_TRUE(device_bytes_are(e.get(), 0x02, n));
}

TEST(Capture, MallocDuringAGlobalCaptureIsUnsupportedAndInvalidatesIt) {
  auto s = make_stream(cudaStreamNonBlocking);
  auto d = device_alloc(n);
  clear_last_error();
  ASSERT_EQ(cudaSuccess, cudaStreamBeginCapture(s.get(), cudaStreamCaptureModeGlobal));
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(d.get(), 0x01, n, s.get()));
  void* p = nullptr;
  // "potentially unsafe API calls" are prohibited: 900 (CUDA_FACTS §4; the invalidation is the
  // reported behaviour, UNV, that a GPU run verifies).
  EXPECT_EQ(cudaErrorStreamCaptureUnsupported, cudaMalloc(&p, 4096));
  EXPECT_EQ(nullptr, p);
  EXPECT_EQ(cudaStreamCaptureStatusInvalidated, capture_status(s.get()));
  cudaGraph_t raw = nullptr;
  EXPECT_EQ(cudaErrorStreamCaptureInvalidated, cudaStreamEndCapture(s.get(), &raw));
  EXPECT_EQ(nullptr, raw);
  if (raw != nullptr) cudaGraphDestroy(raw);
  if (p != nullptr) cudaFree(p);
  clear_last_error();
  // Outside the capture the same call works.
  auto q = device_alloc(4096);
  EXPECT_NE(nullptr, q.get());
}

// cudaMallocHost is as unsafe during a Global capture as cudaMalloc (a caching pool must not
// answer it from its cache either: the call has to fail and end the capture as it would without).
// The exact code is the documented one for unsafe calls; a GPU run verifies it (UNV).
TEST(Capture, MallocHostDuringAGlobalCaptureIsUnsupportedAndInvalidatesIt) {
  auto s = make_stream(cudaStreamNonBlocking);
  auto d = device_alloc(n);
  // Warm any cache first, so a pool would have a block to hand out.
  void* warm = nullptr;
  ASSERT_EQ(cudaSuccess, cudaMallocHost(&warm, 4096));
  ASSERT_EQ(cudaSuccess, cudaFreeHost(warm));
  clear_last_error();
  ASSERT_EQ(cudaSuccess, cudaStreamBeginCapture(s.get(), cudaStreamCaptureModeGlobal));
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(d.get(), 0x01, n, s.get()));
  void* p = nullptr;
  EXPECT_EQ(cudaErrorStreamCaptureUnsupported, cudaMallocHost(&p, 4096));
  EXPECT_EQ(cudaStreamCaptureStatusInvalidated, capture_status(s.get()));
  cudaGraph_t raw = nullptr;
  EXPECT_EQ(cudaErrorStreamCaptureInvalidated, cudaStreamEndCapture(s.get(), &raw));
  if (raw != nullptr) cudaGraphDestroy(raw);
  if (p != nullptr) cudaFreeHost(p);
  clear_last_error();
}

TEST(Capture, MallocIsAllowedWhenTheThreadIsRelaxed) {
  auto s = make_stream(cudaStreamNonBlocking);
  auto d = device_alloc(n);
  ASSERT_EQ(cudaSuccess, cudaStreamBeginCapture(s.get(), cudaStreamCaptureModeGlobal));
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(d.get(), 0x01, n, s.get()));
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  ASSERT_EQ(cudaSuccess, cudaThreadExchangeStreamCaptureMode(&mode));
  EXPECT_EQ(cudaStreamCaptureModeGlobal, mode);  // the previous mode of this thread
  void* p = nullptr;
  EXPECT_EQ(cudaSuccess, cudaMalloc(&p, 4096));
  EXPECT_NE(nullptr, p);
  ASSERT_EQ(cudaSuccess, cudaThreadExchangeStreamCaptureMode(&mode));  // back to Global
  EXPECT_EQ(cudaStreamCaptureModeRelaxed, mode);
  EXPECT_EQ(cudaStreamCaptureStatusActive, capture_status(s.get()));
  cudaGraph_t raw = nullptr;
  EXPECT_EQ(cudaSuccess, cudaStreamEndCapture(s.get(), &raw));
  graph_ptr graph(raw);
  EXPECT_NE(nullptr, graph.get());
  EXPECT_EQ(cudaSuccess, cudaFree(p));
}

TEST(Capture, CapturedMemsetDoesNotRunWhenTheGraphIsDestroyedUnlaunched) {
  auto s = make_stream(cudaStreamNonBlocking);
  auto d = device_alloc(n);
  fill_device(d.get(), 0x00, n);
  ASSERT_EQ(cudaSuccess, cudaStreamBeginCapture(s.get(), cudaStreamCaptureModeThreadLocal));
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(d.get(), 0x4d, n, s.get()));
  cudaGraph_t raw = nullptr;
  ASSERT_EQ(cudaSuccess, cudaStreamEndCapture(s.get(), &raw));
  ASSERT_EQ(cudaSuccess, cudaGraphDestroy(raw));
  ASSERT_EQ(cudaSuccess, cudaDeviceSynchronize());
  EXPECT_TRUE(device_bytes_are(d.get(), 0x00, n));
}

}  // namespace capture_test
}  // namespace conformance

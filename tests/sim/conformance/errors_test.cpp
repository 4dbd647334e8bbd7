// Error and lifetime semantics: the per-thread last error; and, each in a process of its own, a
// sticky error (a faulting stream operation poisons every later call, and cudaGetLastError cannot
// clear it), allocation fault injection, and cudaDeviceReset. Sticky errors and fault injection
// are driven by simulator settings, so those parents are simulator-only; every parent runs its
// child test in a fresh process (with the setting in its environment), keeping this one healthy.
#include <thread>

#include "child_process.h"
#include "conformance.h"

namespace conformance {
namespace {

constexpr const char* child_env = "POOLSHIM_CONF_ERRORS_CHILD";

TEST(LastError, IsKeptPerThread) {
  clear_last_error();
  cudaError_t in_other = cudaSuccess, seen_by_other = cudaErrorUnknown;
  std::thread([&] { in_other = cudaMalloc(nullptr, 16); }).join();
  EXPECT_EQ(cudaErrorInvalidValue, in_other);
  EXPECT_EQ(cudaSuccess, cudaGetLastError()) << "another thread's error leaked into this one";
  EXPECT_EQ(cudaErrorInvalidValue, cudaMalloc(nullptr, 16));
  std::thread([&] { seen_by_other = cudaGetLastError(); }).join();
  EXPECT_EQ(cudaSuccess, seen_by_other) << "this thread's error leaked into another one";
  EXPECT_EQ(cudaErrorInvalidValue, cudaGetLastError());
}

// ---- sticky error -------------------------------------------------------------------------------

TEST(StickyError, AFaultingStreamOperationPoisonsEveryLaterCall) {
  POOLSHIM_SKIP_UNLESS_SIMULATOR("faults are injected with POOLSHIM_SIM_FAULT_AT_OP");
  const std::string child = "StickyErrorChild.AfterTheFaultEveryCallReturnsIllegalAddress";
  auto r = run_child_test(child, {"POOLSHIM_SIM_FAULT_AT_OP=2", std::string(child_env) + "=1"});
  EXPECT_TRUE(r.passed(child)) << "exit " << r.exit_code << " signal " << r.term_signal << "\n" << r.output;
}

TEST(StickyErrorChild, AfterTheFaultEveryCallReturnsIllegalAddress) {
  if (parent_env(child_env) == nullptr) GTEST_SKIP() << "runs as the child of StickyError";
  auto s = make_stream(cudaStreamNonBlocking);
  void* d = nullptr;
  ASSERT_EQ(cudaSuccess, cudaMalloc(&d, 4096));
  // Stream operation 1 runs normally.
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(d, 1, 4096, s.get()));
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(s.get()));
  // Stream operation 2 faults when it executes; the enqueue itself may or may not report it.
  cudaError_t enqueued = cudaMemsetAsync(d, 2, 4096, s.get());
  EXPECT_TRUE(enqueued == cudaSuccess || enqueued == cudaErrorIllegalAddress) << enqueued;
  EXPECT_EQ(cudaErrorIllegalAddress, cudaStreamSynchronize(s.get()));
  // From now on every call returns the same error (driver_types.h: "any further CUDA work will
  // return the same error").
  void* q = nullptr;
  EXPECT_EQ(cudaErrorIllegalAddress, cudaMalloc(&q, 4096));
  EXPECT_EQ(cudaErrorIllegalAddress, cudaDeviceSynchronize());
  char host[16] = {};
  EXPECT_EQ(cudaErrorIllegalAddress, cudaMemcpy(host, d, sizeof host, cudaMemcpyDeviceToHost));
  EXPECT_EQ(cudaErrorIllegalAddress, cudaGetLastError());
  // Reading the last error did not clear the condition.
  EXPECT_EQ(cudaErrorIllegalAddress, cudaMalloc(&q, 4096));
  EXPECT_EQ(cudaErrorIllegalAddress, cudaStreamQuery(s.get()));
  EXPECT_EQ(cudaErrorIllegalAddress, cudaFree(d));
  EXPECT_EQ(cudaErrorIllegalAddress, cudaGetLastError());
  (void)s.release();  // destroying it would only return the same error
}

// ---- allocation fault injection -----------------------------------------------------------------

TEST(FaultInjection, TheNthAllocationFailsWithOutOfMemoryAndLaterOnesSucceed) {
  POOLSHIM_SKIP_UNLESS_SIMULATOR("allocation failures are injected with POOLSHIM_SIM_FAIL_ALLOC_AT");
  const std::string child = "FaultInjectionChild.SecondAndFourthAllocationsFail";
  auto r = run_child_test(child, {"POOLSHIM_SIM_FAIL_ALLOC_AT=2,4", std::string(child_env) + "=1"});
  EXPECT_TRUE(r.passed(child)) << "exit " << r.exit_code << " signal " << r.term_signal << "\n" << r.output;
}

TEST(FaultInjectionChild, SecondAndFourthAllocationsFail) {
  if (parent_env(child_env) == nullptr) GTEST_SKIP() << "runs as the child of FaultInjection";
  clear_last_error();
  void* p[5] = {};
  EXPECT_EQ(cudaSuccess, cudaMalloc(&p[0], 4096));
  EXPECT_EQ(cudaErrorMemoryAllocation, cudaMalloc(&p[1], 4096));
  EXPECT_EQ(cudaErrorMemoryAllocation, cudaGetLastError());
  EXPECT_EQ(cudaSuccess, cudaGetLastError());
  EXPECT_EQ(cudaSuccess, cudaMalloc(&p[2], 4096));
  // Allocations of every kind count: the 4th is a stream-ordered one.
  auto s = make_stream(cudaStreamNonBlocking);
  EXPECT_EQ(cudaErrorMemoryAllocation, cudaMallocAsync(&p[3], 4096, s.get()));
  clear_last_error();
  EXPECT_EQ(cudaSuccess, cudaMalloc(&p[4], 4096));
  // The injected failure is not sticky: memory works.
  fill_device(p[4], 0x44, 4096);
  EXPECT_TRUE(device_bytes_are(p[4], 0x44, 4096));
  for (void* q : p) {
    if (q != nullptr) {
      EXPECT_EQ(cudaSuccess, cudaFree(q));
    }
  }
}

// ---- memory limit ------------------------------------------------------------------------------

TEST(MemoryLimit, ConfiguredDeviceMemoryIsTheTotalAndIsEnforced) {
  POOLSHIM_SKIP_UNLESS_SIMULATOR("device memory is sized with POOLSHIM_SIM_DEVICE_MEMORY");
  const std::string child = "MemoryLimitChild.SixtyFourMebibytesHoldOneFortyEightMebibyteBlock";
  auto r = run_child_test(child, {"POOLSHIM_SIM_DEVICE_MEMORY=64M", std::string(child_env) + "=1"});
  EXPECT_TRUE(r.passed(child)) << "exit " << r.exit_code << " signal " << r.term_signal << "\n" << r.output;
}

TEST(MemoryLimitChild, SixtyFourMebibytesHoldOneFortyEightMebibyteBlock) {
  if (parent_env(child_env) == nullptr) GTEST_SKIP() << "runs as the child of MemoryLimit";
  constexpr std::size_t MiB = std::size_t{1} << 20;
  std::size_t free_bytes = 0, total = 0;
  ASSERT_EQ(cudaSuccess, cudaMemGetInfo(&free_bytes, &total));
  EXPECT_EQ(64 * MiB, total);
  cudaDeviceProp prop{};
  ASSERT_EQ(cudaSuccess, cudaGetDeviceProperties(&prop, 0));
  EXPECT_EQ(64 * MiB, prop.totalGlobalMem);
  void* a = nullptr;
  void* b = nullptr;
  ASSERT_EQ(cudaSuccess, cudaMalloc(&a, 48 * MiB));
  clear_last_error();
  EXPECT_EQ(cudaErrorMemoryAllocation, cudaMalloc(&b, 48 * MiB));
  clear_last_error();
  ASSERT_EQ(cudaSuccess, cudaFree(a));
  EXPECT_EQ(cudaSuccess, cudaMalloc(&b, 48 * MiB)) << "freed memory did not come back";
  if (b != nullptr) {
    EXPECT_EQ(cudaSuccess, cudaFree(b));
  }
}

// POOLSHIM_SIM_NODE_FILE: processes naming one file share one device, as processes of a GPU do.
// A holds 48 of 64 MiB and starts B, which sees 16 MiB free and cannot take 48 MiB more; once A
// has exited (without freeing), its bytes leave the node and a third process gets them.
TEST(MemoryLimit, NodeFileSharesOneDeviceBetweenProcesses) {
  POOLSHIM_SKIP_UNLESS_SIMULATOR("node-wide accounting is POOLSHIM_SIM_NODE_FILE's");
  char tmpl[] = "/tmp/poolshim-sim-node-XXXXXX";
  const int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  close(fd);
  const std::vector<std::string> env = {"POOLSHIM_SIM_DEVICE_MEMORY=64M", std::string("POOLSHIM_SIM_NODE_FILE=") + tmpl,
                                        std::string(child_env) + "=1"};
  const std::string holder = "MemoryLimitChild.NodeHolderStartsAnotherProcess";
  auto r = run_child_test(holder, env);
  EXPECT_TRUE(r.passed(holder)) << "exit " << r.exit_code << " signal " << r.term_signal << "\n" << r.output;
  const std::string last = "MemoryLimitChild.NodeSecondProcess";
  std::vector<std::string> e = env;
  e.push_back("POOLSHIM_CONF_NODE_ROLE=last");
  r = run_child_test(last, e);
  EXPECT_TRUE(r.passed(last)) << "exit " << r.exit_code << " signal " << r.term_signal << "\n" << r.output;
  unlink(tmpl);
}

TEST(MemoryLimitChild, NodeHolderStartsAnotherProcess) {
  if (parent_env(child_env) == nullptr) GTEST_SKIP() << "runs as the child of MemoryLimit";
  constexpr std::size_t MiB = std::size_t{1} << 20;
  void* a = nullptr;
  ASSERT_EQ(cudaSuccess, cudaMalloc(&a, 48 * MiB));
  const std::string child = "MemoryLimitChild.NodeSecondProcess";
  auto r = run_child_test(child, {"POOLSHIM_CONF_NODE_ROLE=beside-holder"});
  EXPECT_TRUE(r.passed(child)) << r.output;
  // Exits holding the 48 MiB: the next process finds them back on the node.
}

TEST(MemoryLimitChild, NodeSecondProcess) {
  if (parent_env(child_env) == nullptr) GTEST_SKIP() << "runs as the child of MemoryLimit";
  constexpr std::size_t MiB = std::size_t{1} << 20;
  const std::string role =
      parent_env("POOLSHIM_CONF_NODE_ROLE") != nullptr ? parent_env("POOLSHIM_CONF_NODE_ROLE") : "";
  const bool beside = role == "beside-holder";
  std::size_t free_bytes = 0, total = 0;
  ASSERT_EQ(cudaSuccess, cudaMemGetInfo(&free_bytes, &total));
  EXPECT_EQ(64 * MiB, total);
  EXPECT_EQ(beside ? 16 * MiB : 64 * MiB, free_bytes) << role;
  void* b = nullptr;
  if (beside) {
    EXPECT_EQ(cudaErrorMemoryAllocation, cudaMalloc(&b, 48 * MiB)) << "the other process holds 48 of 64 MiB";
    clear_last_error();
  }
  ASSERT_EQ(cudaSuccess, cudaMalloc(&b, (beside ? 8 : 48) * MiB)) << role;
  EXPECT_EQ(cudaSuccess, cudaFree(b));
}

// ---- device reset ----------------------------------------------------------------------------------

TEST(DeviceReset, FreesAllocationsAndTheNextCallReinitialises) {
  const std::string child = "DeviceResetChild.ResetReleasesMemoryAndCudaKeepsWorking";
  auto r = run_child_test(child, {std::string(child_env) + "=1"});
  EXPECT_TRUE(r.passed(child)) << "exit " << r.exit_code << " signal " << r.term_signal << "\n" << r.output;
}

TEST(DeviceResetChild, ResetReleasesMemoryAndCudaKeepsWorking) {
  if (parent_env(child_env) == nullptr) GTEST_SKIP() << "runs as the child of DeviceReset";
  constexpr std::size_t big = std::size_t{256} << 20, slack = std::size_t{64} << 20;
  init_device0();
  void* p = nullptr;
  ASSERT_EQ(cudaSuccess, cudaMalloc(&p, big));
  std::size_t free1 = 0, free2 = 0, total = 0;
  ASSERT_EQ(cudaSuccess, cudaMemGetInfo(&free1, &total));
  // "immediately frees all cudaMalloc ... memory of the device"; "the next call reinitialises".
  ASSERT_EQ(cudaSuccess, cudaDeviceReset());
  ASSERT_EQ(cudaSuccess, cudaMemGetInfo(&free2, &total));
  EXPECT_GE(free2, free1 + (big - slack)) << "the allocation outlived the reset";
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) == cudaSuccess) {
    EXPECT_NE(cudaMemoryTypeDevice, a.type) << "a freed allocation is still described as device memory";
  }
  clear_last_error();
  auto q = device_alloc(4096);
  ASSERT_NE(nullptr, q.get());
  fill_device(q.get(), 0x18, 4096);
  EXPECT_TRUE(device_bytes_are(q.get(), 0x18, 4096));
}

}  // namespace
}  // namespace conformance

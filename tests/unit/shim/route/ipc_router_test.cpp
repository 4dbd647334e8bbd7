// The IPC router (shim/route/ipc_router.h) on the simulated driver with no daemon (the ctest names
// a socket that does not exist): a small pooled block gets no poolshim handle (the hook then
// refuses it, device_router::refuses_ipc), large blocks and foreign memory are not its business,
// a poolshim handle cannot be opened (CUDA's invalid-value error, never wrong bytes), and real
// handles and pointers it did not open are left to the driver.
#include "route/ipc_router.h"

#include <cuda.h>
#include <gtest/gtest.h>

#include <cstring>

#include "base/process.h"
#include "route/device_router.h"
#include "route_test_support.h"

namespace poolshim::ipc_router {
namespace {

using route_test::k_untouched;
using route_test::primary_context;

constexpr std::size_t kMiB = std::size_t{1} << 20;

// The first bytes of a poolshim handle (ipc_router.cpp's k_magic); a 16-byte token follows.
constexpr unsigned char k_magic[8] = {'P', 'S', 'H', 'M', 'I', 'P', 'C', 1};

CUipcMemHandle poolshim_handle() {
  CUipcMemHandle h{};
  std::memcpy(h.reserved, k_magic, sizeof k_magic);
  for (int i = 0; i < 16; ++i) h.reserved[sizeof k_magic + i] = static_cast<char>(0x40 + i);
  return h;
}

class IpcRouter : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(primary_context(), nullptr);
    ASSERT_EQ(cuCtxSetCurrent(primary_context()), CUDA_SUCCESS);
    ASSERT_EQ(base::mode(), run_mode::pool);
  }
  static CUdeviceptr pooled(std::size_t bytes) {
    CUdeviceptr p = 0;
    CUresult r = k_untouched;
    EXPECT_TRUE(device_router::try_alloc(&p, bytes, &r));
    EXPECT_EQ(r, CUDA_SUCCESS);
    return p;
  }
  static void release(CUdeviceptr p) {
    CUresult r = k_untouched;
    EXPECT_TRUE(device_router::try_free(p, &r));
    EXPECT_EQ(r, CUDA_SUCCESS);
  }
  static bool untouched(const CUipcMemHandle& h) {
    for (char c : h.reserved)
      if (c != 0x5a) return false;
    return true;
  }
};

TEST_F(IpcRouter, WithoutADaemonASmallBlockGetsNoPoolshimHandleAndIsRefused) {
  const CUdeviceptr p = pooled(4096);
  CUipcMemHandle h;
  std::memset(&h, 0x5a, sizeof h);
  CUresult r = k_untouched;
  EXPECT_FALSE(try_export(&h, p, &r));
  EXPECT_EQ(r, k_untouched);
  EXPECT_TRUE(untouched(h)) << "a handle was written although none was made";
  EXPECT_TRUE(device_router::refuses_ipc(p)) << "the hook would hand out the whole segment's handle";
  release(p);
}

TEST_F(IpcRouter, LargeBlocksInteriorPointersAndForeignMemoryAreNotItsBusiness) {
  const CUdeviceptr large = pooled(2 * kMiB + 1);
  const CUdeviceptr small = pooled(8192);
  CUdeviceptr raw = 0;
  ASSERT_EQ(cuMemAlloc(&raw, 4096), CUDA_SUCCESS);
  CUipcMemHandle h;
  std::memset(&h, 0x5a, sizeof h);
  CUresult r = k_untouched;
  EXPECT_FALSE(try_export(&h, large, &r));
  EXPECT_FALSE(try_export(&h, small + 512, &r));
  EXPECT_FALSE(try_export(&h, raw, &r));
  EXPECT_FALSE(try_export(nullptr, small, &r));
  EXPECT_EQ(r, k_untouched);
  EXPECT_TRUE(untouched(h));
  EXPECT_EQ(cuMemFree(raw), CUDA_SUCCESS);
  release(small);
  release(large);
}

TEST_F(IpcRouter, PoolshimHandleWithoutADaemonOpensToInvalidValueNeverToMemory) {
  const CUipcMemHandle h = poolshim_handle();
  CUdeviceptr d = 0x1234;
  CUresult r = k_untouched;
  EXPECT_TRUE(try_open(&d, h, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS, &r));
  EXPECT_EQ(r, CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(d, 0x1234u);
  r = k_untouched;
  EXPECT_TRUE(try_open(nullptr, h, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS, &r));
  EXPECT_EQ(r, CUDA_ERROR_INVALID_VALUE);
}

TEST_F(IpcRouter, RealAndUnknownHandlesAreTheDriversToOpen) {
  CUdeviceptr raw = 0;
  ASSERT_EQ(cuMemAlloc(&raw, 2 * kMiB), CUDA_SUCCESS);
  CUipcMemHandle real{};
  ASSERT_EQ(cuIpcGetMemHandle(&real, raw), CUDA_SUCCESS);
  CUipcMemHandle zero{};
  CUipcMemHandle other_version = poolshim_handle();
  other_version.reserved[7] = 2;
  CUdeviceptr d = 0;
  CUresult r = k_untouched;
  EXPECT_FALSE(try_open(&d, real, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS, &r));
  EXPECT_FALSE(try_open(&d, zero, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS, &r));
  EXPECT_FALSE(try_open(&d, other_version, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS, &r));
  EXPECT_EQ(r, k_untouched);
  EXPECT_EQ(d, 0u);
  EXPECT_EQ(cuMemFree(raw), CUDA_SUCCESS);
}

TEST_F(IpcRouter, CloseOfAPointerItDidNotOpenIsTheDriversToAnswer) {
  const CUdeviceptr p = pooled(4096);
  CUresult r = k_untouched;
  EXPECT_FALSE(try_close(p, &r));
  EXPECT_FALSE(try_close(0, &r));
  EXPECT_EQ(r, k_untouched);
  forget_export(p);  // nothing was exported: the block stays as it is
  EXPECT_TRUE(device_router::refuses_ipc(p));
  release(p);
}

}  // namespace
}  // namespace poolshim::ipc_router

// Start-up and kernels: this binary contains an nvcc-compiled kernel, so it registered a fat binary
// before main(). Kernels cannot run on the simulator; a launch must fail the way a GPU without a
// matching image fails (209), without poisoning the context.
#include "conformance.h"
#include "trivial_kernel.h"

namespace conformance {
namespace {

TEST(Startup, KernelLaunchIsNoKernelImageForDeviceOnTheSimulator) {
  POOLSHIM_SKIP_UNLESS_SIMULATOR("on a GPU the sm_90 kernel runs; the test is about the simulator");
  init_device0();
  clear_last_error();
  EXPECT_EQ(cudaErrorNoKernelImageForDevice, launch_trivial_kernel_with_api(nullptr));
  EXPECT_EQ(cudaErrorNoKernelImageForDevice, cudaGetLastError());
  EXPECT_EQ(cudaSuccess, cudaGetLastError());
  EXPECT_EQ(cudaErrorNoKernelImageForDevice, launch_trivial_kernel_with_chevrons(nullptr));
  EXPECT_EQ(cudaSuccess, cudaGetLastError());
  // Not a sticky error: the context keeps working.
  EXPECT_EQ(cudaSuccess, cudaDeviceSynchronize());
  auto d = device_alloc(4096);
  fill_device(d.get(), 0x09, 4096);
  EXPECT_TRUE(device_bytes_are(d.get(), 0x09, 4096));
}

// The GPU counterpart: the same binary's kernel runs where there is an sm_90 device.
TEST(Startup, KernelRunsOnAnSm90Gpu) {
  if (on_simulator()) GTEST_SKIP() << "GPU-only: kernels cannot run on the simulator";
  cudaDeviceProp prop{};
  ASSERT_EQ(cudaSuccess, cudaGetDeviceProperties(&prop, 0));
  if (prop.major != 9 || prop.minor != 0) GTEST_SKIP() << "the kernel is built for sm_90 only";
  init_device0();
  auto d = device_alloc(sizeof(int));
  fill_device(d.get(), 0, sizeof(int));
  ASSERT_EQ(cudaSuccess, launch_trivial_kernel_with_chevrons(static_cast<int*>(d.get())));
  ASSERT_EQ(cudaSuccess, cudaDeviceSynchronize());
  int v = 0;
  ASSERT_EQ(cudaSuccess, cudaMemcpy(&v, d.get(), sizeof v, cudaMemcpyDeviceToHost));
  EXPECT_EQ(42, v);
}

}  // namespace
}  // namespace conformance

// The suite's one nvcc-compiled translation unit: its fat binary makes the program register with
// __cudaRegisterFatBinary/__cudaRegisterFunction at start-up (the binary starting at all proves
// the simulator's start-up path), and its kernel gives the launch tests something to launch.
#include "trivial_kernel.h"

namespace conformance {

__global__ void trivial_kernel(int* out) {
  if (out != nullptr) *out = 42;
}

cudaError_t launch_trivial_kernel_with_chevrons(int* out) {
  trivial_kernel<<<1, 1>>>(out);
  return cudaGetLastError();
}

cudaError_t launch_trivial_kernel_with_api(int* out) {
  void* args[] = {&out};
  return cudaLaunchKernel(reinterpret_cast<const void*>(&trivial_kernel), dim3(1), dim3(1), args, 0, nullptr);
}

}  // namespace conformance

// Launchers of the trivial kernel defined in trivial_kernel.cu (compiled by nvcc), callable from
// the host-compiled tests. The kernel stores 42 through its argument when the pointer is not null.
#pragma once

#include <cuda_runtime_api.h>

namespace conformance {

// Launches with <<<1, 1>>> and returns cudaGetLastError() right after the launch.
cudaError_t launch_trivial_kernel_with_chevrons(int* out);
// Launches through cudaLaunchKernel and returns its result.
cudaError_t launch_trivial_kernel_with_api(int* out);

}  // namespace conformance

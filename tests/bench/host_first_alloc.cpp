// First pinned allocation in a fresh process: cudaHostAlloc of N MiB (default 256), timed after the
// runtime is initialised. Without the shim this is the driver's cost; under the shim in pool mode
// it is a slab's creation (memfd, parallel pre-touch, one cuMemHostRegister_v2) plus the pool.
// Run once per process (hyperfine or a loop): usage host_first_alloc [MiB] [flags]
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  const std::size_t mib = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 256;
  const unsigned flags = argc > 2 ? static_cast<unsigned>(std::strtoul(argv[2], nullptr, 0)) : 0;
  if (cudaFree(nullptr) != cudaSuccess) return 1;  // context created outside the timing
  void* h = nullptr;
  const auto t0 = std::chrono::steady_clock::now();
  const cudaError_t e = cudaHostAlloc(&h, mib << 20, flags);
  const auto t1 = std::chrono::steady_clock::now();
  if (e != cudaSuccess) return 2;
  static_cast<volatile char*>(h)[0] = 1;
  cudaFreeHost(h);
  // The same request again: a pool hit under the shim, the driver's full cost without it.
  const auto t2 = std::chrono::steady_clock::now();
  if (cudaHostAlloc(&h, mib << 20, flags) != cudaSuccess) return 3;
  const auto t3 = std::chrono::steady_clock::now();
  std::printf("first %.3f ms second %.3f ms\n", std::chrono::duration<double, std::milli>(t1 - t0).count(),
              std::chrono::duration<double, std::milli>(t3 - t2).count());
  cudaFreeHost(h);
  return 0;
}

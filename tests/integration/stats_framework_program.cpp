// Allocates through stand-ins for caching frameworks under the shim (stats_framework_test.sh):
//   torchlike_empty                 8 MiB through c10::cuda::CUDACachingAllocator::Native (PyTorch)
//   xla_like_allocate              16 MiB through a stripped xla_extension.so (XLA, by module)
//   torchlike_empty_async_backend   2 MiB through PyTorch's CudaMallocAsync backend (no label)
//   torchlike_empty_uncached        4 MiB through PyTorch's uncached path (no label)
//   plain_site                      1 MiB from the program itself (no label), freed
// and a 64 KiB pinned block, so that every part of the JSON report appears.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdio>

extern "C" void* torchlike_empty(std::size_t bytes);
extern "C" void* torchlike_empty_async_backend(std::size_t bytes);
extern "C" void* torchlike_empty_uncached(std::size_t bytes);
extern "C" void* xla_like_allocate(std::size_t bytes);

namespace {

[[gnu::noinline]] void* plain_site() {
  void* p = nullptr;
  cudaMalloc(&p, 1 << 20);
  return p;
}

[[gnu::noinline]] void* pinned_site() {
  void* p = nullptr;
  cudaHostAlloc(&p, 64 << 10, cudaHostAllocDefault);
  return p;
}

}  // namespace

int main() {
  if (torchlike_empty(8 << 20) == nullptr) return 2;
  if (xla_like_allocate(16 << 20) == nullptr) return 2;
  if (torchlike_empty_async_backend(2 << 20) == nullptr) return 2;
  if (torchlike_empty_uncached(4 << 20) == nullptr) return 2;
  void* plain = plain_site();
  if (plain == nullptr || pinned_site() == nullptr) return 2;
  cudaFree(plain);
  std::printf("done\n");
  return 0;
}

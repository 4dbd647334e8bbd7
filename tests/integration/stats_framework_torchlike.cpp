// A stand-in for PyTorch's libc10_cuda.so in the framework-label test (stats_framework_test.sh):
// its allocation function lives where PyTorch's caching allocator does
// (c10::cuda::CUDACachingAllocator::Native::DeviceCachingAllocator), so poolshim-stats must label
// the site "PyTorch CUDACachingAllocator". The same namespace's CudaMallocAsync backend allocates
// per tensor (no cache): its site must not be labelled.
#include <cuda_runtime.h>

#include <cstddef>

namespace c10::cuda::CUDACachingAllocator {
namespace Native {

class DeviceCachingAllocator {
 public:
  [[gnu::noinline]] void* malloc_block(std::size_t bytes);
};

void* DeviceCachingAllocator::malloc_block(std::size_t bytes) {
  void* p = nullptr;
  return cudaMalloc(&p, bytes) == cudaSuccess ? p : nullptr;
}

}  // namespace Native

namespace CudaMallocAsync {

[[gnu::noinline]] void* mallocAsync(std::size_t bytes) {
  void* p = nullptr;
  return cudaMalloc(&p, bytes) == cudaSuccess ? p : nullptr;
}

}  // namespace CudaMallocAsync
}  // namespace c10::cuda::CUDACachingAllocator

extern "C" void* torchlike_empty(std::size_t bytes) {
  static c10::cuda::CUDACachingAllocator::Native::DeviceCachingAllocator allocator;
  void* p = allocator.malloc_block(bytes);
  asm volatile("" ::: "memory");  // keep this frame (no tail call)
  return p;
}

extern "C" void* torchlike_empty_async_backend(std::size_t bytes) {
  void* p = c10::cuda::CUDACachingAllocator::CudaMallocAsync::mallocAsync(bytes);
  asm volatile("" ::: "memory");
  return p;
}

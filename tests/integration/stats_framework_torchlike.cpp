// A stand-in for PyTorch's libc10_cuda.so in the framework-label test (stats_framework_test.sh):
// its allocation function lives where PyTorch's caching allocator does
// (c10::cuda::CUDACachingAllocator::Native::DeviceCachingAllocator), so poolshim-stats must label
// the site "PyTorch CUDACachingAllocator". Two paths of the same namespace allocate per tensor (no
// cache) and must not be labelled: the CudaMallocAsync backend, and NativeCachingAllocator::allocate
// calling cudaMalloc itself, as PyTorch does under PYTORCH_NO_CUDA_MEMORY_CACHING=1 (its cached path
// passes through the same function, on its way to DeviceCachingAllocator).
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

class NativeCachingAllocator {
 public:
  [[gnu::noinline]] void* allocate(std::size_t bytes, bool uncached);

 private:
  DeviceCachingAllocator device_;
};

void* NativeCachingAllocator::allocate(std::size_t bytes, bool uncached) {
  if (uncached) {
    void* p = nullptr;
    return cudaMalloc(&p, bytes) == cudaSuccess ? p : nullptr;
  }
  void* p = device_.malloc_block(bytes);
  asm volatile("" ::: "memory");  // keep this frame (no tail call)
  return p;
}

}  // namespace Native

namespace CudaMallocAsync {

[[gnu::noinline]] void* mallocAsync(std::size_t bytes) {
  void* p = nullptr;
  return cudaMalloc(&p, bytes) == cudaSuccess ? p : nullptr;
}

}  // namespace CudaMallocAsync
}  // namespace c10::cuda::CUDACachingAllocator

namespace {
c10::cuda::CUDACachingAllocator::Native::NativeCachingAllocator g_allocator;
}

extern "C" void* torchlike_empty(std::size_t bytes) {
  void* p = g_allocator.allocate(bytes, false);
  asm volatile("" ::: "memory");  // keep this frame (no tail call)
  return p;
}

extern "C" void* torchlike_empty_uncached(std::size_t bytes) {
  void* p = g_allocator.allocate(bytes, true);
  asm volatile("" ::: "memory");
  return p;
}

extern "C" void* torchlike_empty_async_backend(std::size_t bytes) {
  void* p = c10::cuda::CUDACachingAllocator::CudaMallocAsync::mallocAsync(bytes);
  asm volatile("" ::: "memory");
  return p;
}

// A stand-in for jaxlib's xla_extension.so in the framework-label test (stats_framework_test.sh):
// built as "xla_extension.so", stripped, with hidden visibility, as Python wheels ship it, so the
// frame of its internal allocator has no function name and poolshim-stats can only go by the
// module's file name: the site must be labelled "XLA BFCAllocator".
#include <cuda_runtime.h>

#include <cstddef>

namespace {

[[gnu::noinline]] void* grow_region(std::size_t bytes) {
  void* p = nullptr;
  const cudaError_t rc = cudaMalloc(&p, bytes);
  asm volatile("" ::: "memory");
  return rc == cudaSuccess ? p : nullptr;
}

}  // namespace

extern "C" [[gnu::visibility("default")]] void* xla_like_allocate(std::size_t bytes) {
  void* p = grow_region(bytes);
  asm volatile("" ::: "memory");
  return p;
}

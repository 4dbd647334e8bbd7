// A library whose static constructor allocates through CUDA and whose destructor frees: its
// constructor runs before the shim's own (the program needs it, the shim is only preloaded), so
// the shim must work before its constructor ran.
#include <cuda_runtime.h>

#include <cstdio>

namespace {

void* g_kept_pinned = nullptr;

struct allocates_at_load {
  allocates_at_load() {
    void* p = nullptr;
    cudaError_t a = cudaMalloc(&p, 1 << 20);
    cudaError_t m = cudaMemset(p, 0, 1 << 20);
    cudaError_t f = cudaFree(p);
    cudaError_t h = cudaHostAlloc(&g_kept_pinned, 1 << 16, cudaHostAllocDefault);
    std::printf("library constructor: cudaMalloc %d cudaMemset %d cudaFree %d cudaHostAlloc %d\n", a, m, f, h);
  }
  ~allocates_at_load() {
    cudaError_t e = cudaFreeHost(g_kept_pinned);
    std::printf("library destructor: cudaFreeHost %d\n", e);
    std::fflush(stdout);
  }
} g_allocates_at_load;

}  // namespace

extern "C" __attribute__((visibility("default"))) int poolshim_test_static_lib_loaded() { return 1; }

// Loaded by stats_dlopen_program: its constructor allocates through CUDA while the loader's lock is
// held (inside dlopen), and its destructor frees.
#include <cuda_runtime.h>

namespace {
void* g_block = nullptr;
struct allocates_in_dlopen {
  allocates_in_dlopen() { (void)cudaMalloc(&g_block, 1 << 16); }
  ~allocates_in_dlopen() { (void)cudaFree(g_block); }
} g_allocates;
}  // namespace

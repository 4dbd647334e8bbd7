// Pinned host memory only (no device allocations): three 64 KiB cudaHostAlloc blocks from one
// call site, each written and read back, one freed. For stats_full_tmpfs_test.sh's ulimit -f cases:
// a program under a file size limit must not be killed by SIGXFSZ because the shim made a file
// (a pinned slab's memfd, the stats file) larger than the limit. Prints "pinned ok" on success.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstring>

int main() {
  void* blocks[3] = {};
  for (void*& b : blocks) {
    if (cudaHostAlloc(&b, 64 << 10, cudaHostAllocDefault) != cudaSuccess) {
      std::printf("cudaHostAlloc failed\n");
      return 1;
    }
    std::memset(b, 0x5a, 64 << 10);
    if (static_cast<unsigned char*>(b)[(64 << 10) - 1] != 0x5a) return 1;
  }
  if (cudaFreeHost(blocks[0]) != cudaSuccess) return 1;
  std::printf("pinned ok\n");
  return 0;
}

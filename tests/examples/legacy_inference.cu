// An example "legacy" CUDA program, the kind poolshim is for: it was written against the CUDA
// runtime API with no allocator of its own, so every request/response buffer is a cudaMalloc and a
// cudaFree, and staging buffers are cudaHostAlloc/cudaFreeHost. It runs unchanged on a GPU and on
// the simulator (no kernels: the "model" is a chain of copies and memsets), and prints a checksum
// that must be the same with and without the shim.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define CHECK(call)                                                                                              \
  do {                                                                                                           \
    cudaError_t err_ = (call);                                                                                   \
    if (err_ != cudaSuccess) {                                                                                   \
      std::fprintf(stderr, "legacy_inference: %s failed: %s (%d) at line %d\n", #call, cudaGetErrorString(err_), \
                   static_cast<int>(err_), __LINE__);                                                            \
      std::exit(1);                                                                                              \
    }                                                                                                            \
  } while (0)

namespace {

// Sizes a small inference service allocates per request: activations (small), attention scratch
// (medium), one large KV-cache block.
const std::size_t k_sizes[] = {4 << 10, 96 << 10, 512 << 10, 3 << 20, 12 << 20};

unsigned long long checksum(const unsigned char* p, std::size_t n) {
  unsigned long long h = 1469598103934665603ull;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  int requests = argc > 1 ? std::atoi(argv[1]) : 100;
  if (requests <= 0) {
    std::fprintf(stderr, "usage: legacy_inference [REQUESTS]  (default 100)\n");
    return 2;
  }
  cudaStream_t stream;
  CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const std::size_t io_bytes = 64 << 10;
  unsigned long long total = 0;
  for (int r = 0; r < requests; ++r) {
    unsigned char* staging = nullptr;
    CHECK(cudaHostAlloc(reinterpret_cast<void**>(&staging), io_bytes, cudaHostAllocDefault));
    for (std::size_t i = 0; i < io_bytes; ++i) staging[i] = static_cast<unsigned char>(i * 7 + r);

    std::vector<void*> buffers;
    for (std::size_t s : k_sizes) {
      void* d = nullptr;
      CHECK(cudaMalloc(&d, s + static_cast<std::size_t>(r % 7) * 512));
      buffers.push_back(d);
    }
    // "Layers": input -> buffer 0 -> each next buffer, with a bias memset in between.
    CHECK(cudaMemcpyAsync(buffers[0], staging, io_bytes < k_sizes[0] ? io_bytes : k_sizes[0], cudaMemcpyHostToDevice,
                          stream));
    for (std::size_t b = 1; b < buffers.size(); ++b) {
      CHECK(cudaMemsetAsync(buffers[b], static_cast<int>(b + r), k_sizes[b], stream));
      CHECK(cudaMemcpyAsync(buffers[b], buffers[b - 1], k_sizes[0], cudaMemcpyDeviceToDevice, stream));
    }
    CHECK(cudaMemcpyAsync(staging, buffers.back(), io_bytes, cudaMemcpyDeviceToHost, stream));
    CHECK(cudaStreamSynchronize(stream));
    total ^= checksum(staging, io_bytes) + static_cast<unsigned long long>(r);
    for (void* d : buffers) CHECK(cudaFree(d));
    CHECK(cudaFreeHost(staging));
  }
  CHECK(cudaStreamDestroy(stream));
  std::printf("legacy_inference: %d requests, checksum %016llx\n", requests, total);
  return 0;
}

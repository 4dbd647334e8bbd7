// Runs N cudaMalloc+cudaFree pairs of one size after a warm-up, for instruction counting under
// callgrind: shim_callgrind.sh collects only inside measured_pairs (--toggle-collect), runs two N
// and divides the difference, then splits the instructions by object (libpoolshim.so vs the
// simulator's libcudart/libcuda). Plain CUDA API: runs with or without the shim, on any CUDA.
// Also prints the wall time per pair: the timing shim_bench.sh --count-timing uses where Google
// Benchmark cannot go (the portable bundle allows no shared libbenchmark).
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

// Out of line and unmangled so that callgrind can toggle collection on exactly this loop.
extern "C" [[gnu::noinline]] int poolshim_measured_pairs(std::size_t bytes, long pairs) {
  void* p = nullptr;
  for (long i = 0; i < pairs; ++i) {
    if (cudaMalloc(&p, bytes) != cudaSuccess || cudaFree(p) != cudaSuccess) return 1;
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s BYTES PAIRS\n", argv[0]);
    return 2;
  }
  const std::size_t bytes = std::strtoull(argv[1], nullptr, 10);
  const long pairs = std::strtol(argv[2], nullptr, 10);
  void* p = nullptr;
  for (int i = 0; i < 2; ++i) {  // warm: context, segment, thread cache
    if (cudaMalloc(&p, bytes) != cudaSuccess || cudaFree(p) != cudaSuccess) {
      std::fprintf(stderr, "shim_pair_count: warm-up pair failed\n");
      return 1;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  if (poolshim_measured_pairs(bytes, pairs) != 0) {
    std::fprintf(stderr, "shim_pair_count: a pair failed\n");
    return 1;
  }
  const std::chrono::duration<double, std::nano> took = std::chrono::steady_clock::now() - start;
  std::printf("shim_pair_count: %zu bytes, %ld pairs, %.1f ns per pair\n", bytes, pairs,
              pairs > 0 ? took.count() / static_cast<double>(pairs) : 0.0);
  return 0;
}

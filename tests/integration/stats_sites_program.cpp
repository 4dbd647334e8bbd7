// Known call sites for the statistics test (stats_test.sh): each function below allocates from
// one place, in a known order, so the report must name exactly these functions and lines with
// exact byte counts, the exact share of the process peak and the exact leaks.
//   site_pinned   64 KiB pinned, kept (a leak)
//   site_leak     1 MiB device, three times from one loop, kept (3 MiB leaked)
//   site_temp     2 MiB device, freed at once (a temporary: nothing at the peak)
//   site_peak     4 MiB device, freed after the peak
// Process peak: 64 KiB + 3 MiB + 4 MiB. With --hold it stops before freeing site_peak's block and
// waits to be killed (the test then reads the file of a killed process).
#include <cuda_runtime.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace {

[[gnu::noinline]] void* site_pinned() {
  void* p = nullptr;
  cudaHostAlloc(&p, 64 << 10, cudaHostAllocDefault);
  return p;
}
// Inlined into site_leak: the report shows it as a frame of its own (DWARF inline records).
[[gnu::always_inline]] inline void* leak_block() {
  void* p = nullptr;
  cudaMalloc(&p, 1 << 20);  // mark: leak_block's call
  return p;
}
[[gnu::noinline]] void* site_leak() {
  return leak_block();  // mark: site_leak's call
}
[[gnu::noinline]] void site_temp() {
  void* p = nullptr;
  cudaMalloc(&p, 2 << 20);
  cudaFree(p);
}
[[gnu::noinline]] void* site_peak() {
  void* p = nullptr;
  cudaMalloc(&p, 4 << 20);
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  const bool hold = argc > 1 && std::strcmp(argv[1], "--hold") == 0;
  if (site_pinned() == nullptr) return 2;
  for (int i = 0; i < 3; ++i)
    if (site_leak() == nullptr) return 2;
  site_temp();
  void* big = site_peak();
  if (big == nullptr) return 2;
  if (hold) {
    std::printf("ready\n");
    std::fflush(stdout);
    for (;;) pause();
  }
  cudaFree(big);
  std::printf("done\n");
  return 0;
}

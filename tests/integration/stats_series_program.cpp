// Known sizes, temporaries and phases over time for the timeline and size-histogram test
// (stats_series_test.sh). In order, with 40 ms between phases:
//   site_hold     4 x 1 MiB device, kept until the end            (bucket 1M: 4)
//   site_temp     5 x 8 KiB device, each freed at once            (bucket 8K: 5, temporary 5)
//   site_pinned   2 x 3 KiB pinned, never freed (6 KiB leaked)    (bucket 4K: 2)
//   site_spike    16 MiB device, freed after 40 ms                (bucket 16M: 1): the process peak,
//                 4 MiB + 16 MiB + 6 KiB, and 8 KiB with site_pad's first block
//   site_pad      16 x 8 KiB device each freed at once, after the spike and after its free
//                 (temporary 32; enough events for the timeline's clock looks)
// then site_hold's blocks are freed, and with --hold it prints "ready" and waits to be killed.
#include <cuda_runtime.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

namespace {

void pause_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

[[gnu::noinline]] void* site_hold() {
  void* p = nullptr;
  return cudaMalloc(&p, 1 << 20) == cudaSuccess ? p : nullptr;
}
[[gnu::noinline]] bool site_temp() {
  void* p = nullptr;
  return cudaMalloc(&p, 8 << 10) == cudaSuccess && cudaFree(p) == cudaSuccess;
}
[[gnu::noinline]] void* site_pinned() {
  void* p = nullptr;
  return cudaHostAlloc(&p, 3 << 10, cudaHostAllocDefault) == cudaSuccess ? p : nullptr;
}
[[gnu::noinline]] void* site_spike() {
  void* p = nullptr;
  return cudaMalloc(&p, 16 << 20) == cudaSuccess ? p : nullptr;
}
[[gnu::noinline]] bool site_pad() {
  void* p = nullptr;
  return cudaMalloc(&p, 8 << 10) == cudaSuccess && cudaFree(p) == cudaSuccess;
}
bool pad() {
  for (int i = 0; i < 16; ++i)
    if (!site_pad()) return false;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const bool hold = argc > 1 && std::strcmp(argv[1], "--hold") == 0;
  void* held[4];
  for (void*& p : held)
    if ((p = site_hold()) == nullptr) return 2;
  pause_ms(40);
  for (int i = 0; i < 5; ++i)
    if (!site_temp()) return 2;
  for (int i = 0; i < 2; ++i)
    if (site_pinned() == nullptr) return 2;
  pause_ms(40);
  void* spike = site_spike();
  if (spike == nullptr || !pad()) return 2;
  pause_ms(40);
  if (cudaFree(spike) != cudaSuccess || !pad()) return 2;
  pause_ms(40);
  for (void* p : held)
    if (cudaFree(p) != cudaSuccess) return 2;
  if (hold) {
    std::printf("ready\n");
    std::fflush(stdout);
    for (;;) pause();
  }
  std::printf("done\n");
  return 0;
}

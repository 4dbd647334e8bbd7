// Known call sites for poolshim-stats' diff, node, top and memory_viz tests (stats_tool_test.sh).
// Each function below allocates from one place:
//   site_pinned   64 KiB pinned, kept
//   site_leak     1 MiB device, --leaks N times (default 3), kept
//   site_only_a   256 KiB device, kept, only with --only-a
//   site_only_b   768 KiB device, kept, only with --only-b
//   site_reuse    64 KiB device, allocated and freed 4 times (the pool serves the last 3 from its
//                 cache)
//   site_grow     64 KiB device, kept, every 20 ms with --grow (after "ready"), for at most 60 s
//   site_small    4 KiB device, --small N times (default 0), kept
//   site_fail     1 TiB device with --fail: more than the device has, so it fails (no allocation)
//   site_async    96 KiB with cudaMallocAsync on a stream it creates, freed on it, with --async
//                 (prints "stream N", the stream's handle as a number)
// --hold: prints "ready" after the allocations above and waits to be killed.
#include <cuda_runtime.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

[[gnu::noinline]] void* site_pinned() {
  void* p = nullptr;
  cudaHostAlloc(&p, 64 << 10, cudaHostAllocDefault);
  return p;
}
[[gnu::noinline]] void* site_leak() {
  void* p = nullptr;
  cudaMalloc(&p, 1 << 20);
  return p;
}
[[gnu::noinline]] void* site_only_a() {
  void* p = nullptr;
  cudaMalloc(&p, 256 << 10);
  return p;
}
[[gnu::noinline]] void* site_only_b() {
  void* p = nullptr;
  cudaMalloc(&p, 768 << 10);
  return p;
}
[[gnu::noinline]] void site_reuse() {
  void* p = nullptr;
  cudaMalloc(&p, 64 << 10);
  cudaFree(p);
}
[[gnu::noinline]] void* site_small() {
  void* p = nullptr;
  cudaMalloc(&p, 4 << 10);
  return p;
}
[[gnu::noinline]] bool site_fail() {
  void* p = nullptr;
  const bool failed = cudaMalloc(&p, std::size_t{1} << 40) != cudaSuccess;
  (void)cudaGetLastError();  // not sticky: later calls must not see it
  return failed;
}
[[gnu::noinline]] bool site_async() {
  cudaStream_t stream = nullptr;
  void* p = nullptr;
  if (cudaStreamCreate(&stream) != cudaSuccess || cudaMallocAsync(&p, 96 << 10, stream) != cudaSuccess) return false;
  std::printf("stream %llu\n", static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(stream)));
  return cudaFreeAsync(p, stream) == cudaSuccess && cudaStreamSynchronize(stream) == cudaSuccess &&
         cudaStreamDestroy(stream) == cudaSuccess;
}
[[gnu::noinline]] void* site_grow() {
  void* p = nullptr;
  cudaMalloc(&p, 64 << 10);
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  int leaks = 3, small = 0;
  bool only_a = false, only_b = false, hold = false, grow = false, fail = false, async = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--leaks") == 0 && i + 1 < argc)
      leaks = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--small") == 0 && i + 1 < argc)
      small = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--only-a") == 0)
      only_a = true;
    else if (std::strcmp(argv[i], "--only-b") == 0)
      only_b = true;
    else if (std::strcmp(argv[i], "--hold") == 0)
      hold = true;
    else if (std::strcmp(argv[i], "--grow") == 0)
      grow = true;
    else if (std::strcmp(argv[i], "--fail") == 0)
      fail = true;
    else if (std::strcmp(argv[i], "--async") == 0)
      async = true;
    else {
      std::fprintf(stderr,
                   "usage: stats_tool_program [--leaks N] [--small N] [--only-a] [--only-b] [--fail] [--async] [--hold "
                   "| --grow]\n");
      return 2;
    }
  }
  if (site_pinned() == nullptr) return 3;
  for (int i = 0; i < leaks; ++i)
    if (site_leak() == nullptr) return 3;
  if (fail && !site_fail()) return 4;
  if (async && !site_async()) return 5;
  if (only_a && site_only_a() == nullptr) return 3;
  if (only_b && site_only_b() == nullptr) return 3;
  for (int i = 0; i < 4; ++i) site_reuse();
  for (int i = 0; i < small; ++i)
    if (site_small() == nullptr) return 3;
  if (grow) {
    for (int i = 0; i < 3000; ++i) {         // 60 s at most: a test that forgets it does not leave it behind
      if (site_grow() == nullptr) return 3;  // one call site: this line
      if (i == 0) {
        std::printf("ready\n");
        std::fflush(stdout);
      }
      usleep(20000);
    }
    return 0;
  }
  if (hold) {
    std::printf("ready\n");
    std::fflush(stdout);
    for (;;) pause();
  }
  std::printf("done\n");
  return 0;
}

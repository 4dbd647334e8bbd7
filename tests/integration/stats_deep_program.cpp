// A stack deeper than the stats' depth cap, for stats_depth_test.sh: dive recurses N times (the
// first argument, default 30) and allocates 1 MiB at the bottom; main allocates 64 KiB itself (a
// shallow stack, never cut). Both are kept (leaks), so the report has both sites.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

namespace {

volatile int g_sink = 0;

// Work after the call, so that the compiler makes no loop of the recursion (one frame per level).
[[gnu::noipa]] void* dive(int n) {
  if (n == 0) {
    void* p = nullptr;
    cudaMalloc(&p, 1 << 20);
    return p;
  }
  void* p = dive(n - 1);
  g_sink = n;
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  const int depth = argc > 1 ? std::atoi(argv[1]) : 30;
  void* shallow = nullptr;
  if (cudaMalloc(&shallow, 64 << 10) != cudaSuccess) return 2;
  if (dive(depth) == nullptr) return 2;
  std::printf("done\n");
  return 0;
}

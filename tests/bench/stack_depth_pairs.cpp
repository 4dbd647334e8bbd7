// Allocation+free pairs from a chosen call depth, for the call-site statistics overhead
// (stats_overhead.sh): `cuda` pairs are cudaMalloc+cudaFree (what poolshim records), `malloc` pairs
// malloc+free (what heaptrack records), both from SITES call sites at DEPTH frames below main.
// Prints "ns_per_pair=X". usage: stack_depth_pairs cuda|malloc DEPTH PAIRS [SITES (1-64, default 4)]
#include <cuda_runtime_api.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace {

bool g_cuda = true;
long g_pairs = 0;
int g_sites = 4;

template <int Site>
[[gnu::noinline]] int pair() {
  if (g_cuda) {
    void* p = nullptr;
    if (cudaMalloc(&p, 4096 * (Site + 1)) != cudaSuccess || cudaFree(p) != cudaSuccess) return 1;
  } else {
    void* p = std::malloc(4096 * (Site + 1));
    asm volatile("" : : "r"(p) : "memory");
    std::free(p);
  }
  return 0;
}

template <int... Sites>
constexpr auto pair_table(std::integer_sequence<int, Sites...>) {
  return std::array<int (*)(), sizeof...(Sites)>{&pair<Sites>...};
}
constexpr auto k_pairs = pair_table(std::make_integer_sequence<int, 64>{});

[[gnu::noinline]] int loop() {
  for (long i = 0; i < g_pairs; ++i)
    if (const int r = k_pairs[static_cast<std::size_t>(i % g_sites)](); r != 0) return r;
  return 0;
}

[[gnu::noinline]] int descend(int levels) {
  if (levels <= 0) return loop();
  const int r = descend(levels - 1);
  asm volatile("" ::: "memory");  // not a tail call: every level stays a frame
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || (std::strcmp(argv[1], "cuda") != 0 && std::strcmp(argv[1], "malloc") != 0)) {
    std::fprintf(stderr, "usage: %s cuda|malloc DEPTH PAIRS [SITES (1-64)]\n", argv[0]);
    return 2;
  }
  g_cuda = std::strcmp(argv[1], "cuda") == 0;
  const int depth = std::atoi(argv[2]);
  g_pairs = std::atol(argv[3]);
  if (argc > 4) g_sites = std::atoi(argv[4]);
  if (g_sites < 1 || g_sites > static_cast<int>(k_pairs.size())) g_sites = 4;
  if (g_cuda && cudaFree(nullptr) != cudaSuccess) return 2;
  const long n = g_pairs;
  g_pairs = n / 10 + 1;  // warm: pools, caches, stack tables
  if (descend(depth - 4) != 0) return 1;
  g_pairs = n;
  const auto t0 = std::chrono::steady_clock::now();
  if (descend(depth - 4) != 0) return 1;  // main, descend's callers and pair make the rest
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("ns_per_pair=%.1f\n", s / static_cast<double>(n) * 1e9);
  return 0;
}

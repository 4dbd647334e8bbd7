// Allocation+free pairs from a chosen call depth, for the call-site statistics overhead
// (stats_overhead.sh): `cuda` pairs are cudaMalloc+cudaFree (what poolshim records), `malloc` pairs
// malloc+free (what heaptrack records), both from SITES call sites in turn at DEPTH frames below
// main. `shared`: another thread makes one pair first, so that a shim's statistics count as they do
// in a program that allocates from several threads (locked atomics, no sole writer).
// Prints "ns_per_pair=X" (the timed loop) and "ns_per_pair_best_batch=Y" (its fastest batch of 1000
// pairs: what a loaded machine disturbed least).
// usage: stack_depth_pairs cuda|malloc DEPTH PAIRS [SITES (1-64, default 4)] [shared]
#include <cuda_runtime_api.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>

namespace {

bool g_cuda = true;
long g_pairs = 0;
int g_sites = 4;
// The loop also times each batch of k_batch pairs: on a loaded machine the fastest batches are the
// ones no other process interrupted (the whole loop's time is the main figure).
constexpr long k_batch = 1000;
double g_best_batch = 0;  // seconds per pair in the fastest whole batch of the last round

// The sizes do not grow with the number of sites: four of them (4-16 KiB) whatever SITES is, so
// that 64 sites measure 64 stacks, not also 64 sizes (4-256 KiB, 8.3 MiB in all: more than the
// shim pool's 4 MiB per-thread cache, whose flushes then cost ~1800 instructions a pair with
// statistics on or off, and glibc's malloc above its mmap threshold).
constexpr std::size_t size_of_site(int site) { return 4096 * static_cast<std::size_t>(site % 4 + 1); }

int one_pair(std::size_t bytes) {
  if (g_cuda) {
    void* p = nullptr;
    return cudaMalloc(&p, bytes) != cudaSuccess || cudaFree(p) != cudaSuccess ? 1 : 0;
  }
  void* p = std::malloc(bytes);
  asm volatile("" : : "r"(p) : "memory");
  std::free(p);
  return 0;
}

template <int Site>
[[gnu::noinline]] int pair() {
  if (g_cuda) {
    void* p = nullptr;
    if (cudaMalloc(&p, size_of_site(Site)) != cudaSuccess || cudaFree(p) != cudaSuccess) return 1;
  } else {
    void* p = std::malloc(size_of_site(Site));
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
  g_best_batch = 0;
  for (long start = 0; start < g_pairs; start += k_batch) {
    const long end = start + k_batch < g_pairs ? start + k_batch : g_pairs;
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = start; i < end; ++i)
      if (const int r = k_pairs[static_cast<std::size_t>(i % g_sites)](); r != 0) return r;
    const double per_pair =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / static_cast<double>(k_batch);
    if (end - start == k_batch && (g_best_batch == 0 || per_pair < g_best_batch)) g_best_batch = per_pair;
  }
  return 0;
}

[[gnu::noinline]] int descend(int levels) {
  if (levels <= 0) return loop();
  const int r = descend(levels - 1);
  asm volatile("" ::: "memory");  // not a tail call: every level stays a frame
  return r;
}

// Seconds for `pairs` pairs at `levels` levels of descend (negative: a pair failed).
[[gnu::noinline]] double timed_round(long pairs, int levels) {
  g_pairs = pairs;
  const auto t0 = std::chrono::steady_clock::now();
  if (descend(levels) != 0) return -1;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || (std::strcmp(argv[1], "cuda") != 0 && std::strcmp(argv[1], "malloc") != 0) ||
      (argc > 5 && std::strcmp(argv[5], "shared") != 0)) {
    std::fprintf(stderr, "usage: %s cuda|malloc DEPTH PAIRS [SITES (1-64)] [shared]\n", argv[0]);
    return 2;
  }
  g_cuda = std::strcmp(argv[1], "cuda") == 0;
  const int depth = std::atoi(argv[2]);
  g_pairs = std::atol(argv[3]);
  if (argc > 4) g_sites = std::atoi(argv[4]);
  if (g_sites < 1 || g_sites > static_cast<int>(k_pairs.size())) g_sites = 4;
  if (g_cuda && cudaFree(nullptr) != cudaSuccess) return 2;
  if (argc > 5) {
    int r = 0;
    std::thread([&] { r = one_pair(4096); }).join();
    if (r != 0) return 1;
  }
  const long n = g_pairs;
  // A round of a tenth of the pairs warms the pools, caches and stack tables; the second is timed.
  // Both from one call instruction: from two places in main, the rounds' stacks would differ in
  // main's return address, and the warm-up would warm other stacks than the ones timed (the asm
  // keeps the compiler from unrolling the two rounds into two calls).
  const long rounds[2] = {n / 10 + 1, n};
  double s = 0;
  for (int round = 0; round < 2; ++round) {
    asm volatile("" : "+r"(round));
    s = timed_round(rounds[round], depth - 5);  // main, timed_round, loop and pair make the rest
    if (s < 0) return 1;
  }
  std::printf("ns_per_pair=%.1f\nns_per_pair_best_batch=%.1f\n", s / static_cast<double>(n) * 1e9, g_best_batch * 1e9);
  return 0;
}

// Multi-thread, multi-stream stress of what a free promises: each thread fills a fresh allocation
// on one stream, reads it back on another (ordered by an event) into a witness buffer, and frees it
// at once while the read may still be pending, so the next allocation reuses the block under it.
// Afterwards every witness must hold its own allocation's pattern. Runtime API plus driver entry
// points from cudaGetDriverEntryPointByVersion only: the same binary runs on the simulator and a GPU.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "shim_probe.h"

namespace {

struct options {
  int threads = 4;
  int iterations = 150;  // per thread
  unsigned seed = 1;
  bool expect_corruption = false;
};

// Bytes read back from each end of an allocation: enough to see a reuse, small enough that the
// witnesses of every allocation stay in memory until the end.
constexpr std::size_t k_window = std::size_t{8} << 10;
constexpr std::size_t k_slot = 2 * k_window;
constexpr double k_min_log2 = 9;   // 512 B
constexpr double k_max_log2 = 22;  // 4 MiB

std::atomic<int> g_errors{0};

bool ok(cudaError_t e, const char* what, int thread) {
  if (e == cudaSuccess) return true;
  g_errors.fetch_add(1);
  std::fprintf(stderr, "thread %d: %s: %d (%s)\n", thread, what, e, cudaGetErrorName(e));
  return false;
}

bool ok(CUresult r, const char* what, int thread) {
  if (r == CUDA_SUCCESS) return true;
  g_errors.fetch_add(1);
  std::fprintf(stderr, "thread %d: %s: CUresult %d\n", thread, what, static_cast<int>(r));
  return false;
}

#define POOLSHIM_STRESS_TRY(call)      \
  do {                                 \
    if (!ok((call), #call, t)) return; \
  } while (0)

PFN_cuStreamCreate_v2000 g_cu_stream_create = nullptr;
PFN_cuStreamDestroy_v4000 g_cu_stream_destroy = nullptr;

template <class F>
bool entry_point(const char* name, F* out) {
  void* f = nullptr;
  cudaDriverEntryPointQueryResult status{};
  cudaError_t e = cudaGetDriverEntryPointByVersion(name, &f, 12000, cudaEnableDefault, &status);
  if (e != cudaSuccess || status != cudaDriverEntryPointSuccess || f == nullptr) {
    std::fprintf(stderr, "cudaGetDriverEntryPointByVersion(%s): %d status %d\n", name, e, status);
    return false;
  }
  *out = reinterpret_cast<F>(f);
  return true;
}

// One read-back: where its bytes went and what they must be.
struct witness {
  unsigned char pattern = 0;
  bool on_device = false;
  std::size_t bytes = 0;  // head window plus tail window
};

struct thread_result {
  long long allocations = 0;
  long long corruptions = 0;
};

// Distinct for any 255 consecutive allocations of a thread (the ones that reuse each other's
// blocks), never 0 (what fresh memory may hold).
unsigned char pattern_of(int thread, int i) { return static_cast<unsigned char>(1 + (i + thread * 64) % 255); }

// The capture: one thread captures memsets into a private non-blocking stream (relaxed mode, so
// allocations and frees stay legal everywhere) over the middle third of its loop; while it is
// active the shim hands allocations to the real driver. The graph is launched at the end.
struct capture {
  cudaStream_t stream = nullptr;
  void* target = nullptr;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  unsigned char last = 0;
  static constexpr std::size_t bytes = 4096;
};

void run_thread(int t, const options& o, thread_result* out) {
  POOLSHIM_STRESS_TRY(cudaSetDevice(0));
  // Runtime streams (blocking and not) and driver streams (blocking and not).
  cudaStream_t streams[4] = {};
  POOLSHIM_STRESS_TRY(cudaStreamCreateWithFlags(&streams[0], cudaStreamDefault));
  POOLSHIM_STRESS_TRY(cudaStreamCreateWithFlags(&streams[1], cudaStreamNonBlocking));
  POOLSHIM_STRESS_TRY(g_cu_stream_create(&streams[2], CU_STREAM_DEFAULT));
  POOLSHIM_STRESS_TRY(g_cu_stream_create(&streams[3], CU_STREAM_NON_BLOCKING));
  cudaEvent_t filled = nullptr;
  POOLSHIM_STRESS_TRY(cudaEventCreateWithFlags(&filled, cudaEventDisableTiming));

  const std::size_t slab = k_slot * static_cast<std::size_t>(o.iterations);
  unsigned char* pinned = nullptr;
  void* device_witness = nullptr;
  POOLSHIM_STRESS_TRY(cudaMallocHost(&pinned, slab));
  POOLSHIM_STRESS_TRY(cudaMalloc(&device_witness, slab));
  std::vector<witness> witnesses(static_cast<std::size_t>(o.iterations));

  capture cap;
  const bool captures = t == 0;
  if (captures) {
    POOLSHIM_STRESS_TRY(cudaStreamCreateWithFlags(&cap.stream, cudaStreamNonBlocking));
    POOLSHIM_STRESS_TRY(cudaMalloc(&cap.target, capture::bytes));
    POOLSHIM_STRESS_TRY(cudaMemsetAsync(cap.target, 0, capture::bytes, cap.stream));
    POOLSHIM_STRESS_TRY(cudaStreamSynchronize(cap.stream));
  }
  const int capture_begin = o.iterations / 3, capture_end = 2 * o.iterations / 3;

  std::mt19937_64 rng(o.seed * 1000003ull + static_cast<unsigned>(t));
  std::uniform_real_distribution<double> log_size(k_min_log2, k_max_log2);
  for (int i = 0; i < o.iterations; ++i) {
    if (captures && i == capture_begin)
      POOLSHIM_STRESS_TRY(cudaStreamBeginCapture(cap.stream, cudaStreamCaptureModeRelaxed));
    if (captures && i >= capture_begin && i < capture_end && i % 4 == 0) {
      cap.last = static_cast<unsigned char>(0x80 | (i & 0x7f));
      POOLSHIM_STRESS_TRY(cudaMemsetAsync(cap.target, cap.last, capture::bytes, cap.stream));
    }
    if (captures && i == capture_end) POOLSHIM_STRESS_TRY(cudaStreamEndCapture(cap.stream, &cap.graph));

    const auto size = static_cast<std::size_t>(std::exp2(log_size(rng)));
    void* p = nullptr;
    POOLSHIM_STRESS_TRY(cudaMalloc(&p, size));
    ++out->allocations;
    const int a = static_cast<int>(rng() % 4);
    const int b = (a + 1 + static_cast<int>(rng() % 3)) % 4;
    witness& w = witnesses[static_cast<std::size_t>(i)];
    w.pattern = pattern_of(t, i);
    w.on_device = (rng() & 1) != 0;
    POOLSHIM_STRESS_TRY(cudaMemsetAsync(p, w.pattern, size, streams[a]));
    POOLSHIM_STRESS_TRY(cudaEventRecord(filled, streams[a]));
    POOLSHIM_STRESS_TRY(cudaStreamWaitEvent(streams[b], filled, 0));
    const std::size_t head = std::min(size, k_window);
    const std::size_t tail = size > k_window ? std::min(size - k_window, k_window) : 0;
    w.bytes = head + tail;
    const std::size_t at = k_slot * static_cast<std::size_t>(i);
    void* dst = w.on_device ? static_cast<void*>(static_cast<unsigned char*>(device_witness) + at)
                            : static_cast<void*>(pinned + at);
    const cudaMemcpyKind kind = w.on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost;
    POOLSHIM_STRESS_TRY(cudaMemcpyAsync(dst, p, head, kind, streams[b]));
    if (tail != 0)
      POOLSHIM_STRESS_TRY(cudaMemcpyAsync(static_cast<unsigned char*>(dst) + head,
                                          static_cast<unsigned char*>(p) + size - tail, tail, kind, streams[b]));
    // Freed while the read on streams[b] may still be pending; the next cudaMalloc may get it.
    POOLSHIM_STRESS_TRY(cudaFree(p));
  }

  if (captures) {
    if (cap.graph == nullptr) POOLSHIM_STRESS_TRY(cudaStreamEndCapture(cap.stream, &cap.graph));
    POOLSHIM_STRESS_TRY(cudaGraphInstantiate(&cap.exec, cap.graph, 0));
    POOLSHIM_STRESS_TRY(cudaGraphLaunch(cap.exec, cap.stream));
    POOLSHIM_STRESS_TRY(cudaStreamSynchronize(cap.stream));
    std::vector<unsigned char> got(capture::bytes);
    POOLSHIM_STRESS_TRY(cudaMemcpy(got.data(), cap.target, capture::bytes, cudaMemcpyDeviceToHost));
    if (std::any_of(got.begin(), got.end(), [&](unsigned char c) { return c != cap.last; })) {
      g_errors.fetch_add(1);
      std::fprintf(stderr, "thread %d: the captured memsets did not replay (want 0x%02x)\n", t, cap.last);
    }
    POOLSHIM_STRESS_TRY(cudaGraphExecDestroy(cap.exec));
    POOLSHIM_STRESS_TRY(cudaGraphDestroy(cap.graph));
    POOLSHIM_STRESS_TRY(cudaFree(cap.target));
    POOLSHIM_STRESS_TRY(cudaStreamDestroy(cap.stream));
  }

  for (cudaStream_t s : streams) POOLSHIM_STRESS_TRY(cudaStreamSynchronize(s));
  std::vector<unsigned char> from_device(slab);
  POOLSHIM_STRESS_TRY(cudaMemcpy(from_device.data(), device_witness, slab, cudaMemcpyDeviceToHost));
  for (int i = 0; i < o.iterations; ++i) {
    const witness& w = witnesses[static_cast<std::size_t>(i)];
    const std::size_t at = k_slot * static_cast<std::size_t>(i);
    const unsigned char* got = (w.on_device ? from_device.data() : pinned) + at;
    const std::size_t bad =
        static_cast<std::size_t>(std::count_if(got, got + w.bytes, [&](unsigned char c) { return c != w.pattern; }));
    if (bad == 0) continue;
    ++out->corruptions;
    if (out->corruptions <= 3)
      std::fprintf(stderr, "thread %d allocation %d: %zu of %zu bytes are not 0x%02x (first 0x%02x)\n", t, i, bad,
                   w.bytes, w.pattern,
                   *std::find_if(got, got + w.bytes, [&](unsigned char c) { return c != w.pattern; }));
  }

  POOLSHIM_STRESS_TRY(cudaEventDestroy(filled));
  POOLSHIM_STRESS_TRY(cudaFreeHost(pinned));
  POOLSHIM_STRESS_TRY(cudaFree(device_witness));
  POOLSHIM_STRESS_TRY(cudaStreamDestroy(streams[0]));
  POOLSHIM_STRESS_TRY(cudaStreamDestroy(streams[1]));
  POOLSHIM_STRESS_TRY(g_cu_stream_destroy(streams[2]));
  POOLSHIM_STRESS_TRY(g_cu_stream_destroy(streams[3]));
}

bool parse(int argc, char** argv, options* o) {
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (std::strcmp(a, "--expect-corruption") == 0)
      o->expect_corruption = true;
    else if (std::strncmp(a, "--threads=", 10) == 0)
      o->threads = std::atoi(a + 10);
    else if (std::strncmp(a, "--iterations=", 13) == 0)
      o->iterations = std::atoi(a + 13);
    else if (std::strncmp(a, "--seed=", 7) == 0)
      o->seed = static_cast<unsigned>(std::strtoul(a + 7, nullptr, 10));
    else
      return false;
  }
  return o->threads > 0 && o->iterations > 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  if (!parse(argc, argv, &o)) {
    std::fprintf(stderr, "usage: %s [--threads=N] [--iterations=N] [--seed=S] [--expect-corruption]\n", argv[0]);
    return 2;
  }
  shim_probe::check_presence();
  if (!entry_point("cuStreamCreate", &g_cu_stream_create) || !entry_point("cuStreamDestroy", &g_cu_stream_destroy))
    return 2;

  const auto start = std::chrono::steady_clock::now();
  std::vector<thread_result> results(static_cast<std::size_t>(o.threads));
  std::vector<std::thread> threads;
  for (int t = 0; t < o.threads; ++t)
    threads.emplace_back(run_thread, t, std::cref(o), &results[static_cast<std::size_t>(t)]);
  for (std::thread& th : threads) th.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  long long corruptions = 0, allocations = 0;
  for (const thread_result& r : results) corruptions += r.corruptions, allocations += r.allocations;
  std::printf("corruptions=%lld allocations=%lld\n", corruptions, allocations);
  std::fprintf(stderr, "threads=%d iterations=%d seed=%u: %.2f s\n", o.threads, o.iterations, o.seed, seconds);

  // Under the shim in pool mode the pool must have served the stress, and the shim must have seen
  // the capture (else the test would not be testing the pool).
  if (shim_probe::expected() == shim_probe::expect::shim) {
    poolshim_counters c = shim_probe::counters();
    if (c.mode == 0) {
      shim_probe::check(c.pool_requests > 0, "pool_requests > 0", static_cast<long long>(c.pool_requests), 1);
      shim_probe::check(c.captures_begun == 1, "captures_begun", static_cast<long long>(c.captures_begun), 1);
      // Allocations made while the capture was active went to the real driver.
      shim_probe::check(c.pool_requests < c.device_allocs, "pool_requests < device_allocs",
                        static_cast<long long>(c.pool_requests), static_cast<long long>(c.device_allocs));
      std::fprintf(stderr, "device_allocs=%llu pool_requests=%llu pool_hits=%llu streams_created=%llu\n",
                   static_cast<unsigned long long>(c.device_allocs), static_cast<unsigned long long>(c.pool_requests),
                   static_cast<unsigned long long>(c.pool_hits), static_cast<unsigned long long>(c.streams_created));
      const char* sync = std::getenv("POOLSHIM_FREE_SYNC");
      if (sync != nullptr && std::strcmp(sync, "fence") == 0) {
        // The fence did the work: fences were recorded and passed, and blocks were reused after
        // them. (Deferral during a capture is fence_capture_program's to show: here allocations
        // made during the capture bypass the pool, so no pooled free falls due in it.)
        std::fprintf(
            stderr, "fences issued=%llu completed=%llu deferred=%llu waits=%llu\n",
            static_cast<unsigned long long>(c.fences_issued), static_cast<unsigned long long>(c.fences_completed),
            static_cast<unsigned long long>(c.fences_deferred), static_cast<unsigned long long>(c.fence_waits));
        shim_probe::check(c.fences_issued > 0, "fences_issued > 0", static_cast<long long>(c.fences_issued), 1);
        shim_probe::check(c.fences_completed > 0, "fences_completed > 0", static_cast<long long>(c.fences_completed),
                          1);
        shim_probe::check(c.pool_hits > 0, "pool_hits > 0", static_cast<long long>(c.pool_hits), 1);
      }
    }
  }
  if (g_errors.load() != 0 || shim_probe::finish("stream_stress") != 0) return 2;
  if (o.expect_corruption) {
    if (corruptions == 0) std::fprintf(stderr, "stream_stress: corruption was expected, none found\n");
    return corruptions == 0 ? 1 : 0;
  }
  return corruptions == 0 ? 0 : 1;
}

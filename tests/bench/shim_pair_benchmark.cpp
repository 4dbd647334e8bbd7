// The hit-path benchmark through the CUDA runtime: one cudaMalloc+cudaFree pair of 512 B, 64 KiB,
// 4 MiB and 64 MiB, on 1 and 2 threads (each thread its own pointer). Plain CUDA API only, so the
// same binary measures the simulator or a GPU, with libpoolshim.so preloaded or not; shim_bench.sh
// runs it in each mode. Reports which device and whether the shim is mapped, so no figure is
// mistaken for another: a simulator's pair cost is not a real driver's.
#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>
#include <link.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace {

std::atomic<bool> g_failed{false};  // a skipped benchmark makes the run fail, so ctest sees it

void fail(benchmark::State& state, const char* what) {
  g_failed.store(true, std::memory_order_relaxed);
  state.SkipWithError(what);
}

// Whether libpoolshim.so is mapped in this process (LD_PRELOAD silently skips a missing file).
bool shim_mapped() {
  int found = 0;
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        if (info->dlpi_name != nullptr && std::strstr(info->dlpi_name, "libpoolshim.so") != nullptr)
          *static_cast<int*>(data) = 1;
        return 0;
      },
      &found);
  return found != 0;
}

void pair(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  void* p = nullptr;
  // Warm outside the timing: this thread's primary-context binding, and (under the shim) the
  // segment and the thread cache, so the loop measures the hit path.
  for (int i = 0; i < 2; ++i) {
    if (cudaError_t e = cudaMalloc(&p, bytes); e != cudaSuccess) {
      fail(state, cudaGetErrorString(e));
      return;
    }
    cudaFree(p);
  }
  for (auto _ : state) {
    if (cudaMalloc(&p, bytes) != cudaSuccess) [[unlikely]] {
      fail(state, "cudaMalloc failed");
      break;
    }
    benchmark::DoNotOptimize(p);
    if (cudaFree(p) != cudaSuccess) [[unlikely]] {
      fail(state, "cudaFree failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// Real time: a free that synchronises may sleep in the driver, which CPU time would not show.
BENCHMARK(pair)
    ->ArgName("bytes")
    ->Arg(512)
    ->Arg(64 << 10)
    ->Arg(4 << 20)
    ->Arg(64 << 20)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

}  // namespace

// --expect-shim=yes|no: fail (exit 1) unless libpoolshim.so is / is not mapped, so a run that
// meant to measure the shim cannot quietly measure the bare runtime instead.
int main(int argc, char** argv) {
  std::string_view expect;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a.starts_with("--expect-shim="))
      expect = a.substr(std::strlen("--expect-shim="));
    else
      argv[kept++] = argv[i];
  }
  argc = kept;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;

  if (cudaError_t e = cudaFree(nullptr); e != cudaSuccess) {
    std::fprintf(stderr, "shim_pair_benchmark: no CUDA device: %s\n", cudaGetErrorString(e));
    return 1;
  }
  int dev = 0;
  cudaDeviceProp prop{};
  cudaGetDevice(&dev);
  cudaGetDeviceProperties(&prop, dev);
  const bool shim = shim_mapped();
  if ((expect == "yes" && !shim) || (expect == "no" && shim)) {
    std::fprintf(stderr, "shim_pair_benchmark: libpoolshim.so is %s, expected %s\n", shim ? "mapped" : "not mapped",
                 shim ? "not" : "it");
    return 1;
  }
  const char* mode = std::getenv("POOLSHIM_MODE");
  const char* sync = std::getenv("POOLSHIM_FREE_SYNC");
  benchmark::AddCustomContext("cuda_device", prop.name);
  benchmark::AddCustomContext("simulator",
                              std::strstr(prop.name, "poolshim simulated") ? "yes (not GPU figures)" : "no");
  benchmark::AddCustomContext("libpoolshim", shim ? "preloaded" : "absent");
  benchmark::AddCustomContext("POOLSHIM_MODE", mode ? mode : "(unset)");
  benchmark::AddCustomContext("POOLSHIM_FREE_SYNC", sync ? sync : "(unset)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return g_failed.load() ? 1 : 0;
}

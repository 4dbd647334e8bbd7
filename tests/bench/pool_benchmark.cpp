// Hit-path cost of the device pool: one allocate+free pair per iteration over fake_segment_resource,
// for 512 B, 64 KiB (thread caches), 4 MiB and 64 MiB (per-class caches of whole segments), 1 and 2
// threads. "sync" uses always_ready_fence (POOLSHIM_FREE_SYNC=device); "fence" stamps every free with
// a live epoch that a tracker completes every 64 pairs (fence mode, amortised).
#include <benchmark/benchmark.h>

#include <cstdint>

#include "pool/device_pool.h"
#include "support/fake_segment_resource.h"
#include "support/manual_fence.h"

namespace {

using namespace poolshim::pool;

// Leaky singletons, shared by the benchmark threads (as the shim's pools are).
device_pool& sync_pool() {
  static auto* resource = new fake_segment_resource;
  static auto* fence = new always_ready_fence;
  static auto* pool = new device_pool(*resource, *fence);
  return *pool;
}

manual_fence& tracker() {
  static auto* fence = new manual_fence;
  return *fence;
}

device_pool& fence_pool() {
  static auto* resource = new fake_segment_resource;
  static auto* pool = new device_pool(*resource, tracker());
  return *pool;
}

void run_pairs(benchmark::State& state, device_pool& pool, bool tick) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  std::uintptr_t a = 0;
  std::uint64_t n = 0;
  for (auto _ : state) {
    if (pool.allocate(bytes, &a) != status::ok) {
      state.SkipWithError("allocate failed");
      break;
    }
    benchmark::DoNotOptimize(a);
    pool.deallocate(a);
    if (tick && (++n & 63) == 0) tracker().advance();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_pair_sync(benchmark::State& state) { run_pairs(state, sync_pool(), false); }
void BM_pair_fence(benchmark::State& state) { run_pairs(state, fence_pool(), true); }

#define POOLSHIM_BENCH_SIZES(b) b->Arg(512)->Arg(64 << 10)->Arg(4 << 20)->Arg(64 << 20)->Threads(1)->Threads(2)
POOLSHIM_BENCH_SIZES(BENCHMARK(BM_pair_sync));
POOLSHIM_BENCH_SIZES(BENCHMARK(BM_pair_fence));

}  // namespace

BENCHMARK_MAIN();

// Cost of one call-site event pair as the shim will pay it (shim/stats): capture the stack
// (unw_backtrace through the privately loaded libunwind, capped at the depth), intern it, count an
// allocation and a free — at stack depths 8, 32 and 64, warm (the same stack every time, as a loop
// allocating from one site) and over 64 rotating call sites. The heaptrack comparison the issue
// asks for is not built yet.
#include <benchmark/benchmark.h>

#include <memory>

#include "stats/site_stats.h"
#include "stats/stack_table.h"
#include "stats/unwinder.h"

namespace {

using namespace poolshim::stats;

struct tables {
  tables()
      : slots(new stack_slot[1 << 14]()),
        arena(new std::uintptr_t[1 << 20]()),
        counters(new site_counters[1 << 14]()),
        table(slots.get(), 1 << 14, arena.get(), 1 << 20),
        stats(counters.get(), 1 << 14) {}
  std::unique_ptr<stack_slot[]> slots;
  std::unique_ptr<std::uintptr_t[]> arena;
  std::unique_ptr<site_counters[]> counters;
  stack_table table;
  site_stats stats;
};

[[gnu::noinline]] void event_pair(tables& t, int depth) {
  void* frames[64];
  const int n = capture_stack(frames, depth, 0);
  const std::uint32_t id = t.table.intern(frames, n);
  t.stats.on_alloc(id, 4096);
  t.stats.on_free(id, 4096);
}

// Recurses to `levels` frames, then runs the loop there (so the stack is at least that deep).
[[gnu::noinline]] void at_depth(benchmark::State& state, tables& t, int levels, int depth) {
  if (levels > 0) {
    at_depth(state, t, levels - 1, depth);
    benchmark::DoNotOptimize(levels);
    return;
  }
  for (auto _ : state) event_pair(t, depth);
}

void BM_event_pair(benchmark::State& state) {
  static tables t;
  const int depth = static_cast<int>(state.range(0));
  if (!unwinder_available()) {
    state.SkipWithError("libunwind not found");
    return;
  }
  at_depth(state, t, depth, depth);
  state.counters["frames"] = depth;
}
BENCHMARK(BM_event_pair)->Arg(8)->Arg(32)->Arg(64);

void BM_capture_only(benchmark::State& state) {
  const int depth = static_cast<int>(state.range(0));
  struct run {
    [[gnu::noinline]] static void go(benchmark::State& s, int levels, int d) {
      if (levels > 0) {
        go(s, levels - 1, d);
        benchmark::DoNotOptimize(levels);
        return;
      }
      void* frames[64];
      for (auto _ : s) benchmark::DoNotOptimize(capture_stack(frames, d, 0));
    }
  };
  run::go(state, depth, depth);
}
BENCHMARK(BM_capture_only)->Arg(8)->Arg(32)->Arg(64);

}  // namespace

BENCHMARK_MAIN();

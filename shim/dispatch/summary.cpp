// What the shim reports of itself: the public counters snapshot (poolshim_get_counters), the pools'
// figures mirrored into the stats file, and the POOLSHIM_SUMMARY line. Reads every layer's figures;
// the snapshot and the line are generated from POOLSHIM_COUNTER_TABLE (include/poolshim/poolshim.h).
#include "dispatch/summary.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <type_traits>

#include "base/process.h"
#include "intercept/hook_list.h"
#include "poolshim/options.h"
#include "stats/recorder.h"

namespace poolshim::dispatch {

using intercept::g_counters;
using intercept::k_hook_count;

static_assert(std::is_trivially_copyable_v<poolshim_counters>);
// The public layout is an ABI versioned by growth: each version's first field stays where it was,
// and version 4 ends where it ended. A row inserted in the table instead of appended fails here.
static_assert(offsetof(poolshim_counters, device_allocs) == 16);
static_assert(offsetof(poolshim_counters, hook_calls) == 224);
static_assert(offsetof(poolshim_counters, pool_requests) == 736);       // version 2
static_assert(offsetof(poolshim_counters, host_pool_requests) == 792);  // version 3
static_assert(offsetof(poolshim_counters, fences_issued) == 848);       // version 4
static_assert(offsetof(poolshim_counters, daemon_device_leases) == 936);
static_assert(POOLSHIM_COUNTERS_VERSION != 4 || sizeof(poolshim_counters) == 944,
              "rows appended to the counter table need a new POOLSHIM_COUNTERS_VERSION");

void mirror_pool_figures() noexcept {
  const device_router::totals d = device_router::sum_of_pools();
  const host_router::totals h = host_router::sum_of_pools();
  // Of the allocations the pools served: a request they failed (out of memory) is no allocation.
  stats::record_pool_figures(d.pool_hits, d.requests - d.failures, h.pool_hits, h.requests - h.failures);
}

layer_figures read_layer_figures() noexcept {
  layer_figures layers{};
  layers.device_pools = device_router::sum_of_pools();
  layers.host_pools = host_router::sum_of_pools();
  // Only fence mode has a tracker worth asking; its figures are zero in the other modes.
  if (base::current_config().free_sync == free_sync_mode::fence) layers.fence = fence_tracker::get_stats();
  layers.daemon = daemon_client::get_figures();
  return layers;
}

void snapshot_counters(poolshim_counters* out) noexcept { fill_counters(g_counters, read_layer_figures(), out); }

void fill_counters(const intercept::counters& seen, const layer_figures& layers, poolshim_counters* out) noexcept {
  std::memset(out, 0, sizeof *out);
  // The META rows describe the struct rather than count anything: set by name (reserved stays 0).
  out->version = POOLSHIM_COUNTERS_VERSION;
  out->hook_count = static_cast<std::uint32_t>(k_hook_count);
  out->mode = static_cast<std::uint32_t>(base::mode());
#define POOLSHIM_FILL_HOOKS(field, ...) \
  for (std::size_t i = 0; i < k_hook_count; ++i) out->field[i] = seen.field[i].load(std::memory_order_relaxed);
#define POOLSHIM_FILL_SEEN(field, ...) out->field = seen.field.load(std::memory_order_relaxed);
#define POOLSHIM_FILL_DEVICE_POOL(field, from, ...) out->field = layers.device_pools.from;
#define POOLSHIM_FILL_HOST_POOL(field, from, ...) out->field = layers.host_pools.from;
#define POOLSHIM_FILL_FENCE(field, from, ...) out->field = layers.fence.from;
#define POOLSHIM_FILL_DAEMON(field, from, ...) out->field = layers.daemon.from;
  POOLSHIM_COUNTER_TABLE(POOLSHIM_COUNTER_SKIP, POOLSHIM_FILL_HOOKS, POOLSHIM_FILL_SEEN, POOLSHIM_FILL_DEVICE_POOL,
                         POOLSHIM_FILL_HOST_POOL, POOLSHIM_FILL_FENCE, POOLSHIM_FILL_DAEMON)
#undef POOLSHIM_FILL_HOOKS
#undef POOLSHIM_FILL_SEEN
#undef POOLSHIM_FILL_DEVICE_POOL
#undef POOLSHIM_FILL_HOST_POOL
#undef POOLSHIM_FILL_FENCE
#undef POOLSHIM_FILL_DAEMON
}

namespace {

const char* mode_name(std::uint64_t m) noexcept {
  switch (m) {
    case static_cast<std::uint64_t>(run_mode::pool):
      return "pool";
    case static_cast<std::uint64_t>(run_mode::observe):
      return "observe";
    case static_cast<std::uint64_t>(run_mode::off):
      return "off";
  }
  return "?";
}

// The table's `shown` column.
enum class shown { never, always, if_nonzero, mode_name };

struct line_field {
  int slot = 0;
  const char* name = nullptr;
  shown when = shown::never;
  std::uint64_t (*value)(const poolshim_counters&) noexcept = nullptr;
};

constexpr std::uint64_t figure_value(std::uint64_t v) noexcept { return v; }
// An array (hook_calls) shows its sum: one figure for the line, the detail is in the struct.
constexpr std::uint64_t figure_value(const std::uint64_t (&entries)[POOLSHIM_MAX_HOOKS]) noexcept {
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < k_hook_count; ++i) sum += entries[i];
  return sum;
}

// Every row of the table, in the struct's order.
#define POOLSHIM_LINE_FIELD(field, from, slot, line_name, when) \
  line_field{slot, #line_name, shown::when,                     \
             [](const poolshim_counters& c) noexcept -> std::uint64_t { return figure_value(c.field); }},
constexpr line_field k_rows[] = {POOLSHIM_COUNTER_TABLE(POOLSHIM_LINE_FIELD, POOLSHIM_LINE_FIELD, POOLSHIM_LINE_FIELD,
                                                        POOLSHIM_LINE_FIELD, POOLSHIM_LINE_FIELD, POOLSHIM_LINE_FIELD,
                                                        POOLSHIM_LINE_FIELD)};
#undef POOLSHIM_LINE_FIELD

constexpr std::size_t k_line_size = static_cast<std::size_t>(
    std::count_if(std::begin(k_rows), std::end(k_rows), [](const line_field& f) { return f.when != shown::never; }));

// The rows the line shows, in the order of their slots: the line keeps its order while the struct
// grows by appending (tools parse the line).
constexpr std::array<line_field, k_line_size> k_line = [] {
  std::array<line_field, k_line_size> line{};
  std::size_t n = 0;
  for (const line_field& f : k_rows)
    if (f.when != shown::never) line[n++] = f;
  std::sort(line.begin(), line.end(), [](const line_field& a, const line_field& b) { return a.slot < b.slot; });
  return line;
}();

static_assert(
    [] {
      for (std::size_t i = 0; i < k_line.size(); ++i)
        if (k_line[i].slot != static_cast<int>(i + 1)) return false;
      for (const line_field& f : k_rows)
        if (f.when == shown::never && f.slot != 0) return false;
      return true;
    }(),
    "the summary slots of POOLSHIM_COUNTER_TABLE must be 1, 2, ... without gap or repeat, and 0 for `never`");

}  // namespace

std::size_t format_summary(const poolshim_counters& c, char* buf, std::size_t cap) noexcept {
  if (cap == 0) return 0;
  if (cap == 1) {  // room for the terminator only (buf[len - 1] below would be buf[-1])
    buf[0] = '\0';
    return 0;
  }
  opt::text w(buf, cap);  // cut at cap - 1, always terminated
  w.put("poolshim: summary");
  for (const line_field& f : k_line) {
    const std::uint64_t v = f.value(c);
    if (f.when == shown::if_nonzero && v == 0) continue;
    w.put(" ").put(f.name).put("=");
    if (f.when == shown::mode_name)
      w.put(mode_name(v));
    else
      w.put(v);
  }
  w.put("\n");
  if (w.size() + 1 >= cap) buf[w.size() - 1] = '\n';  // cut: still one line
  return w.size();
}

std::size_t format_summary(char* buf, std::size_t cap) noexcept {
  if (cap == 0) return 0;
  poolshim_counters c;
  snapshot_counters(&c);
  return format_summary(c, buf, cap);
}

}  // namespace poolshim::dispatch

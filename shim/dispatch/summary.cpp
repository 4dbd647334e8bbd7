// What the shim reports of itself: the public counters snapshot (poolshim_get_counters), the pools'
// figures mirrored into the stats file, and the POOLSHIM_SUMMARY line. Reads every layer's figures.
#include "dispatch/summary.h"

#include <cstring>
#include <type_traits>

#include "base/process.h"
#include "intercept/counters.h"
#include "intercept/hook_list.h"
#include "route/device_router.h"
#include "route/fence_tracker.h"
#include "route/host_router.h"
#include "source/daemon_client.h"
#include "stats/recorder.h"

namespace poolshim::dispatch {

using intercept::g_counters;
using intercept::k_hook_count;

static_assert(std::is_trivially_copyable_v<poolshim_counters>);

void mirror_pool_figures() noexcept {
  const device_router::totals d = device_router::sum_of_pools();
  const host_router::totals h = host_router::sum_of_pools();
  stats::record_pool_figures(d.pool_hits, d.requests, h.pool_hits, h.requests);
}

void snapshot_counters(poolshim_counters* out) noexcept {
  std::memset(out, 0, sizeof *out);
  out->version = POOLSHIM_COUNTERS_VERSION;
  out->hook_count = static_cast<std::uint32_t>(k_hook_count);
  out->mode = static_cast<std::uint32_t>(base::mode());
#define POOLSHIM_COUNTER_COPY(name) out->name = g_counters.name.load(std::memory_order_relaxed);
  POOLSHIM_COUNTER_FIELDS(POOLSHIM_COUNTER_COPY)
#undef POOLSHIM_COUNTER_COPY
  for (std::size_t i = 0; i < k_hook_count; ++i)
    out->hook_calls[i] = g_counters.hook_calls[i].load(std::memory_order_relaxed);
  const device_router::totals pools = device_router::sum_of_pools();
  out->pool_requests = pools.requests;
  out->pool_hits = pools.pool_hits;
  out->pool_bytes_in_use = pools.bytes_in_use;
  out->pool_bytes_reserved = pools.bytes_reserved;
  out->pool_peak_in_use = pools.peak_in_use;
  out->pool_peak_reserved = pools.peak_reserved;
  out->pool_segments = pools.segments;
  const host_router::totals host = host_router::sum_of_pools();
  out->host_pool_requests = host.requests;
  out->host_pool_hits = host.pool_hits;
  out->host_pool_bytes_in_use = host.bytes_in_use;
  out->host_pool_bytes_reserved = host.bytes_reserved;
  out->host_pool_peak_in_use = host.peak_in_use;
  out->host_pool_peak_reserved = host.peak_reserved;
  out->host_pool_slabs = host.slabs;
  if (base::current_config().free_sync == free_sync_mode::fence) {
    const fence_tracker::stats f = fence_tracker::get_stats();
    out->fences_issued = f.fences_issued;
    out->fences_completed = f.fences_completed;
    out->fences_deferred = f.fences_deferred;
    out->fence_waits = f.fence_waits;
    out->streams_tracked = f.streams_tracked;
  }
  const daemon_client::figures dc = daemon_client::get_figures();
  out->daemon_slabs_leased = dc.leases_taken;
  out->daemon_slabs_returned = dc.leases_returned;
  out->daemon_fallbacks = dc.fallbacks;
  out->daemon_redeclared = dc.redeclared;
  out->daemon_connects = dc.connects;
  out->daemon_refusals = dc.refusals;
  out->daemon_device_leases = dc.device_leases;
}

namespace {

struct line_writer {
  char* buf;
  std::size_t cap;
  std::size_t len = 0;

  void put(const char* s) noexcept {
    while (*s && len + 1 < cap) buf[len++] = *s++;
  }
  void put_u64(std::uint64_t v) noexcept {
    char d[24];
    int n = 0;
    do {
      d[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v);
    while (n && len + 1 < cap) buf[len++] = d[--n];
  }
  void field(const char* name, std::uint64_t v) noexcept {
    put(" ");
    put(name);
    put("=");
    put_u64(v);
  }
};

const char* mode_name(run_mode m) noexcept {
  switch (m) {
    case run_mode::pool:
      return "pool";
    case run_mode::observe:
      return "observe";
    case run_mode::off:
      return "off";
  }
  return "?";
}

}  // namespace

std::size_t format_summary(char* buf, std::size_t cap) noexcept {
  if (cap == 0) return 0;
  poolshim_counters c;
  snapshot_counters(&c);
  std::uint64_t calls = 0;
  for (std::size_t i = 0; i < k_hook_count; ++i) calls += c.hook_calls[i];
  line_writer w{buf, cap};
  w.put("poolshim: summary mode=");
  w.put(mode_name(base::mode()));
  w.field("hook_calls", calls);
  w.field("device_allocs", c.device_allocs);
  w.field("device_bytes", c.device_alloc_bytes);
  w.field("device_frees", c.device_frees);
  w.field("host_allocs", c.host_allocs);
  w.field("host_bytes", c.host_alloc_bytes);
  w.field("host_frees", c.host_frees);
  w.field("managed_allocs", c.managed_allocs);
  w.field("async_allocs", c.async_allocs);
  w.field("vmm_creates", c.vmm_creates);
  w.field("pool_requests", c.pool_requests);
  w.field("pool_hits", c.pool_hits);
  w.field("pool_peak_in_use", c.pool_peak_in_use);
  w.field("pool_peak_reserved", c.pool_peak_reserved);
  w.field("lookups_wrapped", c.lookups_wrapped);
  w.field("lookups_unknown", c.lookups_unknown);
  w.field("host_pool_hits", c.host_pool_hits);
  w.field("host_pool_peak_in_use", c.host_pool_peak_in_use);
  w.field("host_pool_peak_reserved", c.host_pool_peak_reserved);
  if (c.fences_issued != 0) w.field("fences", c.fences_issued);
  if (c.daemon_slabs_leased != 0) w.field("daemon_slabs", c.daemon_slabs_leased);
  if (c.daemon_device_leases != 0) w.field("daemon_device_segments", c.daemon_device_leases);
  w.put("\n");
  if (w.len + 1 >= cap) buf[w.len - 1] = '\n';
  buf[w.len] = '\0';
  return w.len;
}

}  // namespace poolshim::dispatch

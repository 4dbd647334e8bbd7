// What the shim reports of itself: the public counters (poolshim_get_counters), the pools' hit
// figures mirrored into the call-site statistics file, and the POOLSHIM_SUMMARY line at exit. All
// three follow POOLSHIM_COUNTER_TABLE (include/poolshim/poolshim.h), the one list of the figures.
#pragma once

#include <cstddef>

#include "intercept/counters.h"
#include "poolshim/poolshim.h"
#include "route/device_router.h"
#include "route/fence_tracker.h"
#include "route/host_router.h"
#include "source/daemon_client.h"

namespace poolshim::dispatch {

// The other layers' own figures, which the table's `from` column names, read once per snapshot.
struct layer_figures {
  device_router::totals device_pools;
  host_router::totals host_pools;
  fence_tracker::stats fence;  // zero unless POOLSHIM_FREE_SYNC=fence
  daemon_client::figures daemon;
};
layer_figures read_layer_figures() noexcept;

// Fills the whole public struct (version, hook_count and mode included) from the live figures.
void snapshot_counters(poolshim_counters* out) noexcept;
// The same from given figures: what snapshot_counters does with the live ones (and tests with theirs).
void fill_counters(const intercept::counters& seen, const layer_figures& layers, poolshim_counters* out) noexcept;
// Copies the pools' hit figures into the call-site statistics file (stats/recorder.h), if any.
void mirror_pool_figures() noexcept;
// The POOLSHIM_SUMMARY line, '\n'-terminated, into buf (no allocation, no stdio: runs at exit).
std::size_t format_summary(char* buf, std::size_t cap) noexcept;
// The same line for given figures (format_summary formats a snapshot).
std::size_t format_summary(const poolshim_counters& c, char* buf, std::size_t cap) noexcept;

}  // namespace poolshim::dispatch

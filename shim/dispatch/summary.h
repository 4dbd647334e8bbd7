// What the shim reports of itself: the public counters (poolshim_get_counters), the pools' hit
// figures mirrored into the call-site statistics file, and the POOLSHIM_SUMMARY line at exit.
#pragma once

#include <cstddef>

#include "poolshim/poolshim.h"

namespace poolshim::dispatch {

// Fills the whole public struct (version, hook_count and mode included).
void snapshot_counters(poolshim_counters* out) noexcept;
// Copies the pools' hit figures into the call-site statistics file (stats/recorder.h), if any.
void mirror_pool_figures() noexcept;
// The POOLSHIM_SUMMARY line, '\n'-terminated, into buf (no allocation, no stdio: runs at exit).
std::size_t format_summary(char* buf, std::size_t cap) noexcept;

}  // namespace poolshim::dispatch

// A trace from a stats file's event ring (POOLSHIM_STATS_EVENTS): one device's device-memory
// allocations and frees in the order the shim recorded them, read through poolshim-stats' own
// checked reader (daemon/stats/stats_file.h), so a damaged or hostile file is refused the same way.
#pragma once

#include <string>

#include "replay/trace.h"

namespace poolshim::replay {

// True when the file at `path` starts with the stats file's magic (else: a text trace).
bool is_stats_file(const std::string& path);
// Throws trace_error (no ring, no events of that device, an unreadable file).
trace trace_from_stats_file(const std::string& path, int device);

}  // namespace poolshim::replay

// The pool hit rate in poolshim-stats' summary: of the allocations the shim's pools served, the
// share served from memory they already held (the header's device_pool_* for the device kind,
// host_pool_* for pinned; process-wide, every device together). "-" / null when a pool served none.
#pragma once

#include <string>

#include "poolshim/stats_file.h"

namespace poolshim::stats_tool {

// "  pool hit rate: device 87.5% (7 of 8 allocations), pinned -\n"
std::string pool_hit_rate_text(const poolshim_stats_header& h);
// "\"pool_hit_rate\":{\"device\":{\"hits\":7,\"allocs\":8,\"rate\":0.875},\"pinned\":{...}}," (a JSON
// member and its comma, for the report's top-level object; rate null when allocs is 0)
std::string pool_hit_rate_json(const poolshim_stats_header& h);

}  // namespace poolshim::stats_tool

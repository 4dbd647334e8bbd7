// poolshim-stats node: the node's view — every process's stats file in DIR (running, exited or
// killed), one line each (pid, state, live, peak, what the daemon lent it, command), the figures
// summed per device and kind, and the daemon's own figures (pinned region, lent, free, clients,
// device memory lent) when a trusted poolshimd answers on its socket; one line saying so when
// none does (never an error). Text, or JSON ("schema_version": 1).
#pragma once

#include <string>
#include <vector>

namespace poolshim::stats_tool {

int node_main(const std::vector<std::string>& args, const std::string& default_dir, const char* usage);

}  // namespace poolshim::stats_tool

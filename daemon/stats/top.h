// poolshim-stats top: a live view like top(1). Every interval it redraws the node's running
// processes (from their stats files in DIR): live and peak bytes, allocations per second (the
// change in allocations since the previous refresh over the time between them; "-" on the first),
// and under each the call sites holding the most live bytes. The screen is cleared only when
// stdout is a terminal; otherwise each refresh follows the last under a dated separator line, so
// `--iterations N` serves scripts and tests.
#pragma once

#include <string>
#include <vector>

namespace poolshim::stats_tool {

int top_main(const std::vector<std::string>& args, const std::string& default_dir, const char* usage);

}  // namespace poolshim::stats_tool

// poolshim-stats diff [OLD NEW]: two runs compared call site by call site. Sites are matched by
// their symbolised frames (function, file, line — tool_util.h's site_key), never by stack id or
// address, which differ from run to run; for each, the change in bytes held at the process peak,
// live bytes, bytes allocated and allocations, sorted by the absolute change of the --sort key.
// Sites of one run only are shown as new or gone. Text, or JSON ("schema_version": 1).
#pragma once

#include <string>
#include <vector>

namespace poolshim::stats_tool {

// ARGS: the words after "diff". Returns the exit status (0, 1: a file is missing or unreadable,
// 2: bad usage, with a message on stderr).
int diff_main(const std::vector<std::string>& args, const std::string& default_dir, const char* usage);

}  // namespace poolshim::stats_tool

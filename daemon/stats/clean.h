// poolshim-stats clean [--dir DIR] [--older-than DURATION] [--dry-run]: removes the stats files
// of processes that are no longer running. The files live in a RAM-backed folder (/dev/shm by
// default, about 17 MiB each) and nothing else removes them.
//
// A file is removed only when all of these hold: it is a regular file named poolshim-*.stats that
// the effective user owns, it reads as a stats file, its pid is not alive (a process of that pid,
// even one that recorded its exit and is still ending, or a reused pid, keeps the file), and, with
// --older-than, its process ended (its clean exit; a killed one's start) at least that long ago.
// Every other file is kept or left alone, each with a line saying why; at the end one line with
// the counts and the bytes freed. --dry-run says what it would remove and removes nothing.
#pragma once

#include <string>
#include <vector>

namespace poolshim::stats_tool {

// ARGS: the words after "clean". Returns the exit status (0; 1: DIR cannot be read or a file could
// not be removed; 2: bad usage, with a message on stderr).
int clean_main(const std::vector<std::string>& args, const std::string& default_dir, const char* usage);

}  // namespace poolshim::stats_tool

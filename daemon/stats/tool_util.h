// Shared by poolshim-stats' diff, node, top and memory_viz commands: byte and time formatting,
// JSON strings, naming a process's file (a path, a pid, "latest" or "previous") and call sites
// keyed by what the source says (function, file, line), so that two runs of one program — whose
// addresses and stack ids differ — name a site alike.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "stats/frame_filter.h"
#include "stats/stats_file.h"

namespace poolshim::stats_tool::cli {

std::string bytes_text(long double b);         // "1.5 MiB", "-512 KiB"
std::string signed_bytes_text(long double b);  // "+1.5 MiB", "-512 KiB", "0 B"
std::string signed_count_text(long double n);  // "+3", "-1", "0"
std::string when_text(std::uint64_t ns);       // local "YYYY-MM-DD HH:MM:SS", "-" for 0
// A JSON string literal, always valid JSON: report_text.h's json_quote (bytes that are not UTF-8
// become U+FFFD), the one writer of every poolshim-stats JSON string.
std::string json_quote(const std::string& s);
// Text from a file, a folder or /proc made safe for a terminal: every control character (C0, DEL,
// C1 — ESC among them) and every byte that is not valid UTF-8 is shown as \xNN, so that a name
// cannot move the cursor, retitle the window or hide text. Every text output's strings from a
// stats file (program, command line, module, function and file names) and file paths go through it.
std::string terminal_text(const std::string& s);
std::string state_of(const stats_file& f);       // "running", "exited" or "killed"
std::string short_command(const stats_file& f);  // cmdline, else exe
// The command for a table: the program's file name (no folder) and its arguments, cut to WIDTH
// columns with "..." at the end.
std::string brief_command(const stats_file& f, std::size_t width);

// Opens one process's stats file: SPEC is a path (it has a '/' or ends in ".stats"; any user's
// file), a pid (the newest file of that pid in DIR), "latest" or "" (the newest file in DIR) or
// "previous" (the one before it); in DIR only the user's own files count. A file of DIR that
// cannot be opened any more (removed since the folder was read) is passed over, with a line in
// *notes. Throws file_error with a message for the user when there is none.
std::unique_ptr<stats_file> open_named(const std::string& spec, const std::string& dir,
                                       std::vector<std::string>* notes);

// A site's identity across runs: its symbolised frames ("function|file|line" each; an address
// without symbols as module basename + offset, which a rebuilt binary changes).
std::string site_key(const site& s);
// Sites merged by site_key (a stack that differs only in return addresses the source does not
// tell apart is one site to the reader). Counters add; own peak and largest take the maximum.
std::vector<site> merge_by_key(std::vector<site> in);
// The sites a report shows: merged by site_key over every frame, then cut to the frames `filter`
// shows and merged again where those are the same — each site's `folded` says how many of the
// first merge's sites went into it (two call sites that differ only in hidden frames, such as
// cudaMalloc and cudaMallocManaged called on one line, are one row; --all-frames parts them).
std::vector<site> visible_sites(std::vector<site> raw, const frame_filter& filter);

// The frame a reader recognises a site by: the first one outside the CUDA libraries and the shim
// (the program's call of cudaMalloc, not cudaMalloc itself), else the innermost.
const frame* caller_frame(const site& s);

// Parses a non-negative decimal (digits only: no sign, no space, at most 18 digits); false when
// TEXT is not one.
bool parse_count(const std::string& text, std::uint64_t* out);

}  // namespace poolshim::stats_tool::cli

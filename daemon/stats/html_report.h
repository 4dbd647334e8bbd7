// `poolshim-stats report --format html`: one self-contained HTML page (no network: inline CSS and
// JavaScript, a Content-Security-Policy that forbids every outside load, the data as embedded
// JSON) with the process summary per device and kind, the top call sites table, framework cache
// notes (labels.h), and an interactive icicle flame graph of every call stack weighted by bytes at
// the process peak (switchable to live bytes, bytes allocated, allocations, temporary allocations;
// click to zoom, hover for function, file:line and bytes, search to highlight; a bottom-up view,
// allocating functions on top and their callers below; a filter by function, module or file that
// keeps or drops sites, or hides frames, in the graph and the table alike), and memory over time
// with the lines of the call sites with the largest own peaks (timeline.h).
//
// Every string from the stats file (command line, paths, function and file names) is escaped for
// where it lands: HTML text and attributes with html_escape, the embedded JSON with json_quote's
// HTML-safe form (no "<" at all, so "</script>" cannot end the element early), and the page's
// script writes names into the DOM with textContent only.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "stats/stats_file.h"
#include "stats/timeline.h"

namespace poolshim::stats_tool {

// What the page shows; html_input_of fills it from a stats file, tests may fill it by hand.
struct html_input {
  std::string file;   // the stats file's path
  std::string state;  // "exited", "running" or "killed"
  std::string exe, cmdline;
  int pid = 0;
  std::uint32_t uid = 0;
  std::uint64_t start_ns = 0, end_ns = 0;  // end_ns: 0 unless the process exited cleanly
  std::uint64_t now_ns = 0;                // when the report was made (rates of a running process)
  std::int64_t peak_bytes = 0;
  std::uint64_t peak_ns = 0;
  std::int64_t live_bytes = 0;  // still allocated (at exit, now, or when it died)
  std::size_t live_count = 0;
  std::uint64_t events = 0, untracked_frees = 0;
  bool stacks_dropped = false;
  bool stacks_off = false;       // no call stacks at all: the stats folder had no room for the full file
  std::uint32_t depth_cap = 32;  // frames kept per stack (a site's `cut`: it had more)
  std::vector<kind_figures> kinds;
  std::vector<site> sites;     // every site (the flame graph), sorted by `sort`, largest first
  std::size_t top = 10;        // rows of the call-site table (0: all)
  std::string sort = "peak";   // peak | live | total | count | own-peak | temporary: the table's order, and
                               // the graph's first weight (own-peak: peak)
  bool bottom_up = false;      // the flame graph opens bottom-up (report --bottom-up)
  bool frames_hidden = false;  // the sites' frames were cut by the frame filter (frame_filter.h)
  timeline series;             // live bytes over time (timeline.h)
  std::array<size_counts, POOLSHIM_STATS_KINDS> kind_sizes{};  // allocations by size, per kind
};

// `sites`: every site of f (merged as the other formats merge them), sorted by `sort`.
html_input html_input_of(const stats_file& f, std::vector<site> sites, std::size_t top, const std::string& sort);

// Writes the page; false when writing failed (errno tells why).
bool write_html(std::FILE* out, const html_input& in);

}  // namespace poolshim::stats_tool

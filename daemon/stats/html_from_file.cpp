// html_input from a stats file (html_report.h). Kept apart from the page writer so that a test
// can build the page from hand-made data without linking the stats-file reader.
#include <ctime>

#include "stats/html_report.h"

namespace poolshim::stats_tool {

html_input html_input_of(const stats_file& f, std::vector<site> sites, std::size_t top, const std::string& sort) {
  const poolshim_stats_header& h = f.header();
  html_input in;
  in.file = f.path();
  in.state = h.end_ns != 0 ? "exited" : f.running() ? "running" : "killed";
  in.exe = f.exe();
  in.cmdline = f.cmdline();
  in.pid = h.pid;
  in.uid = h.uid;
  in.start_ns = h.start_ns;
  in.end_ns = h.end_ns;
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  in.now_ns = static_cast<std::uint64_t>(now.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(now.tv_nsec);
  in.peak_bytes = h.process_peak;
  in.peak_ns = h.peak_ns;
  for (const poolshim_stats_live& l : f.live()) {
    in.live_bytes += static_cast<std::int64_t>(l.bytes);
    ++in.live_count;
  }
  in.events = f.events();
  in.untracked_frees = h.untracked_frees;
  in.stacks_dropped = (h.flags & POOLSHIM_STATS_FLAG_STACKS_DROPPED) != 0;
  in.stacks_off = (h.flags & POOLSHIM_STATS_FLAG_STACKS_OFF) != 0;
  in.depth_cap = h.depth_cap;
  in.kinds = f.kinds();
  in.sites = std::move(sites);
  in.top = top;
  in.sort = sort;
  in.series = f.timeline();
  in.kind_sizes = f.kind_sizes();
  return in;
}

}  // namespace poolshim::stats_tool

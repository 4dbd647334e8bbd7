// How a call site reads in poolshim-stats' reports: the mark of a stack cut at the depth cap (and
// the POOLSHIM_STATS_DEPTH that keeps it whole), and how many callers a site's label needs so that
// no two sites read alike (two sites in one function differ by file:line; two calls of one helper
// by the helper's caller). Shared by the text, collapsed and HTML formats.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "stats/stats_file.h"

namespace poolshim::stats_tool {

// For a cut stack, "[stack cut at 32 frames: 41 deep, POOLSHIM_STATS_DEPTH=41 keeps it whole]"
// (or why no depth would); "" for a whole one. depth_cap: the file's.
std::string cut_text(const site& s, std::uint32_t depth_cap);
// The POOLSHIM_STATS_DEPTH that would keep every cut stack of `sites` whole: the deepest one's
// depth; 0 when none is cut or no depth is known. *more: that deepest one had more frames than counted.
std::uint32_t depth_needed(const std::vector<site>& sites, bool* more = nullptr);

// How many frames each site's label shows, from its frame from[i] outward (its call site, then
// the callers), so that no two labels are the same: 1 — the call site's function with its file and
// line — unless another site shares that frame (function, file, line; module and offset without a
// file), then one more than the longest run of frames it shares with any other site. 0 for a site
// without frames from there. sites and from have the same size.
std::vector<std::size_t> label_lengths(const std::vector<site>& sites, const std::vector<std::size_t>& from);

// Whether a frame is in the CUDA runtime, the driver or the shim (by its module's file name).
bool in_cuda_or_shim(const frame& f);

// The frame that names a call site: the innermost one outside the CUDA runtime, the driver and the
// shim that has a source file (the program's call of cudaMalloc), else the innermost one outside
// them, else the innermost; null for a site without frames.
const frame* call_site_frame(const site& s);

// The frames each site's label shows, [first, first + count) of its frames, so that no two sites
// of `sites` read alike: from its call site (call_site_frame) outward, as many as label_lengths
// says. Sites alike from their call sites on (they differ only in frames inside them, such as the
// runtime's entry points that --all-frames shows) name their call site alone (their callers are
// the same) and, as `via`, the frame inside it closest to it in which each differs from the others
// (cudaMallocManaged beside cudaMalloc).
// count 0: a site without frames.
struct label_span {
  static constexpr std::size_t none = static_cast<std::size_t>(-1);
  std::size_t first = 0, count = 0;
  std::size_t via = none;  // the index of the inner frame that tells the site apart, or none
};
std::vector<label_span> label_spans(const std::vector<site>& sites);

// Each site's label as text: the frames of its span (frame::text(), "function (file:line)")
// joined by " < " (the caller after the callee), "[stack cut]" after a cut stack's when the span
// reaches its end, then " via " and its `via` frame; "[untracked stacks]" (id 0) or "[stack kept without frames]"
// without frames.
std::vector<std::string> site_labels(const std::vector<site>& sites);

// The sort keys of `report --sort` and what breaks a tie of each: the next most meaningful figure,
// then the next (a site with nothing live never ranks above one with bytes at the peak because
// the stack table happened to hold it first). `sort`: peak, live, total, count or own-peak.
std::int64_t sort_value(const site& s, const std::string& sort);
bool ranks_before(const site& a, const site& b, const std::string& sort);

}  // namespace poolshim::stats_tool

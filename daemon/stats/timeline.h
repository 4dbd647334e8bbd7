// The stats file's memory-over-time series and size histograms as each report format shows them:
// JSON fragments (REPORT_SCHEMA.md), text lines (report, top: an ASCII sparkline), and HTML (an
// inline SVG chart and a table; no script, no outside load). Pure functions of the data read by
// stats_file (timeline(), kind_sizes(), a site's counters.sizes), so tests can feed them by hand.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "stats/stats_file.h"

namespace poolshim::stats_tool {

// "<=1K", "2K", "4K", ..., "4G", ">4G": the upper end of size bucket `b` (poolshim_stats_size_bucket).
std::string size_bucket_label(int b);
// The buckets of `c` with allocations, "4K:12 8K:3"; "" when none.
std::string sizes_text(const size_counts& c);
// `c` of a site's counters (the file's uint64_t[POOLSHIM_STATS_SIZE_BUCKETS]).
size_counts sizes_of(const poolshim_stats_site& c);

// JSON: [n0, ..., n23] (every bucket, in order).
std::string sizes_json(const size_counts& c);
// JSON: [{"kind":"device","sizes":[...]}, ...] for kinds with allocations.
std::string kind_sizes_json(const std::array<size_counts, POOLSHIM_STATS_KINDS>& k);
// JSON: {"interval_ns":N,"columns":[{"device":0,"kind":"device"},...],"samples":[[ns,total,c0,...],...]}.
std::string timeline_json(const timeline& t);

// The total live bytes as `width` characters of an ASCII sparkline (" .:-=+*#%@", the run's time
// split evenly, each character the most live in its span; the scale from 0 to the largest), "" without samples.
std::string sparkline(const timeline& t, std::size_t width);
// One text line for the report: "live over time (N samples, 10 ms apart): [sparkline] max X".
std::string timeline_text(const timeline& t, std::size_t width);

// HTML: a section with an inline SVG line chart (total and each column, against seconds since
// `start_ns`) and the size histograms per kind and for the given sites ("" when there is nothing).
std::string timeline_html(const timeline& t, std::uint64_t start_ns);
std::string sizes_html(const std::array<size_counts, POOLSHIM_STATS_KINDS>& kinds, const std::vector<site>& sites,
                       std::size_t top);

}  // namespace poolshim::stats_tool

// The stats file's memory-over-time series and size histograms as each report format shows them:
// JSON fragments (REPORT_SCHEMA.md), text lines (report, top: an ASCII sparkline), and HTML (an
// inline SVG chart and a table; no script, no outside load). Pure functions of the data read by
// stats_file (timeline(), kind_sizes(), a site's counters.sizes), so tests can feed them by hand.
//
// The call sites' lines come from the timeline's samples only (no event ring needed): each sample
// holds the live bytes of the up to 8 stacks the shim followed then, those with the largest own
// peaks it had found (include/poolshim/stats_file.h). A report's site (stacks merged by their
// frames) is known at a sample when the shim followed at least one of its stacks then, and is the
// sum over those; before the shim picked it (it became one of the 8 largest later), and after
// another took its place, it is unknown (null in JSON, a gap in the chart, blank in text).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
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

// The lines over time of the sites with the largest own peaks: each one's live bytes at each of
// the timeline's samples (none: the shim did not follow it then).
struct site_lines {
  std::vector<site> sites;                                     // largest own peak first
  std::vector<std::vector<std::optional<std::int64_t>>> live;  // live[i]: sites[i]'s, one per sample
};
// The lines of the `n` sites of `sites` with the largest own peaks (ties as --sort own-peak breaks
// them) that are known at one sample at least. A site's value at a sample adds up its stacks (id
// and merged) that the sample holds.
site_lines site_lines_of(const timeline& t, const std::vector<site>& sites, std::size_t n);
constexpr std::size_t k_site_lines = 5;  // the site lines the report and the page show

// JSON: {"interval_ns":N,"columns":[{"device":0,"kind":"device"},...],"samples":[[ns,total,c0,...],...],
// "sites":[{"id":N,"call_site":"...","own_peak":N,"live":[v or null, ...]},...]}.
std::string timeline_json(const timeline& t, const site_lines& lines = {});

// The total live bytes as `width` characters of an ASCII sparkline (" .:-=+*#%@", the run's time
// split evenly, each character the most live in its span; the scale from 0 to the largest), "" without samples.
std::string sparkline(const timeline& t, std::size_t width);
// One text line for the report: "live over time (N samples, 10 ms apart): [sparkline] max X".
std::string timeline_text(const timeline& t, std::size_t width);
// Each site line as "[sparkline] max X" (its sparkline on the same time axis as sparkline(t,
// width), on its own scale; blank where the site was not followed).
std::vector<std::string> site_sparklines(const timeline& t, const site_lines& lines, std::size_t width);
// timeline_text's line, then one per site line under it, its sparkline on the same time axis and
// in the same columns: "site #1: [sparkline] max X  label" (each on its own scale; a span before
// the site was followed is blank, and the line says from when it was). Empty without samples.
std::vector<std::string> timeline_lines(const timeline& t, const site_lines& lines, std::size_t width);

// HTML: a section with an inline SVG line chart (total, each column and each site line, against
// seconds since `start_ns`) ("" when there is nothing).
std::string timeline_html(const timeline& t, std::uint64_t start_ns, const site_lines& lines = {});
// HTML: a table of the size histograms per kind and of the first `top` sites (0: all), each site
// named as no other ("" when there is nothing).
std::string sizes_html(const std::array<size_counts, POOLSHIM_STATS_KINDS>& kinds, const std::vector<site>& sites,
                       std::size_t top);

}  // namespace poolshim::stats_tool

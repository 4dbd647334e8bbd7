// The bottom-up view of poolshim-stats (`report --bottom-up`, and the HTML page's bottom-up flame
// graph, which its script builds from the same stacks): call sites grouped by the function that
// allocates — the innermost frame shown, every line of it together — with the functions that called
// it below, then theirs, as heaptrack's "bottom-up" and memray's "--inverted" show them. The
// top-down view (flame graph, collapsed stacks) answers "where does the program spend memory"; this
// one answers "which allocating function holds it, reached from where".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "stats/stats_file.h"

namespace poolshim::stats_tool {

struct bottom_up_node {
  std::string name;                 // a root: the function; below: the caller with its call's file:line
  std::vector<std::string> places;  // a root's lines ("file.cpp:40"), each once, in order of weight
  std::int64_t value = 0;           // the sort key's figure, summed over the sites through this node
  std::uint64_t allocs = 0;
  std::size_t sites = 0;
  std::vector<bottom_up_node> callers;  // largest value first, then by name
};

// The tree of `sites` (frames as the report shows them) weighted by `sort` (peak, live, total,
// count; own-peak weighs by the sites' own peaks added up). Roots largest first.
std::vector<bottom_up_node> bottom_up(const std::vector<site>& sites, const std::string& sort,
                                      std::uint32_t depth_cap = 0);

// The text view: the first `top` roots (0: all), each with its callers below, two columns further
// in per level (up to 16 levels; names are never cut, as in the text report's stacks). `bytes`:
// values are bytes (else allocations). `clean` makes a name safe where the text goes (the
// terminal: tool_util.h's terminal_text).
std::string bottom_up_text(const std::vector<bottom_up_node>& roots, std::size_t top, bool bytes,
                           std::string (*clean)(const std::string&));

// The JSON view (REPORT_SCHEMA.md, `$.bottom_up`): {"weight":SORT,"functions":[{"function":...,
// "places":[...],"value":N,"allocs":N,"sites":N,"callers":[{"depth":1,"frame":...,"value":N,
// "allocs":N,"sites":N},...]},...]}, the first `top` roots (0: all), each one's callers flattened
// depth first (a caller's own callers follow it, one deeper) in the text view's order.
std::string bottom_up_json(const std::vector<bottom_up_node>& roots, std::size_t top, const std::string& weight);

}  // namespace poolshim::stats_tool

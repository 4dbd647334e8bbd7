// How a call site reads (site_text.h).
#include "stats/site_text.h"

#include <algorithm>
#include <numeric>

namespace poolshim::stats_tool {
namespace {

std::string frame_key(const frame& f) {
  if (!f.file.empty()) return f.function + "|" + f.file + "|" + std::to_string(f.line);
  return f.function + "|" + f.module + "+" + std::to_string(f.module.empty() ? f.pc : f.offset);
}

// The figures in the order a tie on the first is broken, per sort key.
std::vector<std::int64_t> sort_values(const site& s, const std::string& sort) {
  const auto& c = s.counters;
  const std::int64_t peak = s.at_process_peak, live = c.live_bytes, own = c.own_peak;
  const auto total = static_cast<std::int64_t>(c.bytes_allocated), count = static_cast<std::int64_t>(c.allocs);
  if (sort == "live") return {live, peak, own, total, count};
  if (sort == "total") return {total, count, own, peak, live};
  if (sort == "count") return {count, total, own, peak, live};
  if (sort == "own-peak") return {own, peak, live, total, count};
  if (sort == "temporary") return {static_cast<std::int64_t>(c.temporary), count, total, own, peak};
  return {peak, live, own, total, count};
}

}  // namespace

std::int64_t sort_value(const site& s, const std::string& sort) { return sort_values(s, sort).front(); }

bool ranks_before(const site& a, const site& b, const std::string& sort) {
  return sort_values(a, sort) > sort_values(b, sort);
}

std::vector<std::size_t> label_lengths(const std::vector<site>& sites, const std::vector<std::size_t>& from) {
  std::vector<std::vector<std::string>> keys(sites.size());
  for (std::size_t i = 0; i < sites.size(); ++i)
    for (std::size_t k = from[i]; k < sites[i].frames.size(); ++k) keys[i].push_back(frame_key(sites[i].frames[k]));
  // Sorted, a site's longest run shared with any other is the one shared with a neighbour.
  std::vector<std::size_t> order(sites.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return keys[a] < keys[b]; });
  const auto shared = [&](std::size_t a, std::size_t b) {
    std::size_t n = 0;
    while (n < keys[a].size() && n < keys[b].size() && keys[a][n] == keys[b][n]) ++n;
    return n;
  };
  std::vector<std::size_t> out(sites.size(), 0);
  for (std::size_t j = 0; j < order.size(); ++j) {
    const std::size_t i = order[j];
    std::size_t longest = 0;
    if (j > 0) longest = std::max(longest, shared(i, order[j - 1]));
    if (j + 1 < order.size()) longest = std::max(longest, shared(i, order[j + 1]));
    out[i] = std::min(longest + 1, keys[i].size());
  }
  return out;
}

std::string cut_text(const site& s, std::uint32_t depth_cap) {
  if (!s.cut) return {};
  std::string out = "[stack cut at " + std::to_string(depth_cap) + " frames";
  if (s.whole_depth == 0)
    return out + ": deeper than that; raise POOLSHIM_STATS_DEPTH (at most " + std::to_string(POOLSHIM_STATS_MAX_DEPTH) +
           ")]";
  out += ": " + std::string(s.whole_depth_more ? "more than " : "") + std::to_string(s.whole_depth) + " deep";
  if (s.whole_depth_more || s.whole_depth > POOLSHIM_STATS_MAX_DEPTH)
    return out + ", deeper than POOLSHIM_STATS_DEPTH can keep (" + std::to_string(POOLSHIM_STATS_MAX_DEPTH) + ")]";
  return out + ", POOLSHIM_STATS_DEPTH=" + std::to_string(s.whole_depth) + " keeps it whole]";
}

std::uint32_t depth_needed(const std::vector<site>& sites, bool* more) {
  std::uint32_t deepest = 0;
  bool deepest_more = false;
  for (const site& s : sites)
    if (s.cut && (s.whole_depth > deepest || (s.whole_depth == deepest && s.whole_depth_more))) {
      deepest = s.whole_depth;
      deepest_more = s.whole_depth_more;
    }
  if (more != nullptr) *more = deepest_more;
  return deepest;
}

}  // namespace poolshim::stats_tool

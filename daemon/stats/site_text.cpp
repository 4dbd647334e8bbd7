// How a call site reads (site_text.h).
#include "stats/site_text.h"

#include <algorithm>
#include <cstdio>
#include <map>
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

// frame::text (stats_file.h) lives here, with the other ways a site reads, so that the report
// library stands without the file reader (a test's hand-made page).
std::string frame::text() const {
  if (!function.empty()) {
    if (!file.empty()) return function + " (" + base_name(file) + ":" + std::to_string(line) + ")";
    // A symbol without line information (a library built without -g): the name alone would lose
    // which file it is in (two libraries may export one name) and where to point addr2line.
    if (!module.empty()) return function + " (" + base_name(module) + "+" + hex_text(offset) + ")";
    return function;
  }
  if (!module.empty()) return base_name(module) + "+" + hex_text(offset);
  return hex_text(pc);
}

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

bool in_cuda_or_shim(const frame& f) {
  const std::string m = base_name(f.module);
  return m.rfind("libcudart", 0) == 0 || m.rfind("libcuda.", 0) == 0 || m.rfind("libpoolshim", 0) == 0;
}

const frame* call_site_frame(const site& s) {
  for (const frame& f : s.frames)
    if (!in_cuda_or_shim(f) && !f.file.empty()) return &f;
  for (const frame& f : s.frames)
    if (!in_cuda_or_shim(f)) return &f;
  return s.frames.empty() ? nullptr : &s.frames.front();
}

std::vector<label_span> label_spans(const std::vector<site>& sites) {
  std::vector<std::size_t> from(sites.size(), 0);
  for (std::size_t i = 0; i < sites.size(); ++i)
    if (const frame* f = call_site_frame(sites[i])) from[i] = static_cast<std::size_t>(f - sites[i].frames.data());
  const std::vector<std::size_t> length = label_lengths(sites, from);
  std::vector<label_span> out(sites.size());
  // Labels still alike run to their stacks' ends: the sites differ inside their call sites.
  std::map<std::vector<std::string>, std::vector<std::size_t>> alike;
  for (std::size_t i = 0; i < sites.size(); ++i) {
    if (sites[i].frames.empty()) continue;
    out[i] = {from[i], std::max<std::size_t>(length[i], 1)};
    std::vector<std::string> k{sites[i].cut ? "#cut" : ""};
    for (std::size_t f = from[i]; f < from[i] + out[i].count; ++f) k.push_back(frame_key(sites[i].frames[f]));
    alike[k].push_back(i);
  }
  // The inner frame of site i that is j frames inside its call site (none past its innermost).
  const auto inner = [&](std::size_t i, std::size_t j) -> std::string {
    return j < from[i] ? frame_key(sites[i].frames[from[i] - 1 - j]) : "#none";
  };
  for (const auto& [key, group] : alike) {
    if (group.size() < 2) continue;
    for (std::size_t i : group) {
      // How far inside the call site it takes to tell i from each other site of the group.
      std::size_t depth = 0;
      for (std::size_t o : group) {
        if (o == i) continue;
        std::size_t j = 0;
        while (j < std::max(from[i], from[o]) && inner(i, j) == inner(o, j)) ++j;
        depth = std::max(depth, j);
      }
      if (depth < from[i]) out[i] = {from[i], 1, from[i] - 1 - depth};  // its callers tell nothing apart
    }
  }
  return out;
}

std::vector<std::string> site_labels(const std::vector<site>& sites) {
  const std::vector<label_span> spans = label_spans(sites);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < sites.size(); ++i) {
    const site& s = sites[i];
    if (spans[i].count == 0) {
      out.emplace_back(s.id == 0 ? "[untracked stacks]" : "[stack kept without frames]");
      continue;
    }
    std::string label;
    for (std::size_t f = spans[i].first; f < spans[i].first + spans[i].count; ++f)
      label += (label.empty() ? "" : " < ") + s.frames[f].text();
    if (s.cut && spans[i].first + spans[i].count >= s.frames.size()) label += " < [stack cut]";
    if (spans[i].via != label_span::none) label += " via " + s.frames[spans[i].via].text();
    out.push_back(std::move(label));
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

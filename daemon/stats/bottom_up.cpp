// The bottom-up view (bottom_up.h).
#include "stats/bottom_up.h"

#include <algorithm>
#include <map>

#include "stats/report_text.h"
#include "stats/site_text.h"

namespace poolshim::stats_tool {
namespace {

// What a root groups by: the function (or module+offset for an address without one).
std::string function_of(const frame& f) {
  if (!f.function.empty()) return f.function;
  return f.text();
}
std::string place_of(const frame& f) {
  if (f.file.empty()) return {};
  return base_name(f.file) + ":" + std::to_string(f.line);
}

// A node while it is built: callers by name, a root's places with their weight.
struct building {
  bottom_up_node node;
  std::map<std::string, building> callers;
  std::map<std::string, std::int64_t> places;
};

void add(building* b, std::int64_t value, std::uint64_t allocs) {
  b->node.value += value;
  b->node.allocs += allocs;
  b->node.sites += 1;
}

bottom_up_node finish(building&& b) {
  bottom_up_node out = std::move(b.node);
  for (auto& [name, c] : b.callers) out.callers.push_back(finish(std::move(c)));
  std::sort(out.callers.begin(), out.callers.end(), [](const bottom_up_node& x, const bottom_up_node& y) {
    return x.value != y.value ? x.value > y.value : x.name < y.name;
  });
  std::vector<std::pair<std::int64_t, std::string>> places;
  for (auto& [p, v] : b.places) places.emplace_back(v, p);
  std::stable_sort(places.begin(), places.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
  for (auto& [v, p] : places) out.places.push_back(p);
  return out;
}

std::string value_text(std::int64_t v, bool bytes) {
  if (bytes) return bytes_text(static_cast<long double>(v));
  return std::to_string(v);
}

void print(const bottom_up_node& n, std::size_t depth, bool bytes, std::string (*clean)(const std::string&),
           std::string* out) {
  // Two columns per level, up to a limit: a deep chain of callers must not run off a 100-column line.
  const std::size_t indent = 7 + 2 * std::min<std::size_t>(depth, 16);
  std::string line(indent, ' ');
  line += value_text(n.value, bytes);
  line.resize(std::max(line.size(), indent + 10), ' ');
  line += " " + clean(n.name);
  *out += line + "\n";
  for (const bottom_up_node& c : n.callers) print(c, depth + 1, bytes, clean, out);
}

void callers_json(const bottom_up_node& n, std::size_t depth, std::string* out) {
  for (const bottom_up_node& c : n.callers) {
    *out += std::string(out->back() == '[' ? "" : ",") + "{\"depth\":" + std::to_string(depth) +
            ",\"frame\":" + json_quote(c.name) + ",\"value\":" + std::to_string(c.value) +
            ",\"allocs\":" + std::to_string(c.allocs) + ",\"sites\":" + std::to_string(c.sites) + "}";
    callers_json(c, depth + 1, out);
  }
}

}  // namespace

std::string bottom_up_json(const std::vector<bottom_up_node>& roots, std::size_t top, const std::string& weight) {
  std::string out = "{\"weight\":" + json_quote(weight) + ",\"functions\":[";
  const std::size_t n = top == 0 ? roots.size() : std::min(top, roots.size());
  for (std::size_t i = 0; i < n; ++i) {
    const bottom_up_node& r = roots[i];
    out += std::string(i ? "," : "") + "{\"function\":" + json_quote(r.name) + ",\"places\":[";
    for (std::size_t k = 0; k < r.places.size(); ++k) out += (k ? "," : "") + json_quote(r.places[k]);
    out += "],\"value\":" + std::to_string(r.value) + ",\"allocs\":" + std::to_string(r.allocs) +
           ",\"sites\":" + std::to_string(r.sites) + ",\"callers\":[";
    callers_json(r, 1, &out);
    out += "]}";
  }
  return out + "]}";
}

std::vector<bottom_up_node> bottom_up(const std::vector<site>& sites, const std::string& sort,
                                      std::uint32_t depth_cap) {
  const std::string weight = sort == "own-peak" ? "own-peak" : sort;
  std::map<std::string, building> roots;
  for (const site& s : sites) {
    const std::int64_t v = sort_value(s, weight);
    const std::uint64_t allocs = s.counters.allocs;
    if (s.frames.empty()) {
      building& b = roots[s.id == 0 ? "[untracked stacks]" : "[stack kept without frames]"];
      b.node.name = s.id == 0 ? "[untracked stacks]" : "[stack kept without frames]";
      add(&b, v, allocs);
      continue;
    }
    const frame& inner = s.frames.front();
    building* b = &roots[function_of(inner)];
    b->node.name = function_of(inner);
    add(b, v, allocs);
    if (const std::string p = place_of(inner); !p.empty()) b->places[p] += v;
    for (std::size_t k = 1; k < s.frames.size(); ++k) {
      const std::string name = s.frames[k].text();
      b = &b->callers[name];
      b->node.name = name;
      add(b, v, allocs);
    }
    if (s.cut) {  // its outermost frames are missing: the chain ends by saying so
      const std::string name = cut_text(s, depth_cap);
      b = &b->callers[name];
      b->node.name = name;
      add(b, v, allocs);
    }
  }
  std::vector<bottom_up_node> out;
  for (auto& [name, b] : roots) out.push_back(finish(std::move(b)));
  std::sort(out.begin(), out.end(), [](const bottom_up_node& x, const bottom_up_node& y) {
    return x.value != y.value ? x.value > y.value : x.name < y.name;
  });
  return out;
}

std::string bottom_up_text(const std::vector<bottom_up_node>& roots, std::size_t top, bool bytes,
                           std::string (*clean)(const std::string&)) {
  std::string out;
  const std::size_t n = top == 0 ? roots.size() : std::min(top, roots.size());
  for (std::size_t i = 0; i < n; ++i) {
    const bottom_up_node& r = roots[i];
    std::string head = "  #" + std::to_string(i + 1);
    head.resize(std::max<std::size_t>(head.size(), 7), ' ');
    head += value_text(r.value, bytes);
    head.resize(std::max<std::size_t>(head.size(), 17), ' ');
    head += " " + clean(r.name);
    std::string where;
    for (std::size_t k = 0; k < r.places.size(); ++k) where += (k == 0 ? "" : ", ") + r.places[k];
    if (!where.empty()) head += " (" + clean(where) + ")";
    head += ", " + std::to_string(r.allocs) + (r.allocs == 1 ? " allocation" : " allocations");
    if (r.sites > 1) head += " from " + std::to_string(r.sites) + " call sites";
    out += head + "\n";
    for (const bottom_up_node& c : r.callers) print(c, 0, bytes, clean, &out);
  }
  return out;
}

}  // namespace poolshim::stats_tool

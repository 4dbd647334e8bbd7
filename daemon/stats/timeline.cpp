// Memory over time and size histograms in each report format (timeline.h).
#include "stats/timeline.h"

#include <algorithm>
#include <cstdio>

#include "stats/report_text.h"
#include "stats/site_text.h"

namespace poolshim::stats_tool {
namespace {

constexpr const char* k_kinds[] = {"device", "pinned", "managed", "async", "vmm"};
const char* kind_of(int k) { return k >= 0 && k < POOLSHIM_STATS_KINDS ? k_kinds[k] : "unknown"; }

std::string num(std::uint64_t v) { return std::to_string(v); }
std::string num(std::int64_t v) { return std::to_string(v); }

std::string fixed(double v, int digits) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

// `value(i)` (sample i's figure; none: unknown) as `width` characters over t's time span (see
// sparkline()); a span with no known figure is blank.
template <class Value>
std::string spark_of(const timeline& t, std::size_t width, Value value) {
  if (t.samples.empty() || width == 0) return "";
  static constexpr char k_levels[] = " .:-=+*#%@";
  constexpr int k_top = sizeof k_levels - 2;
  const std::uint64_t t0 = t.samples.front().ns, t1 = t.samples.back().ns;
  std::vector<std::int64_t> most(width, -1);
  std::vector<bool> sampled(width, false);
  for (std::size_t i = 0; i < t.samples.size(); ++i) {
    const std::uint64_t ns = t.samples[i].ns;
    const std::size_t at =
        t1 > t0 ? std::min<std::size_t>(width - 1, static_cast<std::size_t>(static_cast<long double>(ns - t0) /
                                                                            static_cast<long double>(t1 - t0) *
                                                                            static_cast<long double>(width)))
                : width - 1;
    sampled[at] = true;
    if (const std::optional<std::int64_t> v = value(i)) most[at] = std::max(most[at], std::max<std::int64_t>(*v, 0));
  }
  // A span no sample fell in holds what the one before it ended with.
  for (std::size_t i = 1; i < width; ++i)
    if (!sampled[i]) most[i] = most[i - 1];
  const std::int64_t top = *std::max_element(most.begin(), most.end());
  std::string out;
  for (std::int64_t v : most) {
    const int level =
        v <= 0 || top <= 0
            ? 0
            : std::max(1, static_cast<int>((static_cast<long double>(v) * k_top + static_cast<long double>(top) - 1) /
                                           static_cast<long double>(top)));
    out += k_levels[std::min(level, k_top)];
  }
  return out;
}

}  // namespace

std::string size_bucket_label(int b) {
  if (b <= 0) return "<=1K";
  if (b >= POOLSHIM_STATS_SIZE_BUCKETS - 1) return ">4G";
  const int shift = 10 + b;  // the bucket's upper end is 2^shift
  static constexpr const char* k_units[] = {"K", "M", "G"};
  return std::to_string(1ull << (shift % 10)) + k_units[shift / 10 - 1];
}

size_counts sizes_of(const poolshim_stats_site& c) {
  size_counts out{};
  std::copy(std::begin(c.sizes), std::end(c.sizes), out.begin());
  return out;
}

std::string sizes_text(const size_counts& c) {
  std::string out;
  for (int b = 0; b < POOLSHIM_STATS_SIZE_BUCKETS; ++b)
    if (c[static_cast<std::size_t>(b)] != 0)
      out += (out.empty() ? "" : " ") + size_bucket_label(b) + ":" + num(c[static_cast<std::size_t>(b)]);
  return out;
}

std::string sizes_json(const size_counts& c) {
  std::string out = "[";
  for (std::size_t b = 0; b < c.size(); ++b) out += (b ? "," : "") + num(c[b]);
  return out + "]";
}

std::string kind_sizes_json(const std::array<size_counts, POOLSHIM_STATS_KINDS>& k) {
  std::string out = "[";
  bool first = true;
  for (int i = 0; i < POOLSHIM_STATS_KINDS; ++i) {
    const size_counts& c = k[static_cast<std::size_t>(i)];
    if (std::all_of(c.begin(), c.end(), [](std::uint64_t v) { return v == 0; })) continue;
    out += std::string(first ? "" : ",") + "{\"kind\":\"" + kind_of(i) + "\",\"sizes\":" + sizes_json(c) + "}";
    first = false;
  }
  return out + "]";
}

std::string timeline_json(const timeline& t, const site_lines& lines) {
  std::string out = "{\"interval_ns\":" + num(t.interval_ns) + ",\"columns\":[";
  for (std::size_t i = 0; i < t.columns.size(); ++i)
    out += std::string(i ? "," : "") + "{\"device\":" + std::to_string(t.columns[i].device) + ",\"kind\":\"" +
           kind_of(t.columns[i].kind) + "\"}";
  out += "],\"samples\":[";
  for (std::size_t i = 0; i < t.samples.size(); ++i) {
    const timeline::sample& s = t.samples[i];
    out += std::string(i ? "," : "") + "[" + num(s.ns) + "," + num(s.total);
    for (std::int64_t v : s.live) out += "," + num(v);
    out += "]";
  }
  out += "],\"sites\":[";
  const std::vector<std::string> labels = site_labels(lines.sites);
  for (std::size_t i = 0; i < lines.sites.size(); ++i) {
    const site& s = lines.sites[i];
    out += std::string(i ? "," : "") + "{\"id\":" + std::to_string(s.id) + ",\"call_site\":" + json_quote(labels[i]) +
           ",\"own_peak\":" + num(s.counters.own_peak) + ",\"live\":[";
    for (std::size_t k = 0; k < lines.live[i].size(); ++k)
      out += std::string(k ? "," : "") + (lines.live[i][k] ? num(*lines.live[i][k]) : std::string("null"));
    out += "]}";
  }
  return out + "]}";
}

std::string sparkline(const timeline& t, std::size_t width) {
  return spark_of(t, width, [&](std::size_t i) { return std::optional<std::int64_t>(t.samples[i].total); });
}

site_lines site_lines_of(const timeline& t, const std::vector<site>& sites, std::size_t n) {
  std::vector<std::size_t> order(sites.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return ranks_before(sites[a], sites[b], "own-peak"); });
  site_lines out;
  for (std::size_t i : order) {
    if (out.sites.size() >= n) break;
    const site& s = sites[i];
    if (s.id == 0) continue;  // untracked stacks: no stack the shim could follow
    std::vector<std::optional<std::int64_t>> live;
    bool known = false;
    for (const timeline::sample& x : t.samples) {
      std::optional<std::int64_t> v;
      for (const timeline::site_live& f : x.sites)
        if (f.stack == s.id || std::find(s.merged.begin(), s.merged.end(), f.stack) != s.merged.end())
          v = v.value_or(0) + f.live;
      known = known || v.has_value();
      live.push_back(v);
    }
    if (!known) continue;
    out.sites.push_back(s);
    out.live.push_back(std::move(live));
  }
  return out;
}

std::string timeline_text(const timeline& t, std::size_t width) {
  if (t.samples.empty()) return "";
  std::int64_t top = 0;
  for (const timeline::sample& s : t.samples) top = std::max(top, s.total);
  const double span = static_cast<double>(t.samples.back().ns - t.samples.front().ns) / 1e9;
  return "live over " + fixed(span, 2) + " s (" + std::to_string(t.samples.size()) + " samples): [" +
         sparkline(t, width) + "] max " + bytes_text(static_cast<long double>(top));
}

std::vector<std::string> site_sparklines(const timeline& t, const site_lines& lines, std::size_t width) {
  std::vector<std::string> out;
  for (const std::vector<std::optional<std::int64_t>>& live : lines.live) {
    std::int64_t top = 0;
    for (const std::optional<std::int64_t>& v : live) top = std::max(top, v.value_or(0));
    out.push_back("[" + spark_of(t, width, [&](std::size_t k) { return live[k]; }) + "] max " +
                  bytes_text(static_cast<long double>(top)));
  }
  return out;
}

std::vector<std::string> timeline_lines(const timeline& t, const site_lines& lines, std::size_t width) {
  if (t.samples.empty()) return {};
  std::vector<std::string> out{timeline_text(t, width)};
  const std::size_t at = out[0].find('[');  // the sparklines start in one column
  const std::vector<std::string> labels = site_labels(lines.sites);
  const std::vector<std::string> sparks = site_sparklines(t, lines, width);
  const std::uint64_t t0 = t.samples.front().ns;
  const auto since = [&](std::size_t k) {
    return "+" + fixed(static_cast<double>(t.samples[k].ns - t0) / 1e9, 2) + " s";
  };
  for (std::size_t i = 0; i < lines.sites.size(); ++i) {
    const std::vector<std::optional<std::int64_t>>& live = lines.live[i];
    std::size_t first = live.size(), last = 0;
    for (std::size_t k = 0; k < live.size(); ++k)
      if (live[k]) first = std::min(first, k), last = k;
    std::string head = "site #" + std::to_string(i + 1) + ": ";
    head.insert(0, at > head.size() ? at - head.size() : 0, ' ');
    std::string line = head + sparks[i] + "  " + labels[i];
    if (first != 0 || last + 1 != live.size())
      line += " (followed " + (first != 0 ? "from " + since(first) : std::string()) +
              (first != 0 && last + 1 != live.size() ? " " : "") +
              (last + 1 != live.size() ? "until " + since(last) : std::string()) + ")";
    out.push_back(std::move(line));
  }
  return out;
}

std::string timeline_html(const timeline& t, std::uint64_t start_ns, const site_lines& lines) {
  if (t.samples.empty()) return "";
  constexpr double k_w = 900, k_h = 220, k_left = 70, k_bottom = 24, k_top = 8;
  const std::uint64_t t0 = std::min(start_ns != 0 ? start_ns : t.samples.front().ns, t.samples.front().ns);
  const double span = std::max(1e-9, static_cast<double>(t.samples.back().ns - t0) / 1e9);
  std::int64_t most = 1;
  for (const timeline::sample& s : t.samples) most = std::max(most, s.total);
  const auto x = [&](std::uint64_t ns) {
    return k_left + (k_w - k_left - 10) * (static_cast<double>(ns - t0) / 1e9) / span;
  };
  const auto y = [&](std::int64_t v) {
    return k_top + (k_h - k_top - k_bottom) *
                       (1.0 - static_cast<double>(std::max<std::int64_t>(v, 0)) / static_cast<double>(most));
  };
  static constexpr const char* k_colours[] = {"#1f6fb5", "#d9822b", "#2e9e5b", "#9c4dcc",
                                              "#c23b3b", "#7a7a2e", "#2aa4b0", "#b0527a"};
  // Steps, not slopes: between samples the figure held (it changes only at events).
  const auto path = [&](auto value) {
    std::string d;
    for (std::size_t i = 0; i < t.samples.size(); ++i) {
      const double px = x(t.samples[i].ns), py = y(value(t.samples[i]));
      d += i == 0 ? "M" + fixed(px, 1) + "," + fixed(py, 1) : " H" + fixed(px, 1) + " V" + fixed(py, 1);
    }
    return d;
  };
  // As wide as the page allows, up to its drawn size (the viewBox scales it).
  std::string svg =
      "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" style=\"width:100%;max-width:" + fixed(k_w, 0) +
      "px;height:auto\" viewBox=\"0 0 " + fixed(k_w, 0) + " " + fixed(k_h, 0) +
      "\" role=\"img\" aria-label=\"live bytes over time\">\n";
  for (int i = 0; i <= 4; ++i) {  // the scale: 0, 1/4, ... of the most live
    const std::int64_t v = most * i / 4;
    svg += "<line x1=\"" + fixed(k_left, 0) + "\" x2=\"" + fixed(k_w - 10, 0) + "\" y1=\"" + fixed(y(v), 1) +
           "\" y2=\"" + fixed(y(v), 1) + "\" stroke=\"#ddd\"/><text x=\"" + fixed(k_left - 4, 0) + "\" y=\"" +
           fixed(y(v) + 4, 1) + "\" text-anchor=\"end\" font-size=\"11\">" +
           html_escape(bytes_text(static_cast<long double>(v))) + "</text>\n";
  }
  for (int i = 0; i <= 4; ++i) {
    const double s = span * i / 4;
    const double px = k_left + (k_w - k_left - 10) * i / 4;
    const char* anchor = i == 0 ? "start" : i == 4 ? "end" : "middle";  // the ends stay inside the chart
    svg += "<text x=\"" + fixed(px, 1) + "\" y=\"" + fixed(k_h - 6, 0) + "\" text-anchor=\"" + anchor +
           "\" font-size=\"11\">+" + fixed(s, s < 10 ? 2 : 0) + " s</text>\n";
  }
  svg += "<path d=\"" + path([](const timeline::sample& s) { return s.total; }) +
         "\" fill=\"none\" stroke=\"#333\" stroke-width=\"2\"><title>all kinds</title></path>\n";
  std::string legend = "<span style=\"color:#333\">&#9644; all kinds</span>";
  if (t.columns.size() > 1)
    for (std::size_t c = 0; c < t.columns.size(); ++c) {
      const char* colour = k_colours[c % 8];
      const std::string name = "device " + std::to_string(t.columns[c].device) + " " + kind_of(t.columns[c].kind);
      svg += "<path d=\"" + path([c](const timeline::sample& s) { return c < s.live.size() ? s.live[c] : 0; }) +
             "\" fill=\"none\" stroke=\"" + colour + "\" stroke-width=\"1.2\"><title>" + html_escape(name) +
             "</title></path>\n";
      legend += " <span style=\"color:" + std::string(colour) + "\">&#9644; " + html_escape(name) + "</span>";
    }
  // The call sites' lines, dashed: drawn only where the shim followed the site (a gap elsewhere).
  static constexpr const char* k_site_colours[] = {"#c23b3b", "#2e9e5b", "#9c4dcc", "#d9822b",
                                                   "#2aa4b0", "#7a7a2e", "#b0527a", "#1f6fb5"};
  const std::vector<std::string> labels = site_labels(lines.sites);
  std::string site_legend;
  for (std::size_t i = 0; i < lines.sites.size(); ++i) {
    std::string d;
    bool open = false;
    for (std::size_t k = 0; k < lines.live[i].size() && k < t.samples.size(); ++k) {
      if (!lines.live[i][k]) {
        open = false;
        continue;
      }
      const double px = x(t.samples[k].ns), py = y(*lines.live[i][k]);
      d += open ? " H" + fixed(px, 1) + " V" + fixed(py, 1)
                : (d.empty() ? "M" : " M") + fixed(px, 1) + "," + fixed(py, 1);
      open = true;
    }
    const char* colour = k_site_colours[i % 8];
    const std::string name = "site #" + std::to_string(i + 1) + ": " + labels[i];
    svg += "<path class=\"site-line\" data-site-id=\"" + std::to_string(lines.sites[i].id) + "\" d=\"" + d +
           "\" fill=\"none\" stroke=\"" + colour +
           "\" stroke-width=\"1.5\" stroke-dasharray=\"5 3\" stroke-linecap=\"round\"><title>" + html_escape(name) +
           "</title></path>\n";
    site_legend += "<li style=\"color:" + std::string(colour) + "\">&#9476; " + html_escape(name) + "</li>";
  }
  svg += "</svg>\n";
  std::string out =
      "<section id=\"timeline\">\n<h2>Memory over time</h2>\n<p class=\"note\">Live bytes sampled every " +
      fixed(static_cast<double>(t.interval_ns) / 1e6, 0) + " ms or more (" + std::to_string(t.samples.size()) +
      " samples; a full series keeps the larger of each pair of neighbours).</p>\n" + svg + "<div>" + legend +
      "</div>\n";
  if (!lines.sites.empty())
    out += "<p class=\"note\">Dashed: the " + std::to_string(lines.sites.size()) + " call site" +
           (lines.sites.size() == 1 ? "" : "s") +
           " with the largest own peaks, as the shim sampled them (it follows the " +
           std::to_string(POOLSHIM_STATS_TIMELINE_SITES) +
           " stacks with the largest own peaks it has found; a gap: it did not follow the site then).</p>\n<ul "
           "class=\"site-lines\" "
           "style=\"list-style:none;padding-left:0\">" +
           site_legend + "</ul>\n";
  return out + "</section>\n";
}

std::string sizes_html(const std::array<size_counts, POOLSHIM_STATS_KINDS>& kinds, const std::vector<site>& sites,
                       std::size_t top) {
  int lo = POOLSHIM_STATS_SIZE_BUCKETS, hi = -1;  // the buckets any row uses
  const auto widen = [&](const size_counts& c) {
    for (int b = 0; b < POOLSHIM_STATS_SIZE_BUCKETS; ++b)
      if (c[static_cast<std::size_t>(b)] != 0) lo = std::min(lo, b), hi = std::max(hi, b);
  };
  for (const size_counts& c : kinds) widen(c);
  const std::size_t shown = top == 0 ? sites.size() : std::min(top, sites.size());
  for (std::size_t i = 0; i < shown; ++i) widen(sizes_of(sites[i].counters));
  if (hi < 0) return "";
  const auto row = [&](const std::string& name, const size_counts& c) {
    std::uint64_t most = 1;
    for (std::uint64_t v : c) most = std::max(most, v);
    std::string r = "<tr><td class=\"name\">" + html_escape(name) + "</td>";
    for (int b = lo; b <= hi; ++b) {
      const std::uint64_t v = c[static_cast<std::size_t>(b)];
      // The cell's shade: its share of the row's largest bucket.
      r += "<td style=\"background:rgba(31,111,181," +
           fixed(v == 0 ? 0.0 : 0.1 + 0.5 * static_cast<double>(v) / static_cast<double>(most), 2) + ")\">" +
           (v == 0 ? "" : num(v)) + "</td>";
    }
    return r + "</tr>\n";
  };
  std::string out = "<section id=\"sizes\">\n<h2>Allocation sizes</h2>\n<table class=\"grid\">\n<tr><th></th>";
  for (int b = lo; b <= hi; ++b) out += "<th>" + html_escape(size_bucket_label(b)) + "</th>";
  out += "</tr>\n";
  for (int k = 0; k < POOLSHIM_STATS_KINDS; ++k) {
    const size_counts& c = kinds[static_cast<std::size_t>(k)];
    if (std::any_of(c.begin(), c.end(), [](std::uint64_t v) { return v != 0; })) out += row(kind_of(k), c);
  }
  const std::vector<std::string> labels =
      site_labels(std::vector<site>(sites.begin(), sites.begin() + static_cast<std::ptrdiff_t>(shown)));
  for (std::size_t i = 0; i < shown; ++i)
    out += row("#" + std::to_string(i + 1) + " " + labels[i], sizes_of(sites[i].counters));
  return out +
         "</table>\n<p class=\"note\">Allocations by size, each column up to its power of two; rows: each kind, "
         "then the top call sites.</p>\n</section>\n";
}

}  // namespace poolshim::stats_tool

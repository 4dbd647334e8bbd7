// poolshim-stats top (top.h).
#include "stats/top.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <thread>

#include "stats/frame_filter.h"
#include "stats/site_text.h"
#include "stats/stats_file.h"
#include "stats/timeline.h"
#include "stats/tool_util.h"

namespace poolshim::stats_tool {
namespace {

using clock_type = std::chrono::steady_clock;

struct watched {
  std::unique_ptr<stats_file> file;
  bool sampled = false;
  std::uint64_t allocs = 0;  // at the previous refresh
  clock_type::time_point at;
  struct stack_frames {
    std::vector<frame> all, shown;  // every frame; those the filter shows
    std::uint32_t hidden = 0;
  };
  std::map<std::uint32_t, stack_frames> frames;  // symbolised and filtered once per stack id
};

std::uint64_t allocations(const stats_file& f, std::int64_t* live) {
  std::uint64_t n = 0;
  *live = 0;
  for (const kind_figures& k : f.kinds()) {
    n += k.counters.allocs;
    *live += k.counters.live_bytes;
  }
  return n;
}

[[gnu::format(printf, 1, 2)]] std::string line(const char* format, ...) {
  char b[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(b, sizeof b, format, args);
  va_end(args);
  return b;
}

// Columns of UTF-8 text, a code point each (names are mostly ASCII; wide CJK ones count one).
std::size_t columns(const std::string& s) {
  std::size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  return n;
}

// s in at most `cols` columns: cut, with "..." to say so, and never inside a UTF-8 sequence (a
// byte cut would leave an invalid one at the end of the line).
std::string fit(const std::string& s, std::size_t cols) {
  if (columns(s) <= cols) return s;
  const std::size_t keep = cols > 3 ? cols - 3 : 0;
  std::size_t n = 0, i = 0;
  for (; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xc0) != 0x80 && n++ == keep) break;
  }
  return s.substr(0, i) + std::string("...").substr(0, cols - keep);
}

// C++'s anonymous namespace says nothing on a narrow screen that the file and line do not.
std::string brief(std::string t) {
  for (std::size_t at; (at = t.find("(anonymous namespace)::")) != std::string::npos;) t.erase(at, 23);
  return cli::terminal_text(t);
}

// A function's name without its parameter list.
std::string bare_function(std::string fn) {
  if (!fn.empty() && fn.back() == ')') {  // the parameters: from the '(' that matches the last ')'
    int depth = 0;
    for (std::size_t i = fn.size(); i-- > 0;) {
      depth += fn[i] == ')' ? 1 : fn[i] == '(' ? -1 : 0;
      if (depth == 0) {
        fn.resize(i);
        break;
      }
    }
  }
  return fn;
}

// The sites as top names them, in `room` columns each where they fit: the frames of their label
// (site_text.h's label_spans: no two alike — two sites in one function by file:line, one helper
// called from two places by its caller), then one caller more when that fits. Where the whole
// names do not fit, shorter forms that keep each frame's function and line: no parameter lists,
// and a caller in the same file as its callee without the file ("helper (a.cpp:25) < one:28");
// then no file at all ("helper:25 < one:28"). Two sites that differ only inside their call site
// (--all-frames) end with the inner frame that tells them apart ("f:5 via cudaMallocManaged").
std::vector<std::string> site_names(const std::vector<site>& sites, std::size_t room) {
  const std::vector<label_span> spans = label_spans(sites);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < sites.size(); ++i) {
    const site& s = sites[i];
    if (spans[i].count == 0) {
      out.emplace_back(s.id == 0 ? "[untracked stacks]" : "[no frames]");
      continue;
    }
    // level 0: every frame's text; 1: shorter; 2: shortest.
    const auto name = [&](std::size_t count, int level) {
      std::string t, file;
      for (std::size_t k = spans[i].first; k < spans[i].first + count && k < s.frames.size(); ++k) {
        const frame& f = s.frames[k];
        const std::string fn = bare_function(f.function);
        const std::string base = base_name(f.file);
        std::string one;
        if (level == 0 || fn.empty() || base.empty())
          one = level == 0 || fn.empty() ? f.text() : fn;
        else if (level == 2 || (k != spans[i].first && base == file))
          one = fn + ":" + std::to_string(f.line);
        else
          one = fn + " (" + base + ":" + std::to_string(f.line) + ")";
        file = base;
        t += (t.empty() ? "" : " < ") + brief(one);
      }
      if (spans[i].via != label_span::none) {
        const frame& f = s.frames[spans[i].via];
        const std::string fn = bare_function(f.function);
        t += " via " + brief(level == 0 || fn.empty() ? f.text() : fn);
      }
      if (s.folded > 1) t += " [" + std::to_string(s.folded) + " stacks]";
      return t;
    };
    std::string t = name(spans[i].count, 0);
    for (int level = 1; level <= 2 && columns(t) > room; ++level) t = name(spans[i].count, level);
    const std::string more = name(spans[i].count + 1, 0);
    if (spans[i].first + spans[i].count < s.frames.size() && columns(more) <= room) t = more;
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace

int top_main(const std::vector<std::string>& args, const std::string& default_dir, const char* usage) {
  std::string dir = default_dir;
  double interval = 2.0;
  std::uint64_t iterations = 0, nsites = 3;
  bool symbols = true;
  frame_filter filter;
  auto bad = [](const std::string& what) {
    std::fprintf(stderr, "poolshim-stats top: %s (see --help)\n", what.c_str());
    return 2;
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string filter_error;
    if (const int took = filter.parse(args, i, &filter_error); took != 0) {
      if (took < 0) return bad(filter_error);
      i += static_cast<std::size_t>(took) - 1;
      continue;
    }
    if (a == "-h" || a == "--help") {
      std::fputs(usage, stdout);
      return 0;
    }
    if (a == "--no-symbols") {
      symbols = false;
      continue;
    }
    if (a != "--dir" && a != "--interval" && a != "--iterations" && a != "--sites")
      return bad((!a.empty() && a[0] == '-' ? "unknown option '" : "top takes no process: '") + a + "'");
    if (i + 1 >= args.size()) return bad(a + " needs a value");
    const std::string& v = args[++i];
    if (a == "--dir") {
      dir = v;
    } else if (a == "--interval") {
      char* end = nullptr;
      interval = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !std::isfinite(interval) || interval < 0.05 || interval > 86400)
        return bad("bad --interval '" + v + "' (seconds, 0.05 or more)");
    } else if (a == "--iterations") {
      if (!cli::parse_count(v, &iterations)) return bad("bad --iterations '" + v + "'");
    } else if (!cli::parse_count(v, &nsites)) {
      return bad("bad --sites '" + v + "'");
    }
  }

  const bool tty = isatty(STDOUT_FILENO) == 1;
  std::map<std::string, watched> seen;
  for (std::uint64_t it = 0; iterations == 0 || it < iterations; ++it) {
    if (it != 0) std::this_thread::sleep_for(std::chrono::duration<double>(interval));
    // A terminal's own width (asked each refresh: it may be resized), else 100 columns: output
    // to a file or pipe is read in a pager or a log as the text report is, not on a wide screen.
    winsize ws{};
    const bool sized = tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 1;
    const std::size_t cols = sized ? ws.ws_col : 100;
    std::vector<std::string> paths;
    try {
      paths = find_files(dir, nullptr);
    } catch (const file_error& e) {
      std::fprintf(stderr, "poolshim-stats top: %s\n", e.what());
      return 1;
    }
    const clock_type::time_point now = clock_type::now();
    std::map<std::string, watched> next;
    std::size_t ended = 0;
    for (const std::string& p : paths) {
      auto old = seen.find(p);
      watched w;
      if (old != seen.end()) {
        w = std::move(old->second);
        try {
          w.file->refresh();  // the figures as they are now (the file is read, not mapped)
        } catch (const file_error&) {
          continue;  // truncated, replaced or damaged since: left out, as one that cannot be opened
        }
      } else {
        try {
          w.file = std::make_unique<stats_file>(p, true);
        } catch (const file_error&) {
          continue;
        }
      }
      if (!w.file->running()) {
        ++ended;
        continue;
      }
      next.emplace(p, std::move(w));
    }
    seen = std::move(next);

    const time_t wall = time(nullptr);
    tm local{};
    localtime_r(&wall, &local);
    char stamp[16];
    std::strftime(stamp, sizeof stamp, "%H:%M:%S", &local);
    std::vector<std::string> screen;
    // The folder last: a long one is what a 100-column cut takes off, not the counts.
    std::string title = line("--- poolshim-stats top %s", stamp);
    if (iterations != 0)
      title +=
          line(" (%llu of %llu)", static_cast<unsigned long long>(it + 1), static_cast<unsigned long long>(iterations));
    screen.push_back(title + line(": %zu running, every %.2g s, in %s", seen.size(), interval, dir.c_str()));
    screen.push_back(line("  %-8s %11s %11s %10s  %s", "pid", "live", "peak", "allocs/s", "command"));
    // Biggest live first.
    std::vector<std::pair<std::int64_t, watched*>> order;
    for (auto& [p, w] : seen) {
      std::int64_t live = 0;
      (void)allocations(*w.file, &live);
      order.emplace_back(live, &w);
    }
    std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (auto& entry : order) {
      watched& w = *entry.second;
      std::int64_t live_now = 0;
      const std::uint64_t allocs = allocations(*w.file, &live_now);
      std::string rate = "-";
      if (w.sampled) {
        const double secs = std::chrono::duration<double>(now - w.at).count();
        rate = line("%.0f", secs > 0 ? static_cast<double>(allocs - std::min(allocs, w.allocs)) / secs : 0.0);
      }
      w.sampled = true;
      w.allocs = allocs;
      w.at = now;
      const auto& h = w.file->header();
      const std::string cmd = cli::brief_command(*w.file, 50);
      screen.push_back(line("  %-8d %11s %11s %10s  %s", h.pid, cli::bytes_text(live_now).c_str(),
                            cli::bytes_text(h.process_peak).c_str(), rate.c_str(), cmd.c_str()));
      // Every site, its stacks merged as the report merges them (tool_util.h's visible_sites): alike
      // in every frame, then in the frames shown. Stacks that differ only in hidden frames are one
      // row, never two that read alike. Frames are symbolised and filtered once per stack id.
      std::vector<site> raw = w.file->sites(false);
      bool missing = false;
      for (const site& s : raw) missing = missing || w.frames.find(s.id) == w.frames.end();
      if (missing)
        for (site& s : w.file->sites(symbols)) {
          watched::stack_frames& f = w.frames[s.id];
          std::size_t hidden = 0;
          f.shown = visible_frames(s.frames, filter, &hidden);
          f.hidden = static_cast<std::uint32_t>(hidden);
          f.all = std::move(s.frames);
        }
      for (site& s : raw) s.frames = w.frames[s.id].all;
      std::vector<site> sites = cli::merge_by_key(std::move(raw));
      for (site& s : sites) {
        const watched::stack_frames& f = w.frames[s.id];
        s.frames = f.shown;
        s.hidden = f.hidden;
        s.folded = 1;
      }
      sites = cli::merge_by_key(std::move(sites));
      // Live bytes over the run so far (the file's timeline), as wide as the screen allows, with
      // the lines of the sites with the largest own peaks under it.
      const timeline series = w.file->timeline();
      const site_lines lines =
          site_lines_of(series, sites, std::min<std::size_t>(nsites, POOLSHIM_STATS_TIMELINE_SITES));
      const std::size_t width = cols > 70 ? std::min<std::size_t>(cols - 60, 60) : 10;
      if (const std::string t = timeline_text(series, width); !t.empty()) {
        screen.push_back("    " + t);
        // Each site's name right-aligned before its sparkline (in the process line's columns).
        const std::size_t area = t.find('[') > 2 ? t.find('[') - 2 : 0;
        const std::vector<std::string> names = site_names(lines.sites, area);
        const std::vector<std::string> sparks = site_sparklines(series, lines, width);
        for (std::size_t i = 0; i < lines.sites.size(); ++i) {
          const std::string name = fit(names[i], area);
          screen.push_back("    " + std::string(area - columns(name), ' ') + name + "  " + sparks[i]);
        }
      }
      if (nsites == 0) continue;
      sites.erase(std::remove_if(sites.begin(), sites.end(), [](const site& s) { return s.counters.live_bytes <= 0; }),
                  sites.end());
      std::stable_sort(sites.begin(), sites.end(),
                       [](const site& a, const site& b) { return ranks_before(a, b, "live"); });
      if (sites.size() > nsites) sites.resize(nsites);
      std::vector<std::string> heads;
      std::size_t widest = 0;
      for (const site& s : sites) {
        const auto& c = s.counters;
        const std::string what = line("%s live in %lld (%llu allocs), own peak %s",
                                      cli::bytes_text(c.live_bytes).c_str(), static_cast<long long>(c.live_count),
                                      static_cast<unsigned long long>(c.allocs), cli::bytes_text(c.own_peak).c_str());
        heads.push_back(line("    %-44s ", what.c_str()));
        widest = std::max(widest, columns(heads.back()));
      }
      // The names in one column, after the widest figures.
      const std::vector<std::string> names = site_names(sites, cols > widest ? cols - widest : 0);
      for (std::size_t i = 0; i < sites.size(); ++i)
        screen.push_back(heads[i] + std::string(widest - columns(heads[i]), ' ') + names[i]);
    }
    if (seen.empty()) screen.push_back("  (no running process has a stats file here)");
    if (ended != 0) screen.push_back(line("  %zu exited or killed not shown (poolshim-stats node lists them)", ended));

    if (tty) {  // redraw: what fits the terminal
      std::fputs("\x1b[H\x1b[2J", stdout);
      const std::size_t rows = sized ? ws.ws_row - 1u : screen.size();
      for (std::size_t i = 0; i < screen.size() && i < rows; ++i) std::printf("%s\n", fit(screen[i], cols).c_str());
    } else {  // one refresh after the other, every line
      if (it != 0) std::fputs("\n", stdout);
      for (const std::string& l : screen) std::printf("%s\n", fit(l, cols).c_str());
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace poolshim::stats_tool

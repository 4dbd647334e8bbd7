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
  std::map<std::uint32_t, std::vector<frame>> frames;  // symbolised once per stack id
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

// The site as the frame a reader knows it by, and its caller when that fits in `room` columns.
std::string site_text(const std::vector<frame>& frames, std::size_t room) {
  site s;
  s.frames = frames;
  const frame* f = cli::caller_frame(s);
  if (f == nullptr) return "[no frames]";
  // A narrow screen: C++'s anonymous namespace says nothing the file and line do not.
  const auto brief = [](std::string t) {
    for (std::size_t at; (at = t.find("(anonymous namespace)::")) != std::string::npos;) t.erase(at, 23);
    return cli::terminal_text(t);
  };
  const std::string t = brief(f->text());
  const std::size_t i = static_cast<std::size_t>(f - s.frames.data());
  if (i + 1 >= s.frames.size()) return t;
  const std::string with_caller = t + " < " + brief(s.frames[i + 1].text());
  return columns(with_caller) <= room ? with_caller : t;
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
      // Live bytes over the run so far (the file's timeline), as wide as the screen allows.
      if (const std::string t =
              timeline_text(w.file->timeline(), cols > 70 ? std::min<std::size_t>(cols - 60, 60) : 10);
          !t.empty())
        screen.push_back("    " + t);
      if (nsites == 0) continue;
      std::vector<site> sites = w.file->sites(false);
      sites.erase(std::remove_if(sites.begin(), sites.end(), [](const site& s) { return s.counters.live_bytes <= 0; }),
                  sites.end());
      std::stable_sort(sites.begin(), sites.end(),
                       [](const site& a, const site& b) { return ranks_before(a, b, "live"); });
      if (sites.size() > nsites) sites.resize(nsites);
      bool missing = false;
      for (const site& s : sites) missing = missing || w.frames.find(s.id) == w.frames.end();
      if (missing)
        for (site& s : w.file->sites(symbols)) w.frames[s.id] = visible_frames(s.frames, filter);
      for (const site& s : sites) {
        const auto& c = s.counters;
        const std::string what = line("%s live in %lld (%llu allocs), own peak %s",
                                      cli::bytes_text(c.live_bytes).c_str(), static_cast<long long>(c.live_count),
                                      static_cast<unsigned long long>(c.allocs), cli::bytes_text(c.own_peak).c_str());
        const std::string head = line("    %-44s ", what.c_str());
        const std::size_t room = cols > columns(head) ? cols - columns(head) : 0;
        screen.push_back(head + (s.id == 0 ? "[untracked stacks]" : site_text(w.frames[s.id], room)));
      }
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

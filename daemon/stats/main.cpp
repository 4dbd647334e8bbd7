// poolshim-stats: reports the call-site statistics that POOLSHIM_STATS=native writes, for one
// process (running, exited or killed) — per device and kind, the top call sites by bytes at the
// process peak, live bytes, total bytes or count, and what was still allocated at exit — as text,
// JSON (schema version 5, documented in REPORT_SCHEMA.md), collapsed stacks for flamegraph.pl and
// speedscope, or a self-contained HTML page with a flame graph (html_report.h). Sites whose stack
// passes through a caching framework's allocator are labelled with it (labels.h).
#include <poolshim/version.h>  // generated (include/CMakeLists.txt)
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "poolshim/config.h"
#include "stats/bottom_up.h"
#include "stats/clean.h"
#include "stats/diff.h"
#include "stats/frame_filter.h"
#include "stats/html_report.h"
#include "stats/labels.h"
#include "stats/memory_viz.h"
#include "stats/node.h"
#include "stats/pool_hit_rate.h"
#include "stats/site_text.h"
#include "stats/stats_file.h"
#include "stats/timeline.h"
#include "stats/tool_util.h"
#include "stats/top.h"

namespace tool = poolshim::stats_tool;

namespace {

const char* k_usage = R"(Usage: poolshim-stats list [--dir DIR]
       poolshim-stats report [PID|FILE...] [--dir DIR] [--top N] [--sort KEY] [--format FMT]
                             [--bottom-up] [--all-frames] [--hide-module RE] [--hide-function RE]
                             [--no-symbols] [--output FILE]
       poolshim-stats report --diff [OLD NEW] ...   (the same as diff)
       poolshim-stats diff [OLD NEW] [--dir DIR] [--top N] [--sort KEY] [--format text|json]
                           [--all-frames] [--hide-module RE] [--hide-function RE] [--no-symbols]
       poolshim-stats node [--dir DIR] [--socket PATH] [--format text|json]
       poolshim-stats top [--dir DIR] [--interval S] [--iterations N] [--sites N] [--no-symbols]
                          [--all-frames] [--hide-module RE] [--hide-function RE]
       poolshim-stats clean [--dir DIR] [--older-than DURATION] [--dry-run]
       poolshim-stats replay [OPTIONS] TRACE...   (poolshim-replay: see poolshim-replay --help)

Reads the per-process files that programs run with POOLSHIM_STATS=native write (libpoolshim.so
preloaded), live or after the process ended (a clean exit, a crash or kill -9).

  list       one line per stats file of yours in DIR: pid, state, start, peak, command (DIR is
             read for your own files only; name another user's FILE to read it)
  report     one process: the newest file in DIR, or PID's, or latest or previous, or FILE;
             several named: one report each (json: one object per line; collapsed: each
             process's stacks under a pid_N root frame).
             Sites allocating through a framework's cache (PyTorch, CuPy, XLA/JAX, RMM pool)
             are labelled, with how to get per-tensor call sites instead
  diff       two runs, call site by call site (matched by function, file and line, not by address):
             the change in bytes at the peak, live, total and allocations, largest change first;
             sites of one run only show as new or gone. OLD and NEW are each a pid, a file,
             latest or previous (the newest file in DIR and the one before); default: previous
             and latest
  node       every process's file in DIR (running, exited, killed) one line each, the figures
             summed per device and kind, and the daemon's (pinned region, lent, free, clients,
             device memory lent) when a trusted poolshimd answers on its socket
  top        a live view: DIR's running processes (live, peak, allocations/s since the last
             refresh, live bytes over time with the lines of the sites with the largest own
             peaks) and each one's call sites holding the most live bytes, redrawn every interval
  clean      removes your files in DIR of processes that are no longer running (exited, crashed
             or killed): they stay in RAM (/dev/shm) until removed, about 17 MiB each. A running
             process's file and other users' files are never touched; prints each file removed
             or kept and the bytes freed
  replay     allocation traces (a stats file's event ring, POOLSHIM_STATS_EVENTS, or text traces)
             replayed against poolshim's pool core and three other policies: peak reserved against
             peak live, segments, hit rate, driver calls saved. Runs poolshim-replay, beside this program
Options:
  --dir DIR      where the files are (default: $POOLSHIM_STATS_DIR, else /dev/shm)
  --top N        call sites to show (default 10, collapsed all; 0: all)
  --sort KEY     peak (bytes held at the process peak, default), live, total (bytes allocated),
                 count, own-peak (report: the most each site held at once), temporary (report:
                 allocations freed before their thread allocated again; with --format collapsed
                 the flame graph's weight); a tie goes to the next figure (peak: live, own
                 peak, total, count)
  --format FMT   text (default), json (schema version 5: daemon/stats/REPORT_SCHEMA.md), html (a
                 self-contained page: summary, top sites, an interactive flame graph; use --output),
                 collapsed (one line per site: outermost;...;innermost BYTES, with BYTES the sort
                 key's value; every site unless --top is given; in names ';' becomes ':', a space
                 '_', a control character '?'), memory_viz (a PyTorch memory snapshot pickle for
                 https://pytorch.org/memory_viz, made from the event ring: run the program with
                 POOLSHIM_STATS_EVENTS=N; device memory only: the pool's segments with their
                 blocks, streams and failed allocations (oom); use --output)
  --bottom-up    report, text: call sites by the function that allocates, its callers below
                 (json: adds it as bottom_up; html: the page opens on its bottom-up flame graph)
  --all-frames   show every frame. By default the CUDA runtime's and driver's frames (libcudart,
                 libcuda, a static cudart's cuda* functions), libc's start (_start,
                 __libc_start_main, start_thread) and, in stacks with Python frames, the
                 interpreter's and ctypes/libffi's are hidden, and sites whose shown frames are
                 the same are folded into one (the report says how many stacks each folds)
  --hide-module RE    also hide frames whose module path matches RE (ECMAScript regex, searched)
  --hide-function RE  also hide frames whose function matches RE (each may be given again)
  --output FILE  report: write to FILE instead of stdout
  --socket PATH  node: the daemon's socket (default: $POOLSHIM_SOCKET, else the standard places);
                 when no trusted daemon answers, node says so in one line
  --interval S   top: seconds between refreshes (default 2)
  --iterations N top: refresh N times, then exit (default 0: until interrupted); the screen is
                 cleared only when stdout is a terminal (lines fit its width; else 100 columns)
  --sites N      top: call sites shown per process, and site lines over time (default 3)
  --no-symbols   show module+offset instead of function and line (no libdw)
  --older-than D clean: only files of processes that ended at least D ago (a number and a unit:
                 s, m, h, d or w, e.g. 30m, 12h, 7d; a killed process by its start time)
  --dry-run      clean: print what would be removed, remove nothing
  -h, --help     this text
  --version      the version
Exit status: 0, 1 when no file was found or a file is not readable, 2 for bad usage.
)";

// The options that take a value: "--name=value" is read as "--name value" (the form many tools
// accept) for these; any other option given a value that way is a usage error.
constexpr const char* k_valued_options[] = {"--dir",        "--top",        "--sort",        "--format",
                                            "--output",     "--socket",     "--interval",    "--sites",
                                            "--iterations", "--older-than", "--hide-module", "--hide-function"};

// The options each command takes, for its own --help (the rest of k_usage is other commands').
struct command_options {
  const char* command;
  std::vector<std::string> options;
};
const command_options k_command_options[] = {
    {"list", {"--dir"}},
    {"report",
     {"--dir", "--top", "--sort", "--format", "--output", "--bottom-up", "--all-frames", "--hide-module",
      "--hide-function", "--no-symbols"}},
    {"diff",
     {"--dir", "--top", "--sort", "--format", "--all-frames", "--hide-module", "--hide-function", "--no-symbols"}},
    {"node", {"--dir", "--socket", "--format"}},
    {"top",
     {"--dir", "--interval", "--iterations", "--sites", "--all-frames", "--hide-module", "--hide-function",
      "--no-symbols"}},
    {"clean", {"--dir", "--older-than", "--dry-run"}},
};

// `poolshim-stats CMD --help`: k_usage cut to CMD — its usage lines, its paragraph and its options
// (each with its continuation lines) — so that the one text stays the one source of the help.
std::string command_help(const std::string& cmd) {
  const command_options* opts = nullptr;
  for (const command_options& c : k_command_options)
    if (cmd == c.command) opts = &c;
  if (opts == nullptr) return k_usage;
  std::vector<std::string> lines;
  for (const char* p = k_usage; *p != '\0';) {
    const char* end = std::strchr(p, '\n');
    if (end == nullptr) end = p + std::strlen(p);
    lines.emplace_back(p, end);
    p = *end == '\n' ? end + 1 : end;
  }
  std::string usage, about, options;
  enum { none, usage_part, about_part, option_part } keep = none;
  bool in_options = false;
  for (const std::string& l : lines) {
    const bool continued = l.size() > 4 && l.compare(0, 4, "    ") == 0;  // a continuation line
    if (l.rfind("Options:", 0) == 0) {
      in_options = true;
      keep = none;
      continue;
    }
    if (l.rfind("Exit status:", 0) == 0) break;
    if (l.rfind("Usage: ", 0) == 0 || l.rfind("       poolshim-stats ", 0) == 0) {
      const std::size_t at = l.find("poolshim-stats ") + 15;
      const bool mine = l.compare(at, cmd.size() + 1, cmd + " ") == 0 || l.substr(at) == cmd;
      keep = mine ? usage_part : none;
      if (mine) usage += (usage.empty() ? "Usage: " : "       ") + l.substr(at - 15) + "\n";
      continue;
    }
    if (continued && keep != none) {
      (keep == usage_part ? usage : keep == about_part ? about : options) += l + "\n";
      continue;
    }
    keep = none;
    if (!in_options && l.rfind("  " + cmd + " ", 0) == 0) {
      keep = about_part;
      about += l + "\n";
    } else if (in_options) {
      const std::size_t start = l.find_first_not_of(' ');
      const std::string name = start == std::string::npos ? "" : l.substr(start, l.find(' ', start) - start);
      if (name == "-h," || std::find(opts->options.begin(), opts->options.end(), name) != opts->options.end()) {
        keep = option_part;
        options += l + "\n";
      }
    }
  }
  return usage + "\n" + about + "Options:\n" + options;
}

[[noreturn]] void usage_error(const std::string& what) {
  std::fprintf(stderr, "poolshim-stats: %s (see --help)\n", what.c_str());
  std::exit(2);
}

std::string bytes_text(long double b) { return tool::cli::bytes_text(b); }
std::string when(std::uint64_t ns) { return tool::cli::when_text(ns); }

std::string state(const tool::stats_file& f) { return tool::cli::state_of(f); }

std::string json_string(const std::string& s) { return tool::cli::json_quote(s); }

// Text from a file or a folder, for the terminal (tool_util.h).
std::string term(const std::string& s) { return tool::cli::terminal_text(s); }

std::int64_t key_of(const tool::site& s, const std::string& sort) { return tool::sort_value(s, sort); }

// A frame's name in a collapsed-stacks line, whose format has ';' between frames, ' ' before the
// figure and a newline after it: a name with any of them (or a tab, which tools split on too) would
// break the line or make up frames. Python names and file names can hold any character.
std::string collapsed_name(std::string t) {
  for (char& c : t) {
    const auto u = static_cast<unsigned char>(c);
    if (c == ';')
      c = ':';
    else if (c == ' ')
      c = '_';
    else if (u < 0x20 || u == 0x7f)
      c = '?';
  }
  return t;
}

// `report` with no process named, when DIR holds files of several: which one it picked (the newest)
// and what else is there, on stderr (the report itself may be JSON or a page), so that nobody reads
// another run's figures for the one they meant.
void note_other_files(const tool::stats_file& picked, const std::string& dir) {
  std::vector<std::string> others;
  for (const std::string& p : tool::find_files(dir, nullptr)) {
    if (p == picked.path()) continue;
    try {
      const tool::stats_file f(p, true, tool::stats_file::part::header_only);
      others.push_back("pid " + std::to_string(f.header().pid) + " (" + state(f) + ", started " +
                       when(f.header().start_ns) + ", " + tool::cli::brief_command(f, 40) + ")");
    } catch (const tool::file_error&) {  // removed since: not there any more
    }
  }
  if (others.empty()) return;
  std::fprintf(stderr, "poolshim-stats: reporting pid %d (%s, started %s, %s), the newest of %zu processes in %s\n",
               picked.header().pid, state(picked).c_str(), when(picked.header().start_ns).c_str(),
               tool::cli::brief_command(picked, 40).c_str(), others.size() + 1, term(dir).c_str());
  const std::size_t shown = std::min<std::size_t>(others.size(), 5);
  for (std::size_t i = 0; i < shown; ++i) std::fprintf(stderr, "  also: %s\n", term(others[i]).c_str());
  if (others.size() > shown) std::fprintf(stderr, "  and %zu more\n", others.size() - shown);
  std::fprintf(stderr, "  (report PID names one; poolshim-stats list shows them all)\n");
}

// What report shows of each stack: the frame filter (--all-frames, --hide-*) and the view.
struct view_options {
  tool::frame_filter filter;
  bool bottom_up = false;
};

// `root`: for collapsed stacks of several processes, the outermost frame naming the process ("" for
// one process).
int report(const tool::stats_file& f, std::size_t top, const std::string& sort, const std::string& format, bool symbols,
           const view_options& view, const std::string& root = "") {
  const poolshim_stats_header& h = f.header();
  // Stacks that differ only in return addresses the source does not tell apart (an unrolled loop,
  // two calls on one line) are one call site to the reader: merged by their symbolised frames,
  // keyed as diff keys them (tool_util.h's site_key), so report and diff count sites alike; then
  // cut to the frames shown (the runtime's and libc's hidden) and merged where those are the same.
  std::vector<tool::site> sites = tool::cli::visible_sites(f.sites(symbols), view.filter);
  std::stable_sort(sites.begin(), sites.end(),
                   [&](const tool::site& a, const tool::site& b) { return tool::ranks_before(a, b, sort); });
  std::size_t hidden_frames = 0, folded = 0;
  for (const tool::site& s : sites) {
    hidden_frames += s.hidden;
    folded += s.folded > 1;
  }
  if (format == "html") {
    tool::html_input in = tool::html_input_of(f, std::move(sites), top, sort);
    in.bottom_up = view.bottom_up;
    in.frames_hidden = hidden_frames != 0;
    if (tool::write_html(stdout, in)) return 0;
    std::fprintf(stderr, "poolshim-stats: writing the HTML report failed: %s\n", std::strerror(errno));
    return 1;
  }
  // Of every site, not only those shown: the depth that would keep them all whole.
  bool needed_more = false;
  const std::uint32_t needed = tool::depth_needed(sites, &needed_more);
  const std::size_t cut =
      static_cast<std::size_t>(std::count_if(sites.begin(), sites.end(), [](const tool::site& s) { return s.cut; }));
  // Of every site too: the allocating functions the bottom-up view ranks.
  const std::vector<tool::bottom_up_node> tree =
      view.bottom_up ? tool::bottom_up(sites, sort, h.depth_cap) : std::vector<tool::bottom_up_node>{};
  // Memory over time, with the lines of the sites with the largest own peaks (of every site too).
  const tool::timeline series = format == "collapsed" ? tool::timeline{} : f.timeline();
  const tool::site_lines lines = tool::site_lines_of(series, sites, tool::k_site_lines);
  if (top != 0 && sites.size() > top) sites.resize(top);
  const std::vector<tool::kind_figures> kinds = f.kinds();
  const std::vector<poolshim_stats_live> live = f.live();
  std::int64_t live_bytes = 0;
  for (const auto& l : live) live_bytes += static_cast<std::int64_t>(l.bytes);

  if (format == "collapsed") {
    // Frames are named by function, so that a flame graph merges a function's calls — except the
    // call site (the program's call of cudaMalloc), named with its file:line, and as many of its
    // callers as it takes for two sites never to read alike (two sites in one function, a helper
    // called from two places). Lines that would still be equal name every frame's place.
    std::vector<std::size_t> from(sites.size(), 0);
    for (std::size_t i = 0; i < sites.size(); ++i)
      if (const tool::frame* c = tool::cli::caller_frame(sites[i]))
        from[i] = static_cast<std::size_t>(c - sites[i].frames.data());
    const std::vector<std::size_t> located = tool::label_lengths(sites, from);
    const auto line_of = [&](std::size_t i, bool every_place) {
      const tool::site& s = sites[i];
      std::string line = root;
      // A cut stack's outermost frames are missing: it starts under a frame that says so, not as a
      // root of its own that looks like the program's entry.
      if (s.cut)
        line += (line.empty() ? "" : ";") + collapsed_name("[stack cut at " + std::to_string(h.depth_cap) + " frames]");
      for (std::size_t k = s.frames.size(); k-- > 0;) {
        const tool::frame& fr = s.frames[k];
        const bool place = every_place || (k >= from[i] && k < from[i] + std::max<std::size_t>(located[i], 1));
        line += (line.empty() ? "" : ";") +
                collapsed_name(fr.function.empty() || (place && (every_place || !fr.file.empty())) ? fr.text()
                                                                                                   : fr.function);
      }
      if (line == root) line += std::string(root.empty() ? "" : ";") + (s.id == 0 ? "[untracked]" : "[no frames]");
      return line;
    };
    std::vector<std::string> lines;
    std::map<std::string, std::size_t> seen;
    for (std::size_t i = 0; i < sites.size(); ++i) ++seen[lines.emplace_back(line_of(i, false))];
    for (std::size_t i = 0; i < sites.size(); ++i) {
      if (seen[lines[i]] > 1) lines[i] = line_of(i, true);
      std::printf("%s %lld\n", lines[i].c_str(), static_cast<long long>(key_of(sites[i], sort)));
    }
    return 0;
  }
  if (format == "json") {
    std::printf("{\"schema_version\":5,\"file\":%s,\"pid\":%d,\"uid\":%u,\"state\":\"%s\",\"exe\":%s,\"cmdline\":%s,",
                json_string(f.path()).c_str(), h.pid, h.uid, state(f).c_str(), json_string(f.exe()).c_str(),
                json_string(f.cmdline()).c_str());
    std::printf(
        "\"start_ns\":%llu,\"end_ns\":%llu,\"peak_bytes\":%lld,\"peak_ns\":%llu,\"live_bytes\":%lld,"
        "\"events\":%llu,\"untracked_frees\":%llu,\"stacks_dropped\":%s,\"stacks_off\":%s,\"live_table_full\":%s,"
        "\"depth_cap\":%u,\"depth_needed\":%s,\"all_frames\":%s,",
        static_cast<unsigned long long>(h.start_ns), static_cast<unsigned long long>(h.end_ns),
        static_cast<long long>(h.process_peak), static_cast<unsigned long long>(h.peak_ns),
        static_cast<long long>(live_bytes), static_cast<unsigned long long>(f.events()),
        static_cast<unsigned long long>(h.untracked_frees),
        (h.flags & POOLSHIM_STATS_FLAG_STACKS_DROPPED) ? "true" : "false",
        (h.flags & POOLSHIM_STATS_FLAG_STACKS_OFF) ? "true" : "false",
        (h.flags & POOLSHIM_STATS_FLAG_LIVE_TABLE_FULL) ? "true" : "false", h.depth_cap,
        needed != 0 ? std::to_string(needed).c_str() : "null", view.filter.builtin ? "false" : "true");
    std::printf("%s\"kinds\":[", tool::pool_hit_rate_json(h).c_str());
    for (std::size_t i = 0; i < kinds.size(); ++i) {
      const auto& k = kinds[i];
      std::printf(
          "%s{\"device\":%d,\"kind\":\"%s\",\"allocs\":%llu,\"frees\":%llu,\"bytes_allocated\":%llu,"
          "\"live_bytes\":%lld,\"peak_bytes\":%lld,\"peak_ns\":%llu}",
          i ? "," : "", k.device, tool::kind_name(k.kind), static_cast<unsigned long long>(k.counters.allocs),
          static_cast<unsigned long long>(k.counters.frees),
          static_cast<unsigned long long>(k.counters.bytes_allocated), static_cast<long long>(k.counters.live_bytes),
          static_cast<long long>(k.counters.peak_bytes), static_cast<unsigned long long>(k.counters.peak_ns));
    }
    std::printf("],\"kind_sizes\":%s,\"timeline\":%s,\"bottom_up\":%s,\"sites\":[",
                tool::kind_sizes_json(f.kind_sizes()).c_str(), tool::timeline_json(series, lines).c_str(),
                view.bottom_up ? tool::bottom_up_json(tree, top, sort).c_str() : "null");
    for (std::size_t i = 0; i < sites.size(); ++i) {
      const tool::site& s = sites[i];
      const auto& c = s.counters;
      std::printf(
          "%s{\"id\":%u,\"bytes_at_peak\":%lld,\"live_bytes\":%lld,\"live_count\":%lld,\"allocs\":%llu,"
          "\"frees\":%llu,\"bytes_allocated\":%llu,\"bytes_freed\":%llu,\"own_peak\":%lld,\"largest\":%llu,"
          "\"temporary\":%llu,\"sizes\":%s,\"framework\":%s,\"cut\":%s,\"whole_depth\":%s,\"hidden_frames\":%u,"
          "\"folded_stacks\":%u,\"frames\":[",
          i ? "," : "", s.id, static_cast<long long>(s.at_process_peak), static_cast<long long>(c.live_bytes),
          static_cast<long long>(c.live_count), static_cast<unsigned long long>(c.allocs),
          static_cast<unsigned long long>(c.frees), static_cast<unsigned long long>(c.bytes_allocated),
          static_cast<unsigned long long>(c.bytes_freed), static_cast<long long>(c.own_peak),
          static_cast<unsigned long long>(c.largest), static_cast<unsigned long long>(c.temporary),
          tool::sizes_json(tool::sizes_of(c)).c_str(), tool::framework_json(s).c_str(), s.cut ? "true" : "false",
          s.cut && s.whole_depth != 0 ? std::to_string(s.whole_depth).c_str() : "null", s.hidden, s.folded);
      for (std::size_t j = 0; j < s.frames.size(); ++j) {
        const tool::frame& fr = s.frames[j];
        std::printf("%s{\"pc\":%llu,\"function\":%s,\"file\":%s,\"line\":%d,\"module\":%s,\"offset\":%llu}",
                    j ? "," : "", static_cast<unsigned long long>(fr.pc), json_string(fr.function).c_str(),
                    json_string(fr.file).c_str(), fr.line, json_string(fr.module).c_str(),
                    static_cast<unsigned long long>(fr.offset));
      }
      std::printf("]}");
    }
    std::printf("],\"frameworks\":%s}\n", tool::frameworks_json(sites).c_str());
    return 0;
  }
  // Text, for 100 columns.
  std::printf("pid %d (%s) %s\n  %s\n", h.pid, state(f).c_str(), term(f.exe()).c_str(), term(f.cmdline()).c_str());
  std::printf("  started %s", when(h.start_ns).c_str());
  if (h.end_ns != 0) {
    // The clock may have been stepped back while it ran: no negative (wrapped) run time.
    const double secs = h.end_ns > h.start_ns ? static_cast<double>(h.end_ns - h.start_ns) / 1e9 : 0.0;
    std::uint64_t allocs = 0;
    for (const auto& k : kinds) allocs += k.counters.allocs;
    std::printf(", ran %.2f s, %.0f allocations/s", secs, secs > 0 ? static_cast<double>(allocs) / secs : 0.0);
  }
  std::printf("; peak %s at %s\n", bytes_text(static_cast<long double>(h.process_peak)).c_str(),
              when(h.peak_ns).c_str());
  std::printf("  %s: %s in %zu allocations%s\n",
              h.end_ns != 0 ? "still allocated at exit" : (f.running() ? "allocated now" : "allocated when it died"),
              bytes_text(static_cast<long double>(live_bytes)).c_str(), live.size(),
              h.end_ns != 0 && !live.empty() ? " (leaked)" : "");
  if (h.flags & POOLSHIM_STATS_FLAG_STACKS_DROPPED)
    std::printf("  note: some stacks were dropped (a table was full); they count under [untracked]\n");
  if (h.flags & POOLSHIM_STATS_FLAG_STACKS_OFF)
    std::printf(
        "  note: no call stacks: the stats folder had no room for the full file (POOLSHIM_STATS_DIR);\n"
        "        only the figures per device and kind were counted\n");
  if (h.flags & POOLSHIM_STATS_FLAG_LIVE_TABLE_FULL)
    std::printf(
        "  note: some allocations did not fit the live-pointer table: their frees count as untracked\n"
        "        and their bytes stay in the live figures\n");
  if (cut != 0) {
    std::printf("  note: %zu stack%s cut at the depth cap of %u frames (their outermost frames are missing);\n", cut,
                cut == 1 ? "" : "s", h.depth_cap);
    if (needed == 0)
      std::printf("        raise POOLSHIM_STATS_DEPTH (at most %d) to keep more\n", POOLSHIM_STATS_MAX_DEPTH);
    else if (needed_more || needed > POOLSHIM_STATS_MAX_DEPTH)
      std::printf("        the deepest has %s%u frames, more than POOLSHIM_STATS_DEPTH can keep (%d)\n",
                  needed_more ? "more than " : "", needed, POOLSHIM_STATS_MAX_DEPTH);
    else
      std::printf("        POOLSHIM_STATS_DEPTH=%u keeps %s whole\n", needed, cut == 1 ? "it" : "them");
  }
  // Per device and kind: allocations per second over the run so far, the peak and when (seconds
  // after the start), what is live (leaked, after an exit). A killed process recorded no end: its
  // run time is unknown, and one counted up to now would give a rate that falls the longer the
  // file is kept ("-", as the HTML report says).
  const bool killed = h.end_ns == 0 && !f.running();
  const std::uint64_t until = h.end_ns != 0 ? h.end_ns
                              : killed
                                  ? 0
                                  : static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                                   std::chrono::system_clock::now().time_since_epoch())
                                                                   .count());
  const double ran_s = until > h.start_ns ? static_cast<double>(until - h.start_ns) / 1e9 : 0.0;
  std::printf("\n  %-6s %-7s %9s %9s %9s %10s %10s %9s %10s\n", "device", "kind", "allocs", "frees", "allocs/s",
              "allocated", "peak", "peak at", h.end_ns != 0 ? "leaked" : "live");
  for (const auto& k : kinds) {
    char rate[32] = "-", at[32] = "-";
    if (ran_s > 0) std::snprintf(rate, sizeof rate, "%.0f", static_cast<double>(k.counters.allocs) / ran_s);
    if (k.counters.peak_ns >= h.start_ns && k.counters.peak_ns != 0)
      std::snprintf(at, sizeof at, "+%.2f s", static_cast<double>(k.counters.peak_ns - h.start_ns) / 1e9);
    std::printf("  %-6d %-7s %9llu %9llu %9s %10s %10s %9s %10s\n", k.device, tool::kind_name(k.kind),
                static_cast<unsigned long long>(k.counters.allocs), static_cast<unsigned long long>(k.counters.frees),
                rate, bytes_text(static_cast<long double>(k.counters.bytes_allocated)).c_str(),
                bytes_text(static_cast<long double>(k.counters.peak_bytes)).c_str(), at,
                bytes_text(static_cast<long double>(k.counters.live_bytes)).c_str());
  }
  std::fputs(tool::pool_hit_rate_text(h).c_str(), stdout);
  const std::array<tool::size_counts, POOLSHIM_STATS_KINDS> kind_sizes = f.kind_sizes();
  for (int k = 0; k < POOLSHIM_STATS_KINDS; ++k)
    if (const std::string t = tool::sizes_text(kind_sizes[static_cast<std::size_t>(k)]); !t.empty())
      std::printf("  %s sizes: %s\n", tool::kind_name(k), t.c_str());
  for (const std::string& l : tool::timeline_lines(series, lines, 40)) std::printf("  %s\n", term(l).c_str());
  if (hidden_frames != 0) {
    std::printf("  note: the CUDA runtime's and libc's frames (and the Python interpreter's) are hidden;\n");
    if (folded != 0)
      std::printf("        %zu site%s fold%s stacks that differ only in them; ", folded, folded == 1 ? "" : "s",
                  folded == 1 ? "s" : "");
    else
      std::printf("        ");
    std::printf("--all-frames shows every frame\n");
  }
  if (view.bottom_up) {
    const bool bytes = sort != "count";
    std::printf("\n  bottom-up: the %zu functions that allocate the most %s, their callers below\n",
                top == 0 ? tree.size() : std::min(top, tree.size()),
                sort == "live"       ? "live bytes"
                : sort == "total"    ? "bytes"
                : sort == "count"    ? "often"
                : sort == "own-peak" ? "bytes at their sites' own peaks"
                                     : "bytes held at the peak");
    std::fputs(tool::bottom_up_text(tree, top, bytes, term).c_str(), stdout);
    if (const std::string notes = tool::framework_notes_text(sites); !notes.empty()) std::printf("\n%s", notes.c_str());
    return 0;
  }
  std::printf("\n  top %zu call sites by %s\n", sites.size(),
              sort == "live"        ? "live bytes"
              : sort == "total"     ? "bytes allocated"
              : sort == "count"     ? "allocations"
              : sort == "own-peak"  ? "own peak (the most each held at once)"
              : sort == "temporary" ? "temporary allocations"
                                    : "bytes held at the peak");
  for (std::size_t i = 0; i < sites.size(); ++i) {
    const tool::site& s = sites[i];
    const auto& c = s.counters;
    std::printf("  #%-3zu at peak %s, own peak %s, live %s in %lld\n", i + 1,
                bytes_text(static_cast<long double>(s.at_process_peak)).c_str(),
                bytes_text(static_cast<long double>(c.own_peak)).c_str(),
                bytes_text(static_cast<long double>(c.live_bytes)).c_str(), static_cast<long long>(c.live_count));
    std::printf("       %llu allocs of %s total (largest %s)\n", static_cast<unsigned long long>(c.allocs),
                bytes_text(static_cast<long double>(c.bytes_allocated)).c_str(),
                bytes_text(static_cast<long double>(c.largest)).c_str());
    if (c.temporary != 0)
      std::printf("       %llu of them temporary (freed before the thread allocated anything else)\n",
                  static_cast<unsigned long long>(c.temporary));
    if (const std::string t = tool::sizes_text(tool::sizes_of(c)); !t.empty())
      std::printf("       sizes %s\n", t.c_str());
    if (const tool::framework* fw = tool::framework_of(s))
      std::printf("       [%s] the framework's cache growing (see the note at the end)\n", fw->name);
    if (s.frames.empty()) std::printf("       %s\n", s.id == 0 ? "[untracked stacks]" : "[stack kept without frames]");
    if (s.folded > 1)
      std::printf("       (%u stacks that differ only in hidden frames, folded: --all-frames parts them)\n", s.folded);
    for (const tool::frame& fr : s.frames) std::printf("       %s\n", term(fr.text()).c_str());
    if (s.cut) std::printf("       %s\n", tool::cut_text(s, h.depth_cap).c_str());
  }
  if (const std::string notes = tool::framework_notes_text(sites); !notes.empty()) std::printf("\n%s", notes.c_str());
  return 0;
}

// `replay`: poolshim-replay, installed beside this program, with the rest of the command line. It
// is a program of its own because it links the pool core (shim/pool), which this tool may not
// (scripts/check_layers.py).
int exec_replay(int argc, char** argv) {
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  std::string path = n > 0 ? std::string(self, static_cast<std::size_t>(n)) : std::string();
  path = path.substr(0, path.rfind('/') + 1) + "poolshim-replay";
  std::vector<char*> args{path.data()};
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  ::execv(path.c_str(), args.data());
  std::fprintf(stderr, "poolshim-stats: replay: cannot run %s: %s\n", path.c_str(), std::strerror(errno));
  return 1;
}

int run(int argc_given, char** argv_given) {
  if (argc_given < 2) usage_error("no command");
  if (std::string(argv_given[1]) == "replay") return exec_replay(argc_given, argv_given);
  // "--top=3" as "--top 3": the rest of the tool sees the split form only.
  std::vector<std::string> split;
  for (int i = 0; i < argc_given; ++i) {
    const std::string a = argv_given[i];
    const std::size_t eq = a.find('=');
    if (i < 2 || a.rfind("--", 0) != 0 || eq == std::string::npos) {
      split.push_back(a);
      continue;
    }
    const std::string name = a.substr(0, eq);
    if (std::find_if(std::begin(k_valued_options), std::end(k_valued_options),
                     [&](const char* o) { return name == o; }) == std::end(k_valued_options))
      usage_error("option '" + name + "' takes no value ('" + a + "')");
    split.push_back(name);
    split.push_back(a.substr(eq + 1));
  }
  std::vector<char*> split_argv;
  for (std::string& s : split) split_argv.push_back(s.data());
  const int argc = static_cast<int>(split_argv.size());
  char** argv = split_argv.data();
  std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help") {
    std::fputs(k_usage, stdout);
    return 0;
  }
  if (cmd == "--version") {
    std::printf("poolshim-stats %s\n", POOLSHIM_VERSION);
    return 0;
  }
  // A command's --help is that command's part of the text.
  const std::string help = command_help(cmd);
  // The folder the shim writes to: its own option row (POOLSHIM_STATS_DIR, default /dev/shm).
  std::string dir = poolshim::opt::read_one(&poolshim::config::stats_dir);
  if (cmd == "report" && std::find(argv + 2, argv + argc, std::string("--diff")) != argv + argc) {
    // report --diff OLD NEW: the diff command
    std::vector<std::string> rest;
    for (int i = 2; i < argc; ++i)
      if (std::string(argv[i]) != "--diff") rest.emplace_back(argv[i]);
    return tool::diff_main(rest, dir, command_help("diff").c_str());
  }
  if (cmd == "diff" || cmd == "node" || cmd == "top" || cmd == "clean") {  // each parses its own options
    const std::vector<std::string> rest(argv + 2, argv + argc);
    if (cmd == "diff") return tool::diff_main(rest, dir, help.c_str());
    if (cmd == "node") return tool::node_main(rest, dir, help.c_str());
    if (cmd == "clean") return tool::clean_main(rest, dir, help.c_str());
    return tool::top_main(rest, dir, help.c_str());
  }
  std::string output;
  std::vector<std::string> which;  // processes named (none: the newest)
  std::string sort = "peak", format = "text";
  std::size_t top = 10;
  bool top_given = false;
  bool symbols = true;
  view_options view;
  const std::vector<std::string> args(argv, argv + argc);
  std::string report_option;  // the first option only report takes (list takes --dir alone)
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    std::string filter_error;
    if (const int took = view.filter.parse(args, static_cast<std::size_t>(i), &filter_error); took != 0) {
      if (took < 0) usage_error(filter_error);
      if (report_option.empty()) report_option = a;
      i += took - 1;
      continue;
    }
    if (report_option.empty() && a != "--dir" && !a.empty() && a[0] == '-') report_option = a;
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::fputs(help.c_str(), stdout);
      return 0;
    }
    if (a == "--dir")
      dir = value();
    else if (a == "--top") {
      const std::string v = value();
      std::uint64_t n = 0;
      if (!tool::cli::parse_count(v, &n)) usage_error("bad --top '" + v + "' (a count: 0 or more)");
      top = static_cast<std::size_t>(n);
      top_given = true;
    } else if (a == "--sort") {
      sort = value();
      if (sort != "peak" && sort != "live" && sort != "total" && sort != "count" && sort != "own-peak" &&
          sort != "temporary")
        usage_error("bad --sort '" + sort + "'");
    } else if (a == "--format") {
      format = value();
      if (format != "text" && format != "json" && format != "collapsed" && format != "memory_viz" && format != "html")
        usage_error("bad --format '" + format + "'");
    } else if (a == "--output")
      output = value();
    else if (a == "--no-symbols")
      symbols = false;
    else if (a == "--bottom-up")
      view.bottom_up = true;
    else if (!a.empty() && a[0] == '-')
      usage_error("unknown option '" + a + "'");
    else
      which.push_back(a);
  }
  try {
    if (cmd == "list") {
      // Said, not ignored: `list --format json` printing the table would pass for what was asked.
      if (!which.empty()) usage_error("list takes no process: '" + which.front() + "'");
      if (!report_option.empty()) usage_error("list takes --dir only, not " + report_option);
      std::vector<std::string> skipped;
      const auto files = tool::find_files(dir, &skipped);
      for (const std::string& s : skipped) std::fprintf(stderr, "poolshim-stats: skipped %s\n", term(s).c_str());
      if (files.empty()) {
        std::fprintf(stderr, "poolshim-stats: no stats files in %s (run a program with POOLSHIM_STATS=native)\n",
                     dir.c_str());
        return 1;
      }
      std::printf("%-8s %-8s %-19s %10s  %s\n", "pid", "state", "started", "peak", "command");
      for (const std::string& p : files) {
        try {
          tool::stats_file f(p, true);  // whole: a file with corrupt stacks is skipped here
          std::printf("%-8d %-8s %-19s %10s  %s\n", f.header().pid, state(f).c_str(), when(f.header().start_ns).c_str(),
                      bytes_text(static_cast<long double>(f.header().process_peak)).c_str(), term(f.cmdline()).c_str());
        } catch (const tool::file_error& e) {  // removed or replaced since it was found: the others still
          std::fflush(stdout);
          std::fprintf(stderr, "poolshim-stats: skipped %s\n", term(e.what()).c_str());
        }
      }
      return 0;
    }
    if (cmd != "report") usage_error("unknown command '" + cmd + "'");
    // A flame graph made from collapsed stacks is read as the whole picture (the HTML one uses
    // every site): cut to the text report's 10, it would leave sites out without a word.
    if (format == "collapsed" && !top_given) top = 0;
    if (which.size() > 1 && (format == "html" || format == "memory_viz"))
      usage_error("--format " + format + " shows one process (several: text, json or collapsed; all: node)");
    const bool newest = which.empty();
    if (newest) which.emplace_back();  // the newest
    // Every process named is opened first: a bad name fails before anything is written.
    std::vector<std::unique_ptr<tool::stats_file>> files;
    for (const std::string& w : which) {
      std::vector<std::string> notes;
      files.push_back(tool::cli::open_named(w, dir, &notes));  // FILE, PID, latest, previous, or the newest
      for (const std::string& n : notes) std::fprintf(stderr, "poolshim-stats: skipped %s\n", term(n).c_str());
    }
    if (newest) note_other_files(*files.front(), dir);
    if (view.bottom_up && format != "text" && format != "html" && format != "json")
      usage_error("--bottom-up is a view of the text and JSON reports and the HTML page, not of " + format);
    if (format == "memory_viz") return tool::write_memory_viz(*files.front(), symbols, view.filter, output);
    if (!output.empty() && output != "-" && std::freopen(output.c_str(), "w", stdout) == nullptr) {
      std::fprintf(stderr, "poolshim-stats: %s: %s\n", output.c_str(), std::strerror(errno));
      return 1;
    }
    // Several: text reports one after the other, JSON one object per line (JSON Lines), collapsed
    // stacks under a root frame per process.
    int status = 0;
    for (std::size_t i = 0; i < files.size(); ++i) {
      if (i != 0 && format == "text") std::printf("\n");
      std::string root;
      if (files.size() > 1 && format == "collapsed") {
        root = "pid_" + std::to_string(files[i]->header().pid);
        std::replace(root.begin(), root.end(), ';', ':');
      }
      status = std::max(status, report(*files[i], top, sort, format, symbols, view, root));
    }
    return status;
  } catch (const tool::file_error& e) {
    std::fprintf(stderr, "poolshim-stats: %s\n", term(e.what()).c_str());
    return 1;
  }
}

}  // namespace

// Out of memory anywhere (a file larger than this machine can report, whatever its checks let
// through): a message and status 1, not an uncaught exception's abort (status 134).
int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::bad_alloc&) {
    std::fflush(stdout);
    std::fprintf(stderr, "poolshim-stats: out of memory (a stats file too large, or damaged, to report)\n");
    return 1;
  }
}

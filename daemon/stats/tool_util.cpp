// Helpers of poolshim-stats' commands (tool_util.h).
#include "stats/tool_util.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <unordered_map>

#include "stats/report_text.h"
#include "stats/site_text.h"

namespace poolshim::stats_tool::cli {

std::string bytes_text(long double b) { return stats_tool::bytes_text(b); }

std::string signed_bytes_text(long double b) { return (b > 0 ? "+" : "") + bytes_text(b); }

std::string signed_count_text(long double n) {
  char out[40];
  std::snprintf(out, sizeof out, n > 0 ? "+%.0Lf" : "%.0Lf", n);
  return out;
}

std::string when_text(std::uint64_t ns) { return stats_tool::time_text(ns); }

std::string json_quote(const std::string& s) { return stats_tool::json_quote(s, false); }

std::string terminal_text(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  const auto escape = [&](unsigned char b) {
    char e[8];
    std::snprintf(e, sizeof e, "\\x%02x", b);
    out += e;
  };
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      if (b < 0x20 || b == 0x7f)
        escape(b);
      else
        out += static_cast<char>(b);
      ++i;
      continue;
    }
    const std::size_t len = (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    bool ok = len != 0 && i + len <= s.size();
    std::uint32_t c = len == 2 ? (b & 0x1f) : len == 3 ? (b & 0x0f) : (b & 0x07);
    for (std::size_t k = 1; ok && k < len; ++k) {
      const auto t = static_cast<unsigned char>(s[i + k]);
      ok = (t & 0xc0) == 0x80;
      c = (c << 6) | (t & 0x3f);
    }
    // Shortest form only, no surrogates, nothing past U+10FFFF, and no C1 control (U+0080-U+009F:
    // U+009B is a CSI to some terminals).
    ok = ok && !(len == 2 && c < 0xa0) && !(len == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) &&
         !(len == 4 && (c < 0x10000 || c > 0x10ffff));
    if (ok) {
      out.append(s, i, len);
      i += len;
    } else {
      escape(b);
      ++i;
    }
  }
  return out;
}

std::string state_of(const stats_file& f) {
  if (f.header().end_ns != 0) return "exited";
  return f.running() ? "running" : "killed";
}

std::string short_command(const stats_file& f) {
  std::string c = f.cmdline();
  if (c.empty()) c = f.exe();
  return c;
}

std::string brief_command(const stats_file& f, std::size_t width) {
  std::string c = terminal_text(short_command(f));  // a table's text: safe for the terminal
  const std::size_t space = c.find(' ');
  const std::size_t slash = c.rfind('/', space == std::string::npos ? c.size() : space);
  if (slash != std::string::npos) c = c.substr(slash + 1);
  if (width > 3 && c.size() > width) c = c.substr(0, width - 3) + "...";
  return c;
}

bool parse_count(const std::string& text, std::uint64_t* out) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos || text.size() > 18) return false;
  *out = std::strtoull(text.c_str(), nullptr, 10);
  return true;
}

std::unique_ptr<stats_file> open_named(const std::string& spec, const std::string& dir,
                                       std::vector<std::string>* notes) {
  if (spec.find('/') != std::string::npos || (spec.size() > 6 && spec.substr(spec.size() - 6) == ".stats"))
    return std::make_unique<stats_file>(spec);  // named by the user: anyone's file
  std::uint64_t pid = 0;
  const bool by_pid = parse_count(spec, &pid);
  if (!by_pid && !spec.empty() && spec != "latest" && spec != "previous")
    throw file_error("'" + spec + "' names no process: give a pid, a stats file's path, latest or previous");
  std::vector<std::string> skipped;
  const std::vector<std::string> files = find_files(dir, &skipped);  // newest first, the user's own
  // When none is found: say which of DIR's files could not be read and why (a newer poolshim's
  // file, a truncated or foreign one: "no stats file" alone would hide the reason), and whether
  // files of other users were left out (they are not read). For a pid, only the files named after
  // it (poolshim-UID-PID-START.stats) are that pid's.
  const auto others = [&]() -> std::string {
    std::size_t n = 0;
    std::vector<std::string> unreadable;
    const std::string pid_part = "-" + spec + "-";
    for (const std::string& s : skipped) {
      if (s.find("another user's file") != std::string::npos) {
        ++n;
        continue;
      }
      const std::size_t colon = s.find(": ");
      const std::string path = s.substr(0, colon);
      const std::string name = base_name(path);
      if (!by_pid || name.find(pid_part) != std::string::npos) unreadable.push_back(s);
    }
    std::string out;
    if (!unreadable.empty()) {
      out += "; not read: " + unreadable.front();
      if (unreadable.size() > 1)
        out += " (and " + std::to_string(unreadable.size() - 1) + " more: poolshim-stats list names them)";
    }
    if (n != 0)
      out += " (" + std::to_string(n) + " file" + (n == 1 ? "" : "s") +
             " of other users not read: name a file's path to read it)";
    return out;
  };
  const std::size_t want = spec == "previous" ? 1 : 0;  // the how-manyth of the files that open
  std::size_t opened = 0;
  const auto pid_of = [](const stats_file& f) {
    return f.header().pid > 0 ? static_cast<std::uint64_t>(static_cast<std::uint32_t>(f.header().pid)) : 0;
  };
  for (const std::string& p : files) {
    std::unique_ptr<stats_file> f;
    try {
      // Another pid's file is known by its header: only the one asked for is read whole.
      if (by_pid && pid_of(stats_file(p, true, stats_file::part::header_only)) != pid) continue;
      f = std::make_unique<stats_file>(p, true);
    } catch (const file_error& e) {  // removed or replaced since the folder was read, or corrupt
      if (notes != nullptr) notes->push_back(e.what());
      continue;
    }
    if (by_pid ? pid_of(*f) == pid && pid != 0 : opened++ == want) return f;
  }
  if (by_pid)
    throw file_error("no stats file of pid " + spec + " in " + dir + others() + " (poolshim-stats list --dir " + dir +
                     " shows the processes that have one)");
  if (spec.empty()) throw file_error("no stats file in " + dir + others());
  throw file_error("no " + std::string(want == 0 ? "" : "second ") + "stats file in " + dir + " for '" + spec + "' (" +
                   std::to_string(opened) + " found)" + others());
}

std::string site_key(const site& s) {
  if (s.id == 0) return "#untracked";
  if (s.frames.empty()) return "#" + std::to_string(s.id);
  std::string key;
  for (const frame& f : s.frames) {
    if (!f.function.empty()) {
      key += f.function + "|" + f.file + "|" + std::to_string(f.line);
    } else {
      key += base_name(f.module) + "+" + hex_text(f.module.empty() ? f.pc : f.offset);
    }
    key += '\n';
  }
  if (s.cut) key += "#cut\n";  // a cut stack is not the whole one that ends where it was cut
  return key;
}

std::vector<site> merge_by_key(std::vector<site> in) {
  std::vector<site> out;
  std::unordered_map<std::string, std::size_t> index;
  index.reserve(in.size());
  for (site& s : in) {
    const std::string key = site_key(s);
    const auto it = index.find(key);
    if (it == index.end()) {
      index.emplace(key, out.size());
      out.push_back(std::move(s));
      continue;
    }
    site& m = out[it->second];
    auto& a = m.counters;
    const auto& b = s.counters;
    a.allocs += b.allocs;
    a.frees += b.frees;
    a.bytes_allocated += b.bytes_allocated;
    a.bytes_freed += b.bytes_freed;
    a.largest = std::max(a.largest, b.largest);
    a.live_bytes += b.live_bytes;
    a.live_count += b.live_count;
    a.own_peak = std::max(a.own_peak, b.own_peak);
    a.temporary += b.temporary;
    for (int k = 0; k < POOLSHIM_STATS_SIZE_BUCKETS; ++k) a.sizes[k] += b.sizes[k];
    m.at_process_peak += s.at_process_peak;
    m.folded += s.folded;
    m.merged.push_back(s.id);
    m.merged.insert(m.merged.end(), s.merged.begin(), s.merged.end());
    m.hidden = std::max(m.hidden, s.hidden);
    if (s.whole_depth > m.whole_depth || (s.whole_depth == m.whole_depth && s.whole_depth_more)) {
      m.whole_depth = s.whole_depth;  // the same frames cut from stacks of several depths: the deepest
      m.whole_depth_more = s.whole_depth_more;
    }
  }
  return out;
}

std::vector<site> visible_sites(std::vector<site> raw, const frame_filter& filter) {
  std::vector<site> whole = merge_by_key(std::move(raw));
  for (site& s : whole) s.folded = 1;  // stacks alike but for return addresses are one site already
  if (!filter.active()) return whole;
  hide_frames(&whole, filter);
  return merge_by_key(std::move(whole));
}

const frame* caller_frame(const site& s) {
  for (const frame& f : s.frames)
    if (!in_cuda_or_shim(f)) return &f;
  return s.frames.empty() ? nullptr : &s.frames.front();
}

}  // namespace poolshim::stats_tool::cli

// poolshim-stats diff (diff.h).
#include "stats/diff.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>

#include "stats/stats_file.h"
#include "stats/tool_util.h"

namespace poolshim::stats_tool {
namespace {

struct figures {
  std::int64_t at_peak = 0, live = 0, total = 0, allocs = 0;
};

figures figures_of(const site* s) {
  figures f;
  if (s == nullptr) return f;
  f.at_peak = s->at_process_peak;
  f.live = s->counters.live_bytes;
  f.total = static_cast<std::int64_t>(s->counters.bytes_allocated);
  f.allocs = static_cast<std::int64_t>(s->counters.allocs);
  return f;
}

figures minus(const figures& a, const figures& b) {
  return {a.at_peak - b.at_peak, a.live - b.live, a.total - b.total, a.allocs - b.allocs};
}

std::int64_t key_of(const figures& f, const std::string& sort) {
  if (sort == "live") return f.live;
  if (sort == "total") return f.total;
  if (sort == "count") return f.allocs;
  return f.at_peak;
}

std::uint64_t magnitude(std::int64_t v) {
  return v < 0 ? static_cast<std::uint64_t>(-(v + 1)) + 1 : static_cast<std::uint64_t>(v);
}

struct entry {
  const site* old_site = nullptr;
  const site* new_site = nullptr;
  figures change;
  const char* status = "";
};

struct run {
  std::unique_ptr<stats_file> file;
  std::vector<site> sites;
  std::int64_t live_bytes = 0;
};

run load(std::unique_ptr<stats_file> file, bool symbols, const frame_filter& filter) {
  run r;
  r.file = std::move(file);
  r.sites = cli::visible_sites(r.file->sites(symbols), filter);  // matched by the frames the reports show
  for (const auto& l : r.file->live()) r.live_bytes += static_cast<std::int64_t>(l.bytes);
  return r;
}

std::string figures_json(const site* s) {
  if (s == nullptr) return "null";
  const figures f = figures_of(s);
  char b[256];
  std::snprintf(b, sizeof b, "{\"bytes_at_peak\":%lld,\"live_bytes\":%lld,\"bytes_allocated\":%lld,\"allocs\":%lld}",
                static_cast<long long>(f.at_peak), static_cast<long long>(f.live), static_cast<long long>(f.total),
                static_cast<long long>(f.allocs));
  return b;
}

std::string run_json(const run& r) {
  const auto& h = r.file->header();
  char b[160];
  std::snprintf(b, sizeof b, ",\"pid\":%d,\"peak_bytes\":%lld,\"live_bytes\":%lld,\"start_ns\":%llu,\"end_ns\":%llu}",
                h.pid, static_cast<long long>(h.process_peak), static_cast<long long>(r.live_bytes),
                static_cast<unsigned long long>(h.start_ns), static_cast<unsigned long long>(h.end_ns));
  return "{\"file\":" + cli::json_quote(r.file->path()) + ",\"state\":" + cli::json_quote(cli::state_of(*r.file)) +
         ",\"exe\":" + cli::json_quote(r.file->exe()) + ",\"cmdline\":" + cli::json_quote(r.file->cmdline()) + b;
}

// Per device and kind: what both runs have, old and new.
struct kind_pair {
  poolshim_stats_kind old_k{}, new_k{};
};

}  // namespace

int diff_main(const std::vector<std::string>& args, const std::string& default_dir, const char* usage) {
  std::string dir = default_dir, sort = "peak", format = "text";
  std::uint64_t top = 10;
  bool symbols = true;
  std::vector<std::string> named;
  frame_filter filter;
  auto bad = [](const std::string& what) {
    std::fprintf(stderr, "poolshim-stats diff: %s (see --help)\n", what.c_str());
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
    const bool has_value = i + 1 < args.size();
    if (a == "-h" || a == "--help") {
      std::fputs(usage, stdout);
      return 0;
    }
    if (a == "--dir" || a == "--top" || a == "--sort" || a == "--format") {
      if (!has_value) return bad(a + " needs a value");
      const std::string& v = args[++i];
      if (a == "--dir")
        dir = v;
      else if (a == "--top" && !cli::parse_count(v, &top))
        return bad("bad --top '" + v + "'");
      else if (a == "--sort") {
        sort = v;
        if (sort != "peak" && sort != "live" && sort != "total" && sort != "count")
          return bad("bad --sort '" + v + "'");
      } else if (a == "--format") {
        format = v;
        if (format != "text" && format != "json") return bad("bad --format '" + v + "' (diff writes text or json)");
      }
    } else if (a == "--no-symbols") {
      symbols = false;
    } else if (!a.empty() && a[0] == '-') {
      return bad("unknown option '" + a + "'");
    } else {
      named.push_back(a);
    }
  }
  if (named.size() == 1) return bad("diff compares two runs: give OLD and NEW, or neither (previous and latest)");
  if (named.size() > 2) return bad("more than two runs named");
  if (named.empty()) named = {"previous", "latest"};

  run older, newer;
  try {
    std::vector<std::string> notes;
    std::unique_ptr<stats_file> old_file = cli::open_named(named[0], dir, &notes);
    std::unique_ptr<stats_file> new_file = cli::open_named(named[1], dir, &notes);
    for (const std::string& n : notes)
      std::fprintf(stderr, "poolshim-stats diff: skipped %s\n", cli::terminal_text(n).c_str());
    older = load(std::move(old_file), symbols, filter);
    newer = load(std::move(new_file), symbols, filter);
  } catch (const file_error& e) {
    std::fprintf(stderr, "poolshim-stats diff: %s\n", cli::terminal_text(e.what()).c_str());
    return 1;
  }

  // Match the sites.
  std::map<std::string, entry> by_key;
  std::vector<std::string> order;  // first seen: new run's sites, then the gone ones
  for (const site& s : newer.sites) {
    const std::string k = cli::site_key(s);
    if (by_key.emplace(k, entry{}).second) order.push_back(k);
    by_key[k].new_site = &s;
  }
  for (const site& s : older.sites) {
    const std::string k = cli::site_key(s);
    if (by_key.emplace(k, entry{}).second) order.push_back(k);
    by_key[k].old_site = &s;
  }
  std::vector<entry> changed;
  std::size_t n_new = 0, n_gone = 0, n_changed = 0, n_same = 0;
  for (const std::string& k : order) {
    entry e = by_key[k];
    e.change = minus(figures_of(e.new_site), figures_of(e.old_site));
    if (e.old_site == nullptr) {
      e.status = "new";
      ++n_new;
    } else if (e.new_site == nullptr) {
      e.status = "gone";
      ++n_gone;
    } else if (e.change.at_peak != 0 || e.change.live != 0 || e.change.total != 0 || e.change.allocs != 0) {
      e.status = "changed";
      ++n_changed;
    } else {
      ++n_same;
      continue;
    }
    changed.push_back(e);
  }
  std::stable_sort(changed.begin(), changed.end(), [&](const entry& a, const entry& b) {
    const std::uint64_t ka = magnitude(key_of(a.change, sort)), kb = magnitude(key_of(b.change, sort));
    if (ka != kb) return ka > kb;
    if (magnitude(a.change.at_peak) != magnitude(b.change.at_peak))
      return magnitude(a.change.at_peak) > magnitude(b.change.at_peak);
    if (magnitude(a.change.total) != magnitude(b.change.total))
      return magnitude(a.change.total) > magnitude(b.change.total);
    return magnitude(a.change.allocs) > magnitude(b.change.allocs);
  });
  if (top != 0 && changed.size() > top) changed.resize(top);

  std::map<std::pair<int, int>, kind_pair> kinds;
  for (const kind_figures& k : older.file->kinds()) kinds[{k.device, k.kind}].old_k = k.counters;
  for (const kind_figures& k : newer.file->kinds()) kinds[{k.device, k.kind}].new_k = k.counters;

  const auto& oh = older.file->header();
  const auto& nh = newer.file->header();
  if (format == "json") {
    std::printf("{\"schema_version\":1,\"old\":%s,\"new\":%s,\"sort\":%s,", run_json(older).c_str(),
                run_json(newer).c_str(), cli::json_quote(sort).c_str());
    std::printf("\"counts\":{\"changed\":%zu,\"new\":%zu,\"gone\":%zu,\"unchanged\":%zu},\"kinds\":[", n_changed, n_new,
                n_gone, n_same);
    bool first = true;
    for (const auto& [dk, p] : kinds) {
      auto one = [](const poolshim_stats_kind& k) {
        char b[200];
        std::snprintf(b, sizeof b, "{\"allocs\":%llu,\"bytes_allocated\":%llu,\"peak_bytes\":%lld,\"live_bytes\":%lld}",
                      static_cast<unsigned long long>(k.allocs), static_cast<unsigned long long>(k.bytes_allocated),
                      static_cast<long long>(k.peak_bytes), static_cast<long long>(k.live_bytes));
        return std::string(b);
      };
      char c[200];
      std::snprintf(c, sizeof c, "{\"allocs\":%lld,\"bytes_allocated\":%lld,\"peak_bytes\":%lld,\"live_bytes\":%lld}",
                    static_cast<long long>(p.new_k.allocs) - static_cast<long long>(p.old_k.allocs),
                    static_cast<long long>(p.new_k.bytes_allocated) - static_cast<long long>(p.old_k.bytes_allocated),
                    static_cast<long long>(p.new_k.peak_bytes - p.old_k.peak_bytes),
                    static_cast<long long>(p.new_k.live_bytes - p.old_k.live_bytes));
      std::printf("%s{\"device\":%d,\"kind\":\"%s\",\"old\":%s,\"new\":%s,\"change\":%s}", first ? "" : ",", dk.first,
                  kind_name(dk.second), one(p.old_k).c_str(), one(p.new_k).c_str(), c);
      first = false;
    }
    std::printf("],\"sites\":[");
    for (std::size_t i = 0; i < changed.size(); ++i) {
      const entry& e = changed[i];
      const site& s = e.new_site != nullptr ? *e.new_site : *e.old_site;
      std::printf(
          "%s{\"status\":\"%s\",\"change\":{\"bytes_at_peak\":%lld,\"live_bytes\":%lld,\"bytes_allocated\":%lld,"
          "\"allocs\":%lld},\"old\":%s,\"new\":%s,\"frames\":[",
          i ? "," : "", e.status, static_cast<long long>(e.change.at_peak), static_cast<long long>(e.change.live),
          static_cast<long long>(e.change.total), static_cast<long long>(e.change.allocs),
          figures_json(e.old_site).c_str(), figures_json(e.new_site).c_str());
      for (std::size_t j = 0; j < s.frames.size(); ++j) {
        const frame& f = s.frames[j];
        std::printf("%s{\"function\":%s,\"file\":%s,\"line\":%d,\"module\":%s,\"offset\":%llu}", j ? "," : "",
                    cli::json_quote(f.function).c_str(), cli::json_quote(f.file).c_str(), f.line,
                    cli::json_quote(f.module).c_str(), static_cast<unsigned long long>(f.offset));
      }
      std::printf("]}");
    }
    std::printf("]}\n");
    return 0;
  }

  // Text, for 100 columns.
  std::printf("old: pid %d (%s) %s\n", oh.pid, cli::state_of(*older.file).c_str(),
              cli::terminal_text(cli::short_command(*older.file)).c_str());
  std::printf("new: pid %d (%s) %s\n", nh.pid, cli::state_of(*newer.file).c_str(),
              cli::terminal_text(cli::short_command(*newer.file)).c_str());
  if (older.file->exe() != newer.file->exe())  // each path on its own line: two do not fit 100 columns
    std::printf("  note: different programs (only sites with the same frames match):\n        old %s\n        new %s\n",
                cli::terminal_text(older.file->exe()).c_str(), cli::terminal_text(newer.file->exe()).c_str());
  std::printf("  peak %s -> %s (%s); live %s -> %s (%s)\n", cli::bytes_text(oh.process_peak).c_str(),
              cli::bytes_text(nh.process_peak).c_str(),
              cli::signed_bytes_text(nh.process_peak - oh.process_peak).c_str(),
              cli::bytes_text(older.live_bytes).c_str(), cli::bytes_text(newer.live_bytes).c_str(),
              cli::signed_bytes_text(newer.live_bytes - older.live_bytes).c_str());
  std::printf("  call sites: %zu changed, %zu new, %zu gone, %zu unchanged\n", n_changed, n_new, n_gone, n_same);
  std::printf("\n  %-6s %-8s %-18s %-24s %s\n", "device", "kind", "allocs", "allocated", "peak");
  for (const auto& [dk, p] : kinds) {
    char allocs[64];
    std::snprintf(
        allocs, sizeof allocs, "%llu -> %llu (%s)", static_cast<unsigned long long>(p.old_k.allocs),
        static_cast<unsigned long long>(p.new_k.allocs),
        cli::signed_count_text(static_cast<long double>(p.new_k.allocs) - static_cast<long double>(p.old_k.allocs))
            .c_str());
    const std::string allocated = cli::bytes_text(static_cast<long double>(p.old_k.bytes_allocated)) + " -> " +
                                  cli::bytes_text(static_cast<long double>(p.new_k.bytes_allocated));
    const std::string peak = cli::bytes_text(static_cast<long double>(p.old_k.peak_bytes)) + " -> " +
                             cli::bytes_text(static_cast<long double>(p.new_k.peak_bytes)) + " (" +
                             cli::signed_bytes_text(static_cast<long double>(p.new_k.peak_bytes - p.old_k.peak_bytes)) +
                             ")";
    std::printf("  %-6d %-8s %-18s %-24s %s\n", dk.first, kind_name(dk.second), allocs, allocated.c_str(),
                peak.c_str());
  }
  const char* what = sort == "live"    ? "live bytes"
                     : sort == "total" ? "bytes allocated"
                     : sort == "count" ? "allocations"
                                       : "bytes held at the peak";
  std::printf("\n  %zu call sites by change in %s\n", changed.size(), what);
  for (std::size_t i = 0; i < changed.size(); ++i) {
    const entry& e = changed[i];
    const figures o = figures_of(e.old_site), n = figures_of(e.new_site);
    // Two lines: the figures of one line reach 106 columns for sites of a few hundred KiB already.
    std::printf("  #%-3zu %-7s peak %s (%s -> %s)\n       live %s, total %s, allocs %s (%lld -> %lld)\n", i + 1,
                e.status, cli::signed_bytes_text(e.change.at_peak).c_str(), cli::bytes_text(o.at_peak).c_str(),
                cli::bytes_text(n.at_peak).c_str(), cli::signed_bytes_text(e.change.live).c_str(),
                cli::signed_bytes_text(e.change.total).c_str(),
                cli::signed_count_text(static_cast<long double>(e.change.allocs)).c_str(),
                static_cast<long long>(o.allocs), static_cast<long long>(n.allocs));
    const site& s = e.new_site != nullptr ? *e.new_site : *e.old_site;
    if (s.frames.empty()) std::printf("       %s\n", s.id == 0 ? "[untracked stacks]" : "[stack kept without frames]");
    for (const frame& f : s.frames) std::printf("       %s\n", cli::terminal_text(f.text()).c_str());
  }
  return 0;
}

}  // namespace poolshim::stats_tool

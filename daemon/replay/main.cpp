// poolshim-replay (also `poolshim-stats replay`): replays recorded or generated allocation traces
// against four policies — no caching, a first-fit region, a model of PyTorch's caching allocator
// and poolshim's own pool core under the shim's options — and prints peak reserved against peak
// live, segments, hit rate and driver calls saved, as text or JSON. --export turns a stats file's
// event ring into a text trace (tests/data/traces/README.md describes the format).
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "poolshim/options.h"
#include "replay/replay.h"
#include "replay/ring_trace.h"

namespace replay = poolshim::replay;

namespace {

const char* k_usage = R"(Usage: poolshim-replay [options] TRACE...
       poolshim-replay --export OUT [--device N] STATS_FILE

Replays allocation traces against four policies, each from a fresh start, and reports per trace
and policy: peak reserved (bytes held from the driver) against peak live (bytes the program had
allocated), segments (driver allocations), hit rate (allocations served without one) and driver
calls saved against no caching.

  none      every allocation and free is a driver call (reserved = live, rounded to the granule)
  region    one region grown at its end in chunks, first fit, free neighbours coalesce
  torch     PyTorch's CUDA caching allocator as documented: 512 B rounding, a small pool (<= 1 MiB,
            2 MiB segments) and a large pool (20 MiB segments for 1-10 MiB, 2 MiB rounding above),
            best fit, split limits, merging inside a segment only
  poolshim  poolshim's device pool (shim/pool) under the options below, one thread, device-sync frees

TRACE is a text trace (tests/data/traces/README.md), a stats file with an event ring
(POOLSHIM_STATS=native POOLSHIM_STATS_EVENTS=N: device memory of --device), or a folder (its *.trace
files, by name).
Options:
  --format text|json     (default text)
  --policies LIST        comma-separated, of none,region,torch,poolshim (default: all)
  --device N             the device a stats file's events are taken from (default 0)
  --small-limit SIZE     poolshim: POOLSHIM_SMALL_LIMIT (default 1M)
  --thread-cache SIZE    poolshim: POOLSHIM_THREAD_CACHE (default 4M; 0: no thread cache)
  --cache-limit SIZE     poolshim: POOLSHIM_DEVICE_CACHE_LIMIT, idle bytes kept (default 0: all)
  --segment-size SIZE    poolshim: its largest small segments (default 2M)
  --grow-segments 0|1    poolshim: 1: small segments start at 256 KiB and double with the small
                         bytes reserved, up to --segment-size (default 0: all --segment-size)
  --idle-percent N|off   poolshim: POOLSHIM_DEVICE_IDLE_PERCENT, before a new segment idle ones go
                         back until reserved <= (100 + N)% of the most in use (default off, as
                         the shim's default with local segments; 10: the footprint mode)
  --idle-against peak|now  poolshim: what the idle bound measures against: the most in use since
                         idle memory was last released (default, local segments) or the bytes in
                         use now (the shim's way with POOLSHIM_DEVICE_SOURCE=daemon, 5% there)
  --reuse-bits N         poolshim: a large request takes an idle block of any class up to 1/2^N
                         larger than its rounded size (default 2: a quarter)
  --class-bits N         poolshim: large requests round up to 2^N classes per power of two
                         (1 to 6, default 6)
  --device-limit SIZE    the device's memory for every policy (default 0: unlimited); a policy
                         that reaches it releases what it caches, as on a full GPU
  --granule SIZE         the driver's allocation granularity (default 512)
  --region-chunk SIZE    the region's growth step (default 2M)
  --export OUT           write the stats file's device events as a text trace to OUT (- : stdout)
Sizes take k, m, g (powers of 1024). Exit status: 0, 1 for an unreadable trace, 2 for bad usage.
)";

int usage_error(const std::string& why) {
  std::fprintf(stderr, "poolshim-replay: %s\n(poolshim-replay --help for usage)\n", why.c_str());
  return 2;
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<std::string> traces_in(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() > 6 && n.compare(n.size() - 6, 6, ".trace") == 0) out.push_back(dir + "/" + n);
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

replay::trace load(const std::string& path, int device) {
  if (replay::is_stats_file(path)) return replay::trace_from_stats_file(path, device);
  std::ifstream in(path);
  if (!in) throw replay::trace_error(path + ": " + std::strerror(errno));
  replay::trace t = replay::parse_text_trace(in, path);  // errors name the file as given
  std::string& name = t.name;
  if (const auto slash = name.rfind('/'); slash != std::string::npos) name.erase(0, slash + 1);
  if (name.size() > 6 && name.compare(name.size() - 6, 6, ".trace") == 0) name.resize(name.size() - 6);
  return t;
}

// A note for a comment line of the text format: one line, printable.
std::string one_line(std::string s) {
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> paths;
  std::string format = "text", export_to;
  std::vector<std::string> policies = replay::policy_names();
  replay::policy_options o;
  o.pool.idle_percent = poolshim::pool::kNoIdleBound;  // the shim's default (POOLSHIM_DEVICE_IDLE_PERCENT)
  int device = 0;
  bool exporting = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(k_usage, stdout);
      return 0;
    }
    if (a.size() > 2 && a.compare(0, 2, "--") == 0) {
      std::string value;
      const auto eq = a.find('=');
      const std::string key = a.substr(0, eq);
      if (eq != std::string::npos) {
        value = a.substr(eq + 1);
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return usage_error(key + " needs a value");
      }
      std::size_t size = 0;
      const bool is_size = poolshim::opt::parse_size(value.c_str(), &size);
      auto need_size = [&](std::uint64_t* out) {
        if (!is_size) return false;
        *out = size;
        return true;
      };
      if (key == "--format") {
        if (value != "text" && value != "json") return usage_error("--format: text or json, not " + value);
        format = value;
      } else if (key == "--policies") {
        policies.clear();
        std::istringstream list(value);
        for (std::string p; std::getline(list, p, ',');) {
          const auto& known = replay::policy_names();
          if (std::find(known.begin(), known.end(), p) == known.end())
            return usage_error("--policies: unknown policy " + p + " (none, region, torch, poolshim)");
          policies.push_back(p);
        }
        if (policies.empty()) return usage_error("--policies: none named");
      } else if (key == "--device") {
        std::uint64_t d = 0;
        if (!poolshim::opt::parse_count(value.c_str(), 0, 63, &d)) return usage_error("--device: 0 to 63");
        device = static_cast<int>(d);
      } else if (key == "--idle-percent") {
        std::uint64_t n = 0;
        if (value == "off")
          o.pool.idle_percent = poolshim::pool::kNoIdleBound;
        else if (poolshim::opt::parse_count(value.c_str(), 0, 1000, &n))
          o.pool.idle_percent = n;
        else
          return usage_error("--idle-percent: 0 to 1000 or off, not " + value);
      } else if (key == "--idle-against") {
        if (value != "peak" && value != "now") return usage_error("--idle-against: peak or now, not " + value);
        o.pool.idle_bound_now = value == "now";
      } else if (key == "--reuse-bits" || key == "--class-bits" || key == "--grow-segments") {
        std::uint64_t n = 0;
        const std::uint64_t hi = key == "--reuse-bits" ? 20 : key == "--class-bits" ? 6 : 1;
        if (!poolshim::opt::parse_count(value.c_str(), key == "--grow-segments" ? 0 : 1, hi, &n))
          return usage_error(key + ": a number up to " + std::to_string(hi) + ", not " + value);
        if (key == "--reuse-bits")
          o.pool.reuse_bits = static_cast<unsigned>(n);
        else if (key == "--class-bits")
          o.pool.large_class_bits = static_cast<unsigned>(n);
        else
          o.pool.grow_small_segments = n == 1;
      } else if (key == "--export") {
        exporting = true;
        export_to = value;
      } else if (key == "--small-limit"    ? need_size(&o.pool.small_limit)
                 : key == "--thread-cache" ? need_size(&o.pool.thread_cache_bytes)
                 : key == "--cache-limit"  ? need_size(&o.pool.idle_limit)
                 : key == "--segment-size" ? need_size(&o.pool.segment_size)
                 : key == "--device-limit" ? need_size(&o.device_limit)
                 : key == "--granule"      ? need_size(&o.driver_granule) && o.driver_granule != 0
                 : key == "--region-chunk" ? need_size(&o.region_chunk) && o.region_chunk != 0
                                           : false) {
        // a size option, taken
      } else if (key == "--small-limit" || key == "--thread-cache" || key == "--cache-limit" ||
                 key == "--segment-size" || key == "--device-limit" || key == "--granule" || key == "--region-chunk") {
        return usage_error(key + ": not a size: " + value);
      } else {
        return usage_error("unknown option " + key);
      }
      continue;
    }
    paths.push_back(a);
  }
  if (paths.empty()) return usage_error("no trace named");

  if (exporting) {
    if (paths.size() != 1 || !replay::is_stats_file(paths[0]))
      return usage_error("--export takes one stats file (with an event ring)");
    try {
      const replay::trace t = replay::trace_from_stats_file(paths[0], device);
      std::vector<std::string> header{"recorded by poolshim-replay --export from " + one_line(paths[0]) + ", device " +
                                      std::to_string(device)};
      for (const std::string& n : t.notes) header.push_back(one_line(n));
      if (export_to == "-") {
        replay::write_text_trace(std::cout, t, header);
      } else {
        std::ofstream out(export_to);
        replay::write_text_trace(out, t, header);
        if (!out.flush()) {
          std::fprintf(stderr, "poolshim-replay: cannot write %s\n", export_to.c_str());
          return 1;
        }
      }
      return 0;
    } catch (const replay::trace_error& e) {
      std::fprintf(stderr, "poolshim-replay: %s\n", e.what());
      return 1;
    }
  }

  std::vector<std::string> files;
  for (const std::string& p : paths) {
    if (is_directory(p)) {
      const std::vector<std::string> in = traces_in(p);
      if (in.empty()) return usage_error(p + ": no *.trace file in this folder");
      files.insert(files.end(), in.begin(), in.end());
    } else {
      files.push_back(p);
    }
  }
  std::vector<replay::trace_result> results;
  for (const std::string& f : files) {
    try {
      results.push_back(replay::replay_all(load(f, device), policies, o));
    } catch (const replay::trace_error& e) {
      std::fprintf(stderr, "poolshim-replay: %s\n", e.what());
      return 1;
    }
  }
  if (format == "json")
    replay::write_json(std::cout, results, o);
  else
    replay::write_text(std::cout, results, o);
  return std::cout.flush() ? 0 : 1;
}

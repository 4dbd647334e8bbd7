// poolshim configuration: the shim's table of every option (field, variable, type, default,
// meaning), read once from POOLSHIM_* environment variables by the machinery in options.h, which
// poolshimd's own table (daemon/poolshimd/options.h) shares. A bad value warns once and keeps the
// default. `poolshimd --help` and the README list this table.
#pragma once

#include <cstddef>
#include <cstdint>

#include "poolshim/options.h"

// The daemon's socket: one row that the shim's table and poolshimd's both hold.
#define POOLSHIM_SOCKET_OPTION(X)                                                                \
  X(socket, "POOLSHIM_SOCKET", path, "",                                                         \
    "daemon socket path (default: /run/poolshim/poolshimd.sock when /run/poolshim exists, then " \
    "$XDG_RUNTIME_DIR/poolshim/poolshimd.sock, then /tmp/poolshim-$UID/poolshimd.sock)")

// X(field, ENV_NAME, type, default, help); the types are options.h's.
#define POOLSHIM_CONFIG_OPTIONS(X)                                                                                   \
  X(mode, "POOLSHIM_MODE", choice(::poolshim::run_mode, "pool", "observe", "off"), ::poolshim::run_mode::pool,       \
    "pool: serve allocations from the caching pool; observe: track and report, allocate through "                    \
    "the real driver; off: pass everything through untouched")                                                       \
  X(free_sync, "POOLSHIM_FREE_SYNC", choice(::poolshim::free_sync_mode, "device", "fence", "unsafe"),                \
    ::poolshim::free_sync_mode::device,                                                                              \
    "device: a free of pooled memory synchronises the contexts that may use it (like cudaFree); "                    \
    "fence: no host sync, a freed block is reused only after a fence passed every stream")                           \
  X(log_level, "POOLSHIM_LOG_LEVEL", level, 3, "log level: trace, debug, info, warn, error, critical, off (or 0-6)") \
  X(summary, "POOLSHIM_SUMMARY", flag, false,                                                                        \
    "1: print one line to stderr at exit (allocations, pool hits, peak device and pinned bytes)")                    \
  X(small_limit, "POOLSHIM_SMALL_LIMIT", size, std::size_t{1} << 20,                                                 \
    "largest request served from shared 2 MiB segments; larger ones get a dedicated segment")                        \
  X(thread_cache_bytes, "POOLSHIM_THREAD_CACHE", size, std::size_t{4} << 20,                                         \
    "bytes of small blocks each thread may keep for itself (0 disables the per-thread caches)")                      \
  X(device_cache_limit, "POOLSHIM_DEVICE_CACHE_LIMIT", size, std::size_t{0},                                         \
    "idle device bytes the pool keeps before it returns segments to the driver (0: no limit)")                       \
  X(idle_release_ms, "POOLSHIM_IDLE_RELEASE_MS", count(0, 86400000), 30000,                                          \
    "a pool's memory that stayed idle (not needed) this many milliseconds goes back to the driver or the "           \
    "daemon, unasked: whole free segments only, never one with a block in use (0: never)")                           \
  X(idle_report_ms, "POOLSHIM_IDLE_REPORT_MS", count(10, 60000), 100,                                                \
    "while connected to poolshimd, how often the process tells it what it holds idle and gives back what "           \
    "the daemon asks for (another process needs the memory, or poolshimd --trim)")                                   \
  X(preallocate, "POOLSHIM_PREALLOCATE", string, "",                                                                 \
    "DEVICE:SIZE[,DEVICE:SIZE...]: device memory each listed device's pool takes at its first use and keeps "        \
    "(as free small segments; idle release and the daemon's requests leave it, poolshim_release_all does not)")      \
  X(device_idle_percent, "POOLSHIM_DEVICE_IDLE_PERCENT", count(0, 1001), 1001,                                       \
    "before the device pool takes a new segment, it returns idle ones until it holds at most this "                  \
    "percentage more than is in use: with POOLSHIM_DEVICE_SOURCE=daemon more than is in use now (what one "          \
    "process keeps idle no other can use), with local segments more than the most in use since memory was "          \
    "last released (a loop reuses it). 1001, the default: 5 with the daemon's segments, no bound with local ones  "  \
    "(caching first: every freed block stays cached); 1000: no bound")                                               \
  POOLSHIM_SOCKET_OPTION(X)                                                                                          \
  X(use_daemon, "POOLSHIM_DAEMON", flag, true,                                                                       \
    "1: lease pinned slabs from a trusted poolshimd when one answers; 0: local slabs only")                          \
  X(device_source, "POOLSHIM_DEVICE_SOURCE", choice(::poolshim::segment_source, "local", "daemon"),                  \
    ::poolshim::segment_source::local,                                                                               \
    "local: device segments from cuMemAlloc_v2; daemon: VMM memory lent by poolshimd (opt-in until "                 \
    "measured on a GPU; local when the daemon cannot lend)")                                                         \
  X(stats, "POOLSHIM_STATS", choice(const char*, "off", "native", "python"), "off",                                  \
    "off: no call-site statistics; native: every allocation's native call stack, counted per site "                  \
    "in a stats file poolshim-stats reads; python: native, with a CPython script's own frames "                      \
    "(file:line in function) where the interpreter's eval loop stands")                                              \
  X(stats_dir, "POOLSHIM_STATS_DIR", path, "/dev/shm",                                                               \
    "where POOLSHIM_STATS=native writes its per-process file (mode 0600)")                                           \
  X(stats_depth, "POOLSHIM_STATS_DEPTH", size, std::size_t{32}, "frames kept per call stack (1 to 64)")              \
  X(stats_events, "POOLSHIM_STATS_EVENTS", size, std::size_t{0},                                                     \
    "allocations and frees kept in the stats file's event ring for timelines and the memory_viz "                    \
    "snapshot (rounded up to a power of two, at most 16777216; 0: no ring)")

namespace poolshim {

// Each enum's values are its choice row's spellings, in order.
enum class run_mode : std::uint8_t { pool, observe, off };

// `unsafe` disables both protections; it exists only so a test can show what goes wrong without
// them, and it is never a default.
enum class free_sync_mode : std::uint8_t { device, fence, unsafe };

// Where device segments come from (POOLSHIM_DEVICE_SOURCE).
enum class segment_source : std::uint8_t { local, daemon };

// `stats` is always "off", "native" or "python" (a rejected value keeps "off").
struct config {
  POOLSHIM_OPTION_STRUCT(POOLSHIM_CONFIG_OPTIONS)
  static constexpr const char* program = "poolshim";
};

using config_issue = opt::issue;

// Parses the environment (getenv) into a config. Rejected values keep their default and are
// reported through `on_issue` (may be null; opt::warn_raw writes the warning), once per variable.
// Does not allocate.
config read_config(void (*on_issue)(const config_issue&) = nullptr) noexcept;

// The size parser of every table (options.h); exposed for tests.
using opt::parse_size;

}  // namespace poolshim

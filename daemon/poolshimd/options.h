// poolshimd's option table: each option is a POOLSHIMD_* variable (POOLSHIM_SOCKET is the shim's
// row, shared) and a command-line flag named after its field (--fill-threads, --huge-pages); a flag
// wins. Read, checked and described by include/poolshim/options.h, the shim's table's machinery: a
// bad variable warns once and keeps the default, a bad flag is an error (exit status 2).
#pragma once

#include <string>

#include "poolshim/config.h"
#include "poolshimd/server.h"

// X(field, ENV_NAME, type, default, help), as in config.h.
#define POOLSHIM_DAEMON_OPTIONS(X)                                                                                   \
  POOLSHIM_SOCKET_OPTION(X)                                                                                          \
  X(region, "POOLSHIMD_REGION", size, std::size_t{4} << 30, "bytes of the pinned-host region")                       \
  X(slab, "POOLSHIMD_SLAB", size, std::size_t{64} << 20, "slab size, a multiple of 2 MiB")                           \
  X(huge_pages, "POOLSHIMD_HUGE_PAGES", flag, false, "back slabs with huge pages when the system has them")          \
  X(fill_threads, "POOLSHIMD_FILL_THREADS", count(1, 64), 2, "background threads that fill slabs")                   \
  X(client_quota, "POOLSHIMD_CLIENT_QUOTA", size, std::size_t{0}, "bytes one client process may hold (0: no limit)") \
  X(uid_quota, "POOLSHIMD_UID_QUOTA", size, std::size_t{0}, "bytes one uid may hold (0: no limit)")                  \
  X(device_limit, "POOLSHIMD_DEVICE_LIMIT", size, std::size_t{0},                                                    \
    "lend device memory (VMM, cuMemCreate), at most this much per device, to clients with "                          \
    "POOLSHIM_DEVICE_SOURCE=daemon (0: off; the CUDA driver is loaded on the first such request)")                   \
  X(idle_percent, "POOLSHIMD_IDLE_PERCENT", count(0, 1000), 5,                                                       \
    "the node's footprint bound on lent device memory: when a lease leaves more lent than this percentage "          \
    "above what clients hold in use (lent less what they report idle), the largest idle holders are asked "          \
    "for the excess at their next report (1000: off, idle memory then flows back only when asked for or unasked)")   \
  X(idle_exit, "POOLSHIMD_IDLE_EXIT", count(0, 0x7fffffff), 0,                                                       \
    "exit after this many seconds with no client and nothing lent (0: never)")                                       \
  X(metrics_port, "POOLSHIMD_METRICS_PORT", count(0, 65535), 0, "serve Prometheus text on port N (0: off)")          \
  X(metrics_address, "POOLSHIMD_METRICS_ADDRESS", string, "127.0.0.1",                                               \
    "the IPv4 address the metrics port listens on (0.0.0.0: every interface, e.g. in a pod)")                        \
  X(metrics_clients, "POOLSHIMD_METRICS_CLIENTS", count(0, 1), 0,                                                    \
    "1: the metrics page lists every client's pid, uid and bytes (readable by any local user)")                      \
  X(uid_connections, "POOLSHIMD_UID_CONNECTIONS", count(0, 1000000), 64,                                             \
    "open connections one uid may hold at most; more are refused (0: no limit)")                                     \
  X(idle_timeout, "POOLSHIMD_IDLE_TIMEOUT", count(0, 0x7fffffff), 30,                                                \
    "close a connection that holds nothing (no lease, no IPC registration) after this many idle seconds (0: never)") \
  X(redis, "POOLSHIMD_REDIS", string, "",                                                                            \
    "the Redis control plane: mirror shared named buffers into hashes and take tensor:cmd commands, at "             \
    "redis://host[:port][/db] or unix:///path[?db=N] (empty: off)")                                                  \
  X(redis_prefix, "POOLSHIMD_REDIS_PREFIX", string,                                                                  \
    "tensor:", "the Redis keys: PREFIX<name> hashes, the PREFIXcmd command list")                                    \
  X(log_level, "POOLSHIMD_LOG_LEVEL", level, 2, "log level: trace, debug, info, warn, error, critical, off (or 0-6)")

namespace poolshim::daemon {

struct daemon_options {
  POOLSHIM_OPTION_STRUCT(POOLSHIM_DAEMON_OPTIONS)
  static constexpr const char* program = "poolshimd";
};

struct command_line {
  daemon_options options;  // the environment's, then the flags'
  bool status = false;     // --status
  bool list = false;       // --list
  bool trim = false;       // --trim (then --status)
  bool help = false;       // -h, --help (the flags after it are not looked at)
  bool version = false;    // --version (likewise)
  std::string error;       // not empty: a bad flag, said in full
};

// The environment (each rejected variable reported through on_issue, which may be null), then the
// flags, up to the first bad one or --help.
command_line parse_command_line(int argc, char** argv, opt::issue_fn on_issue);

// --help: how to run it, this table (flags, variables, defaults, meanings) and the shim's.
std::string help_text();

// What the server runs with: the socket path resolved (transport.h's order when none is set).
server_options server_options_of(const daemon_options& o);

}  // namespace poolshim::daemon

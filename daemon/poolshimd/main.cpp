// poolshimd: the node-local daemon (server.h). Flags mirror POOLSHIMD_* variables; --status asks a
// running daemon for its figures (as a client would, trust checks included).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "poolshimd/server.h"
#include "poolshim/protocol.h"
#include "poolshim/transport.h"

namespace {

const char* k_usage = R"(Usage: poolshimd [options]
       poolshimd --status [--socket PATH]

The poolshim daemon: owns a pinned-host region of memfd slabs, filled in the background, and lends
them to processes running libpoolshim.so over a Unix socket. A client's slabs come back when its
process exits (kill -9 included) or returns them. One daemon per user (started by
`scripts/poolshim run`, exits when idle) or one per node (scripts/poolshimd.service).

Options (each also read from the environment variable in brackets; a flag wins):
  --socket PATH        socket path [POOLSHIM_SOCKET]; default /run/poolshim/poolshimd.sock when
                       /run/poolshim exists, else $XDG_RUNTIME_DIR/poolshim/poolshimd.sock, else
                       /tmp/poolshim-$UID/poolshimd.sock. Its directory is created with mode 0700.
  --region SIZE        pinned-host region [POOLSHIMD_REGION]                     (default 4G)
  --slab SIZE          slab size, a multiple of 2M [POOLSHIMD_SLAB]               (default 64M)
  --huge-pages         back slabs with huge pages when the system has them [POOLSHIMD_HUGE_PAGES=1]
  --fill-threads N     background threads that fill slabs [POOLSHIMD_FILL_THREADS] (default 2)
  --client-quota SIZE  bytes one client process may hold [POOLSHIMD_CLIENT_QUOTA] (default: none)
  --uid-quota SIZE     bytes one uid may hold [POOLSHIMD_UID_QUOTA]               (default: none)
  --device-limit SIZE  lend device memory (VMM, cuMemCreate), at most SIZE per device, to clients
                       with POOLSHIM_DEVICE_SOURCE=daemon [POOLSHIMD_DEVICE_LIMIT] (default 0: off;
                       the CUDA driver is loaded on the first such request)
  --idle-exit SECS     exit after SECS with no client and nothing lent [POOLSHIMD_IDLE_EXIT]
                       (default 0: never)
  --metrics-port N     serve Prometheus text on 127.0.0.1:N [POOLSHIMD_METRICS_PORT] (default off)
  --log-level LEVEL    trace, debug, info, warn, error, off [POOLSHIMD_LOG_LEVEL] (default info)
  --status             print a running daemon's figures and exit (1: no trusted daemon answers)
  -h, --help           this text
SIZE takes a K, M or G suffix (powers of 1024).
)";

bool parse_size(const char* text, std::uint64_t* out) {
  if (text == nullptr || *text == '\0') return false;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text) return false;
  std::uint64_t mult = 1;
  if (*end == 'K' || *end == 'k') mult = 1ull << 10, ++end;
  else if (*end == 'M' || *end == 'm') mult = 1ull << 20, ++end;
  else if (*end == 'G' || *end == 'g') mult = 1ull << 30, ++end;
  if (*end != '\0' || v > (~0ull) / mult) return false;
  *out = v * mult;
  return true;
}

[[noreturn]] void bad(const std::string& what) {
  std::fprintf(stderr, "poolshimd: %s (see --help)\n", what.c_str());
  std::exit(2);
}

poolshim::daemon::server* g_server = nullptr;
extern "C" void on_signal(int) {
  if (g_server != nullptr) g_server->stop();
}

// --status: a client's view of the daemon.
int print_status(const std::string& path) {
  namespace proto = poolshim::proto;
  std::string why;
  if (!proto::trusted_directory(path, getuid(), &why)) {
    std::fprintf(stderr, "poolshimd --status: not trusting %s: %s\n", path.c_str(), why.c_str());
    return 1;
  }
  const int s = proto::connect_seqpacket(path, &why);
  if (s < 0 || !proto::trusted_peer(s, getuid(), &why)) {
    std::fprintf(stderr, "poolshimd --status: %s\n", why.c_str());
    if (s >= 0) close(s);
    return 1;
  }
  std::uint32_t seq = 0;
  auto ask = [&](proto::op o, std::uint64_t arg0, proto::reply* r) {
    proto::request q = proto::make_request(o, ++seq);
    q.arg[0] = arg0;
    return proto::exchange(s, q, -1, r, nullptr) == proto::exchange_status::ok &&
           r->status == static_cast<std::int32_t>(proto::status::ok);
  };
  proto::reply r{};
  if (!ask(proto::op::stats, 0, &r)) {
    std::fprintf(stderr, "poolshimd --status: the daemon did not answer\n");
    close(s);
    return 1;
  }
  // This query is a client too: it is left out of the figures it prints.
  std::uint64_t device = 0;
  std::memcpy(&device, r.payload, sizeof device);
  std::printf("region_bytes=%llu lent_bytes=%llu free_bytes=%llu clients=%llu leases=%llu reclaimed_slabs=%llu "
              "device_lent_bytes=%llu\n",
              static_cast<unsigned long long>(r.val[0]), static_cast<unsigned long long>(r.val[1]),
              static_cast<unsigned long long>(r.val[2]), static_cast<unsigned long long>(r.val[3] - 1),
              static_cast<unsigned long long>(r.val[4]), static_cast<unsigned long long>(r.val[5]),
              static_cast<unsigned long long>(device));
  for (std::uint64_t i = 0; ask(proto::op::client_stats, i, &r); ++i) {
    if (r.val[0] == static_cast<std::uint64_t>(getpid())) continue;
    std::printf("client pid=%llu uid=%llu lent_bytes=%llu leases=%llu device_bytes=%llu\n",
                static_cast<unsigned long long>(r.val[0]), static_cast<unsigned long long>(r.val[1]),
                static_cast<unsigned long long>(r.val[2]), static_cast<unsigned long long>(r.val[3]),
                static_cast<unsigned long long>(r.val[4]));
  }
  close(s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  poolshim::daemon::server_options o;
  o.socket_path = poolshim::proto::default_socket_path();
  std::string level = "info";
  bool status = false;
  auto env_size = [](const char* name, std::uint64_t* out) {
    if (const char* v = std::getenv(name); v != nullptr && *v != '\0' && !parse_size(v, out))
      bad(std::string("bad ") + name + " '" + v + "'");
  };
  std::uint64_t region = o.region.total_bytes, slab = o.region.slab_bytes, threads = o.region.fill_threads, idle = 0,
                port = 0;
  env_size("POOLSHIMD_REGION", &region);
  env_size("POOLSHIMD_SLAB", &slab);
  env_size("POOLSHIMD_FILL_THREADS", &threads);
  env_size("POOLSHIMD_CLIENT_QUOTA", &o.client_quota);
  env_size("POOLSHIMD_UID_QUOTA", &o.uid_quota);
  env_size("POOLSHIMD_DEVICE_LIMIT", &o.device_limit);
  env_size("POOLSHIMD_IDLE_EXIT", &idle);
  env_size("POOLSHIMD_METRICS_PORT", &port);
  if (const char* v = std::getenv("POOLSHIMD_HUGE_PAGES")) o.region.huge_pages = std::strcmp(v, "1") == 0;
  if (const char* v = std::getenv("POOLSHIMD_LOG_LEVEL")) level = v;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) bad(a + " needs a value");
      return argv[++i];
    };
    auto size_of = [&](std::uint64_t* out) {
      const char* v = value();
      if (!parse_size(v, out)) bad("bad value '" + std::string(v) + "' for " + a);
    };
    if (a == "-h" || a == "--help") {
      std::fputs(k_usage, stdout);
      return 0;
    }
    if (a == "--socket") o.socket_path = value();
    else if (a == "--region") size_of(&region);
    else if (a == "--slab") size_of(&slab);
    else if (a == "--huge-pages") o.region.huge_pages = true;
    else if (a == "--fill-threads") size_of(&threads);
    else if (a == "--client-quota") size_of(&o.client_quota);
    else if (a == "--uid-quota") size_of(&o.uid_quota);
    else if (a == "--device-limit") size_of(&o.device_limit);
    else if (a == "--idle-exit") size_of(&idle);
    else if (a == "--metrics-port") size_of(&port);
    else if (a == "--log-level") level = value();
    else if (a == "--status") status = true;
    else bad("unknown option '" + a + "'");
  }
  if (status) return print_status(o.socket_path);
  if (threads == 0 || threads > 64) bad("--fill-threads must be 1..64");
  if (port > 65535) bad("--metrics-port must be 0..65535");
  o.region.total_bytes = region;
  o.region.slab_bytes = slab;
  o.region.fill_threads = static_cast<unsigned>(threads);
  o.idle_exit = std::chrono::seconds(idle);
  o.metrics_port = static_cast<int>(port);
  const spdlog::level::level_enum lv = spdlog::level::from_str(level);
  if (lv == spdlog::level::off && level != "off") bad("bad log level '" + level + "'");
  spdlog::set_default_logger(spdlog::stderr_color_mt("poolshimd"));
  spdlog::set_level(lv);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
  try {
    poolshim::daemon::server s(o);
    g_server = &s;
    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
    const int rc = s.run();
    g_server = nullptr;
    return rc;
  } catch (const std::exception& e) {
    spdlog::error("poolshimd: {}", e.what());
    return 1;
  }
}

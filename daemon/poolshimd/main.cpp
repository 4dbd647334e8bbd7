// poolshimd: the node-local daemon (server.h). Its options are a table (options.h): POOLSHIMD_*
// variables and the flags of the same names; --status asks a running daemon for its figures, --list
// for its named buffers (as a client would, trust checks included, every step with a timeout).
#include <poolshim/version.h>  // generated (include/CMakeLists.txt)
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "poolshim/protocol.h"
#include "poolshim/transport.h"
#include "poolshimd/log.h"
#include "poolshimd/options.h"
#include "poolshimd/server.h"

namespace {

poolshim::daemon::server* g_server = nullptr;
extern "C" void on_signal(int) {
  if (g_server != nullptr) g_server->stop();
}

// --status: a client's view of the daemon; --list (list_only): its named buffers alone, a table;
// --trim (trim): first asks the clients to give back their idle memory (trim_clients).
int print_status(const std::string& path, bool list_only, bool trim = false) {
  namespace proto = poolshim::proto;
  std::string why;
  if (!proto::trusted_directory(path, getuid(), &why)) {
    std::fprintf(stderr, "poolshimd --status: not trusting %s: %s\n", path.c_str(), why.c_str());
    return 1;
  }
  // Each step (connect, send, receive) waits at most k_client_timeout_ms; the whole query at most
  // k_total: a daemon that hangs makes --status fail, not hang.
  const int s = proto::connect_seqpacket(path, &why, proto::k_client_timeout_ms);
  if (s < 0 || !proto::trusted_peer(s, getuid(), &why)) {
    std::fprintf(stderr, "poolshimd --status: %s\n", why.c_str());
    if (s >= 0) close(s);
    return 1;
  }
  constexpr std::chrono::seconds k_total{5};
  const auto until = std::chrono::steady_clock::now() + k_total;
  std::uint32_t seq = 0;
  auto ask = [&](proto::op o, std::uint64_t arg0, proto::reply* r) {
    if (std::chrono::steady_clock::now() >= until) return false;
    proto::request q = proto::make_request(o, ++seq);
    q.arg[0] = arg0;
    return proto::exchange(s, q, -1, r, nullptr) == proto::exchange_status::ok &&
           r->status == static_cast<std::int32_t>(proto::status::ok);
  };
  proto::reply r{};
  if (trim) {
    if (!ask(proto::op::trim_clients, 0, &r)) {
      std::fprintf(stderr, "poolshimd --trim: the daemon did not answer (or is older than --trim)\n");
      close(s);
      return 1;
    }
    std::printf("trim asked=%llu idle_device_bytes=%llu idle_pinned_bytes=%llu\n",
                static_cast<unsigned long long>(r.val[0]), static_cast<unsigned long long>(r.val[1]),
                static_cast<unsigned long long>(r.val[2]));
  }
  if (!ask(proto::op::stats, 0, &r)) {
    std::fprintf(stderr, "poolshimd --status: the daemon did not answer\n");
    close(s);
    return 1;
  }
  if (list_only) {
    std::printf("%-32s %-6s %6s %14s %5s %8s %6s %s\n", "NAME", "KIND", "DEVICE", "BYTES", "REFS", "CREATOR", "OWNER",
                "NAMESPACE");
    for (std::uint64_t i = 0; ask(proto::op::buffer_list, i, &r); ++i) {
      const proto::buffer_entry b = proto::decode_buffer_entry(r);
      std::printf("%-32s %-6s %6s %14llu %5llu %8llu %6llu %s\n", b.name,
                  (b.kind_flags & proto::k_buffer_kind_mask) == 2 ? "device" : "host",
                  b.device >= 0 ? std::to_string(b.device).c_str() : "-", static_cast<unsigned long long>(b.bytes),
                  static_cast<unsigned long long>(b.references), static_cast<unsigned long long>(b.creator_pid),
                  static_cast<unsigned long long>(b.owner_uid),
                  (b.kind_flags & proto::k_buffer_shared) != 0 ? "shared" : "uid");
    }
    bool header = false;
    for (std::uint64_t i = 0; ask(proto::op::channel_list, i, &r); ++i) {
      if (!header) {
        std::printf("\n%-32s %-7s %7s %12s %12s %12s %8s %10s %s\n", "CHANNEL", "WRITER", "READERS", "CAPACITY",
                    "BACKLOG", "HELD", "PID", "MESSAGES", "NAMESPACE");
        header = true;
      }
      const proto::channel_entry c = proto::decode_channel_entry(r);
      static const char* const k_writer[] = {"none", "open", "dead", "closed"};
      std::printf("%-32s %-7s %3llu/%-3u %12llu %12llu %12llu %8llu %10llu %s\n", c.name,
                  c.writer_state < 4 ? k_writer[c.writer_state] : "?", static_cast<unsigned long long>(c.readers),
                  c.max_readers, static_cast<unsigned long long>(c.capacity),
                  static_cast<unsigned long long>(c.backlog), static_cast<unsigned long long>(c.held_bytes),
                  static_cast<unsigned long long>(c.writer_pid), static_cast<unsigned long long>(c.messages),
                  c.shared ? "shared" : "uid");
    }
    close(s);
    return 0;
  }
  proto::daemon_status st = proto::decode_status(r);
  if (st.clients > 0) --st.clients;  // this query is a client too: left out of what it prints
  const char* sep = "";
  for (const proto::status_figure& f : proto::k_status_figures) {
    std::printf("%s%s=%llu", sep, f.name, static_cast<unsigned long long>(st.*f.member));
    sep = " ";
  }
  std::printf("\n");
  for (std::uint64_t i = 0; ask(proto::op::client_stats, i, &r); ++i) {
    const proto::client_status c = proto::decode_client_status(r);
    if (c.pid == static_cast<std::uint64_t>(getpid())) continue;
    std::printf("client");
    for (const proto::client_figure& f : proto::k_client_figures)
      std::printf(" %s=%llu", f.name, static_cast<unsigned long long>(c.*f.member));
    std::printf("\n");
  }
  // Named buffers this uid may see (its own and the shared ones; root: all).
  for (std::uint64_t i = 0; ask(proto::op::buffer_list, i, &r); ++i) {
    const proto::buffer_entry b = proto::decode_buffer_entry(r);
    std::printf("buffer name=%s kind=%s device=%d%s bytes=%llu references=%llu creator_pid=%llu owner_uid=%llu\n",
                b.name, (b.kind_flags & proto::k_buffer_kind_mask) == 2 ? "device" : "host", b.device,
                (b.kind_flags & proto::k_buffer_shared) != 0 ? " shared=1" : "",
                static_cast<unsigned long long>(b.bytes), static_cast<unsigned long long>(b.references),
                static_cast<unsigned long long>(b.creator_pid), static_cast<unsigned long long>(b.owner_uid));
  }
  for (std::uint64_t i = 0; ask(proto::op::channel_list, i, &r); ++i) {
    const proto::channel_entry c = proto::decode_channel_entry(r);
    std::printf(
        "channel name=%s writer_state=%u readers=%llu max_readers=%u capacity=%llu backlog=%llu held_bytes=%llu "
        "writer_pid=%llu messages=%llu%s\n",
        c.name, c.writer_state, static_cast<unsigned long long>(c.readers), c.max_readers,
        static_cast<unsigned long long>(c.capacity), static_cast<unsigned long long>(c.backlog),
        static_cast<unsigned long long>(c.held_bytes), static_cast<unsigned long long>(c.writer_pid),
        static_cast<unsigned long long>(c.messages), c.shared ? " shared=1" : "");
  }
  close(s);
  return 0;
}

// The soft RLIMIT_NOFILE up to the hard limit: each client costs two descriptors (its socket and
// its pidfd), and the usual soft limit of 1024 is a few hundred clients.
void raise_descriptor_limit() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur >= r.rlim_max) return;
  const rlim_t was = r.rlim_cur;
  r.rlim_cur = r.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &r) == 0)
    poolshim::daemon::log::debug("poolshimd: descriptor limit raised from {} to {}", static_cast<std::uint64_t>(was),
                                 static_cast<std::uint64_t>(r.rlim_cur));
}

}  // namespace

int main(int argc, char** argv) {
  namespace pd = poolshim::daemon;
  // A bad variable warns (the one configuration warning, options.h) and keeps its default.
  const pd::command_line cl = pd::parse_command_line(argc, argv, poolshim::opt::warn_raw);
  if (cl.help) {
    std::fputs(pd::help_text().c_str(), stdout);
    return 0;
  }
  if (cl.version) {
    std::printf("poolshimd %s\n", POOLSHIM_VERSION);
    return 0;
  }
  if (!cl.error.empty()) {
    std::fprintf(stderr, "poolshimd: %s (see --help)\n", cl.error.c_str());
    return 2;
  }
  const pd::server_options o = pd::server_options_of(cl.options);
  if (cl.status || cl.list || cl.trim) return print_status(o.socket_path, cl.list, cl.trim);
  pd::log::start(cl.options.log_level);
  raise_descriptor_limit();
  try {
    pd::server s(o);
    g_server = &s;
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
    const int rc = s.run();
    g_server = nullptr;
    return rc;
  } catch (const std::exception& e) {
    pd::log::error("poolshimd: {}", e.what());
    return 1;
  }
}

// poolshimd's command line and help text over its option table (options.h).
#include "poolshimd/options.h"

#include "poolshim/transport.h"

namespace poolshim::daemon {
namespace {

// The region's own defaults (for code that builds one without the table) are the table's.
static_assert(daemon_options{}.region == region_options{}.total_bytes &&
              daemon_options{}.slab == region_options{}.slab_bytes &&
              daemon_options{}.fill_threads == region_options{}.fill_threads &&
              daemon_options{}.huge_pages == region_options{}.huge_pages);

const char* k_usage = R"(Usage: poolshimd [options]
       poolshimd --status | --list | --trim [--socket PATH]

The poolshim daemon: owns a pinned-host region of memfd slabs, filled in the background, and lends
them to processes running libpoolshim.so over a Unix socket. A client's slabs come back when its
process exits (kill -9 included) or returns them. One daemon per user (started by
`poolshim run`, exits when idle) or one per node (the systemd unit poolshimd.service).

Options, each also read from the environment variable in brackets (a flag wins; a bad variable is
ignored with a warning, a bad flag is an error). The socket's directory is created with mode 0700.
)";

const char* k_commands = R"(  --status
      print a running daemon's figures and exit (1: no trusted daemon answers)
  --list
      print the named buffers and channels a running daemon lets this uid see, a line each, and exit
  --trim
      ask a running daemon's clients (this uid's; root: all) to give back every idle byte of their
      pools at their next report (within POOLSHIM_IDLE_REPORT_MS), print how many were asked, then
      the --status figures
  -h, --help
      this text
  --version
      print the version and exit
SIZE: bytes, with an optional k, m, g or t suffix (powers of 1024; 64M, 64MiB and 64mb are the same).

The shim's options: libpoolshim.so reads them from the environment of the program it runs in.
)";

void append(void* to, const char* text, std::size_t len) { static_cast<std::string*>(to)->append(text, len); }

std::string flag_name(const opt::row& r) {
  std::string f = std::string("--") + r.field;
  for (char& ch : f)
    if (ch == '_') ch = '-';
  return f;
}

}  // namespace

command_line parse_command_line(int argc, char** argv, opt::issue_fn on_issue) {
  command_line cl;
  cl.options = opt::read<daemon_options>(on_issue);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      cl.help = true;
      return cl;
    }
    if (a == "--version") {
      cl.version = true;
      return cl;
    }
    if (a == "--status") {
      cl.status = true;
      continue;
    }
    if (a == "--list") {
      cl.list = true;
      continue;
    }
    if (a == "--trim") {
      cl.trim = true;
      continue;
    }
    const opt::row* r = nullptr;
    switch (opt::parse_argument(cl.options, argc, argv, &i, &r)) {
      case opt::arg_status::ok:
        continue;
      case opt::arg_status::not_an_option:
        cl.error = "unknown option '" + a + "'";
        return cl;
      case opt::arg_status::missing_value:
        cl.error = a + " needs a value";
        return cl;
      case opt::arg_status::bad_value: {
        char why[160];
        opt::text t(why, sizeof why);
        opt::put_accepted(t, *r);
        cl.error = "bad value '" + std::string(argv[i]) + "' for " + flag_name(*r) + " (want " + why + ")";
        return cl;
      }
    }
  }
  return cl;
}

std::string help_text() {
  std::string t = k_usage;
  opt::write_help<daemon_options>(append, &t, true);
  t += k_commands;
  opt::write_help<config>(append, &t, false);
  return t;
}

server_options server_options_of(const daemon_options& o) {
  server_options s;
  s.socket_path = proto::socket_path(o.socket);
  s.region.total_bytes = o.region;
  s.region.slab_bytes = o.slab;
  s.region.huge_pages = o.huge_pages;
  s.region.fill_threads = static_cast<unsigned>(o.fill_threads);
  s.client_quota = o.client_quota;
  s.uid_quota = o.uid_quota;
  s.device_limit = o.device_limit;
  s.idle_percent = static_cast<unsigned>(o.idle_percent);
  s.idle_exit = std::chrono::seconds(o.idle_exit);
  s.metrics_port = static_cast<int>(o.metrics_port);
  s.metrics_address = o.metrics_address != nullptr ? o.metrics_address : "127.0.0.1";
  s.uid_connections = static_cast<unsigned>(o.uid_connections);
  s.idle_timeout = std::chrono::seconds(o.idle_timeout);
  s.metrics_clients = o.metrics_clients != 0;
  s.redis_url = o.redis != nullptr ? o.redis : "";
  s.redis_prefix = o.redis_prefix != nullptr ? o.redis_prefix : "tensor:";
  return s;
}

}  // namespace poolshim::daemon

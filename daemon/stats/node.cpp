// poolshim-stats node (node.h).
#include "stats/node.h"

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>

#include "stats/daemon_query.h"
#include "stats/stats_file.h"
#include "stats/tool_util.h"

namespace poolshim::stats_tool {
namespace {

struct process {
  std::unique_ptr<stats_file> file;
  std::string state;
  std::int64_t live = 0;
  const daemon_client_figures* lent = nullptr;
};

struct kind_sum {
  std::size_t processes = 0;
  std::int64_t live_running = 0, peak_sum = 0;
  std::uint64_t allocs = 0;
};

}  // namespace

int node_main(const std::vector<std::string>& args, const std::string& default_dir, const char* usage) {
  std::string dir = default_dir, socket, format = "text";
  auto bad = [](const std::string& what) {
    std::fprintf(stderr, "poolshim-stats node: %s (see --help)\n", what.c_str());
    return 2;
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      std::fputs(usage, stdout);
      return 0;
    }
    if (a == "--dir" || a == "--socket" || a == "--format") {
      if (i + 1 >= args.size()) return bad(a + " needs a value");
      const std::string& v = args[++i];
      if (a == "--dir")
        dir = v;
      else if (a == "--socket")
        socket = v;
      else if (v != "text" && v != "json")
        return bad("bad --format '" + v + "' (node writes text or json)");
      else
        format = v;
    } else {
      return bad((a[0] == '-' ? "unknown option '" : "node takes no process: '") + a + "'");
    }
  }

  std::vector<process> procs;
  std::vector<std::string> skipped;
  try {
    for (const std::string& p : find_files(dir, &skipped)) {
      process pr;
      try {
        pr.file = std::make_unique<stats_file>(p, true);
      } catch (const file_error& e) {
        skipped.push_back(e.what());  // removed or rewritten since it was listed
        continue;
      }
      pr.state = cli::state_of(*pr.file);
      procs.push_back(std::move(pr));
    }
  } catch (const file_error& e) {
    std::fprintf(stderr, "poolshim-stats node: %s\n", cli::terminal_text(e.what()).c_str());
    return 1;
  }
  for (const std::string& s : skipped)
    std::fprintf(stderr, "poolshim-stats: skipped %s\n", cli::terminal_text(s).c_str());

  const daemon_figures d = query_daemon(socket);
  std::map<std::pair<int, int>, kind_sum> sums;
  std::size_t running = 0, exited = 0, killed = 0;
  for (process& p : procs) {
    (p.state == "running" ? running : p.state == "exited" ? exited : killed)++;
    for (const kind_figures& k : p.file->kinds()) {
      p.live += k.counters.live_bytes;
      kind_sum& s = sums[{k.device, k.kind}];
      ++s.processes;
      if (p.state == "running") s.live_running += k.counters.live_bytes;
      s.peak_sum += k.counters.peak_bytes;
      s.allocs += k.counters.allocs;
    }
    for (const daemon_client_figures& c : d.per_client)
      if (c.pid == static_cast<std::uint64_t>(p.file->header().pid) && p.state == "running") p.lent = &c;
  }

  if (format == "json") {
    std::printf("{\"schema_version\":1,\"dir\":%s,\"processes\":[", cli::json_quote(dir).c_str());
    for (std::size_t i = 0; i < procs.size(); ++i) {
      const process& p = procs[i];
      const auto& h = p.file->header();
      std::printf(
          "%s{\"pid\":%d,\"state\":%s,\"file\":%s,\"exe\":%s,\"cmdline\":%s,\"live_bytes\":%lld,"
          "\"peak_bytes\":%lld,\"start_ns\":%llu,\"end_ns\":%llu,\"daemon_lent_bytes\":",
          i ? "," : "", h.pid, cli::json_quote(p.state).c_str(), cli::json_quote(p.file->path()).c_str(),
          cli::json_quote(p.file->exe()).c_str(), cli::json_quote(p.file->cmdline()).c_str(),
          static_cast<long long>(p.live), static_cast<long long>(h.process_peak),
          static_cast<unsigned long long>(h.start_ns), static_cast<unsigned long long>(h.end_ns));
      if (p.lent != nullptr)
        std::printf("%llu}", static_cast<unsigned long long>(p.lent->lent_bytes));
      else
        std::printf("null}");
    }
    std::printf("],\"kinds\":[");
    bool first = true;
    for (const auto& [dk, s] : sums) {
      std::printf(
          "%s{\"device\":%d,\"kind\":\"%s\",\"processes\":%zu,\"live_bytes_running\":%lld,"
          "\"peak_bytes_sum\":%lld,\"allocs\":%llu}",
          first ? "" : ",", dk.first, kind_name(dk.second), s.processes, static_cast<long long>(s.live_running),
          static_cast<long long>(s.peak_sum), static_cast<unsigned long long>(s.allocs));
      first = false;
    }
    std::printf("],\"daemon\":{\"socket\":%s,\"answered\":%s", cli::json_quote(d.socket).c_str(),
                d.answered ? "true" : "false");
    if (!d.answered) {
      std::printf(",\"why\":%s}}\n", cli::json_quote(d.why).c_str());
      return 0;
    }
    for (const proto::status_figure& f : proto::k_status_figures)
      std::printf(",\"%s\":%llu", f.name, static_cast<unsigned long long>(d.status.*f.member));
    std::printf(",\"per_client\":[");
    for (std::size_t i = 0; i < d.per_client.size(); ++i) {
      const char* sep = i ? ",{" : "{";
      for (const proto::client_figure& f : proto::k_client_figures) {
        std::printf("%s\"%s\":%llu", sep, f.name, static_cast<unsigned long long>(d.per_client[i].*f.member));
        sep = ",";
      }
      std::printf("}");
    }
    std::printf("],\"named_buffers\":[");
    for (std::size_t i = 0; i < d.buffers.size(); ++i) {
      const proto::buffer_entry& b = d.buffers[i];
      std::printf(
          "%s{\"name\":%s,\"kind\":\"%s\",\"device\":%d,\"shared\":%s,\"bytes\":%llu,\"references\":%llu,"
          "\"creator_pid\":%llu,\"owner_uid\":%llu,\"created_ns\":%llu}",
          i ? "," : "", cli::json_quote(b.name).c_str(),
          (b.kind_flags & proto::k_buffer_kind_mask) == 2 ? "device" : "host", b.device,
          (b.kind_flags & proto::k_buffer_shared) != 0 ? "true" : "false", static_cast<unsigned long long>(b.bytes),
          static_cast<unsigned long long>(b.references), static_cast<unsigned long long>(b.creator_pid),
          static_cast<unsigned long long>(b.owner_uid), static_cast<unsigned long long>(b.created_ns));
    }
    std::printf("],\"channels\":[");
    for (std::size_t i = 0; i < d.channels.size(); ++i) {
      const proto::channel_entry& c = d.channels[i];
      static const char* const k_writer[] = {"none", "open", "dead", "closed"};
      std::printf(
          "%s{\"name\":%s,\"writer\":\"%s\",\"writer_pid\":%llu,\"readers\":%llu,\"max_readers\":%u,"
          "\"capacity\":%llu,\"backlog\":%llu,\"held_bytes\":%llu,\"messages\":%llu,\"shared\":%s}",
          i ? "," : "", cli::json_quote(c.name).c_str(), c.writer_state < 4 ? k_writer[c.writer_state] : "none",
          static_cast<unsigned long long>(c.writer_pid), static_cast<unsigned long long>(c.readers), c.max_readers,
          static_cast<unsigned long long>(c.capacity), static_cast<unsigned long long>(c.backlog),
          static_cast<unsigned long long>(c.held_bytes), static_cast<unsigned long long>(c.messages),
          c.shared ? "true" : "false");
    }
    std::printf("]}}\n");
    return 0;
  }

  // Text, for 100 columns.
  std::printf("node: %zu processes with stats files in %s (%zu running, %zu exited, %zu killed)\n", procs.size(),
              dir.c_str(), running, exited, killed);
  if (!procs.empty()) {
    std::printf("  %-8s %-8s %11s %11s %11s  %s\n", "pid", "state", "live", "peak", "daemon lent", "command");
    for (const process& p : procs) {
      const auto& h = p.file->header();
      const std::string cmd = cli::brief_command(*p.file, 42);
      std::printf("  %-8d %-8s %11s %11s %11s  %s\n", h.pid, p.state.c_str(), cli::bytes_text(p.live).c_str(),
                  cli::bytes_text(h.process_peak).c_str(),
                  p.lent != nullptr ? cli::bytes_text(static_cast<long double>(p.lent->lent_bytes)).c_str() : "-",
                  cmd.c_str());
    }
    std::printf("\n  %-6s %-8s %9s %15s %15s %12s\n", "device", "kind", "processes", "live (running)", "peak (summed)",
                "allocations");
    for (const auto& [dk, s] : sums)
      std::printf("  %-6d %-8s %9zu %15s %15s %12llu\n", dk.first, kind_name(dk.second), s.processes,
                  cli::bytes_text(s.live_running).c_str(), cli::bytes_text(s.peak_sum).c_str(),
                  static_cast<unsigned long long>(s.allocs));
    std::printf("  live: of running processes only; peak: the sum of each process's own peak\n");
  }
  if (!d.answered) {
    std::printf("\ndaemon: none answers (%s)\n", d.why.c_str());
    return 0;
  }
  const proto::daemon_status& st = d.status;
  std::printf(
      "\ndaemon on %s:\n  pinned region %s, lent %s, free %s; %llu client%s, %llu lease%s; device memory lent %s\n",
      d.socket.c_str(), cli::bytes_text(static_cast<long double>(st.region_bytes)).c_str(),
      cli::bytes_text(static_cast<long double>(st.lent_bytes)).c_str(),
      cli::bytes_text(static_cast<long double>(st.free_bytes)).c_str(), static_cast<unsigned long long>(st.clients),
      st.clients == 1 ? "" : "s", static_cast<unsigned long long>(st.leases), st.leases == 1 ? "" : "s",
      cli::bytes_text(static_cast<long double>(st.device_lent_bytes)).c_str());
  for (const daemon_client_figures& c : d.per_client)
    std::printf("  client pid %-8llu uid %-6llu lent %s in %llu lease%s, device %s; idle device %s, pinned %s\n",
                static_cast<unsigned long long>(c.pid), static_cast<unsigned long long>(c.uid),
                cli::bytes_text(static_cast<long double>(c.lent_bytes)).c_str(),
                static_cast<unsigned long long>(c.leases), c.leases == 1 ? "" : "s",
                cli::bytes_text(static_cast<long double>(c.device_bytes)).c_str(),
                cli::bytes_text(static_cast<long double>(c.idle_device_bytes)).c_str(),
                cli::bytes_text(static_cast<long double>(c.idle_pinned_bytes)).c_str());
  if (!d.buffers.empty())
    std::printf("  named buffers: %zu, %s of the region\n", d.buffers.size(),
                cli::bytes_text(static_cast<long double>(st.named_bytes)).c_str());
  for (const proto::buffer_entry& b : d.buffers)
    std::printf("  buffer %-24s %-7s%s %11s, %llu reference%s, created by pid %llu (uid %llu)\n",
                cli::terminal_text(b.name).c_str(),
                b.device >= 0 ? ("cuda:" + std::to_string(b.device)).c_str() : "host",
                (b.kind_flags & proto::k_buffer_shared) != 0 ? " shared" : "",
                cli::bytes_text(static_cast<long double>(b.bytes)).c_str(),
                static_cast<unsigned long long>(b.references), b.references == 1 ? "" : "s",
                static_cast<unsigned long long>(b.creator_pid), static_cast<unsigned long long>(b.owner_uid));
  for (const proto::channel_entry& c : d.channels)
    std::printf("  channel %-23s %llu/%u readers, %s ring, %s backlog, %s held, %llu messages, writer pid %llu%s\n",
                cli::terminal_text(c.name).c_str(), static_cast<unsigned long long>(c.readers), c.max_readers,
                cli::bytes_text(static_cast<long double>(c.capacity)).c_str(),
                cli::bytes_text(static_cast<long double>(c.backlog)).c_str(),
                cli::bytes_text(static_cast<long double>(c.held_bytes)).c_str(),
                static_cast<unsigned long long>(c.messages), static_cast<unsigned long long>(c.writer_pid),
                c.writer_state == 2   ? " (dead)"
                : c.writer_state == 3 ? " (closed)"
                                      : "");
  return 0;
}

}  // namespace poolshim::stats_tool

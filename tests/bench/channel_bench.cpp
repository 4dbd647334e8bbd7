// Channels from C (issue #15), writer and reader in two processes, in one run against a daemon of
// its own: one-way latency p50/p99 for 4 KiB to 16 MiB, paced (one message in flight), of a
// channel's send (one copy into the ring), the same with the reader spinning up to 50 ms before it
// sleeps (busy-polling), a reservation filled in place (no copy; the reader busy-polling), ZeroMQ ipc:// PUSH/PULL
// (Debian's libzmq5, loaded at run time; skipped without it) and a Unix stream socket, beside one memcpy; then
// throughput (messages back to back), and the threshold: 1 MiB inline against the same through
// a buffer of its own. Each size has a channel of its own, its ring four times the message.
//
// usage: channel_bench --daemon poolshimd [--count N] [--tp-count N]
#include <dlfcn.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "child_process.h"
#include "poolshim/channel.h"

namespace {

using child_process::now_us;
using child_process::read_line;
using child_process::spawn_self;

const std::vector<std::size_t> k_sizes = {4096, 65536, std::size_t{1} << 20, std::size_t{4} << 20,
                                          std::size_t{16} << 20};
int g_count = 200;

struct p50_p99 {
  double p50 = 0, p99 = 0;
};

p50_p99 percentiles(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[v.size() * 99 / 100]};
}

// ZeroMQ's C API, loaded at run time (no build dependency on its headers).
struct zmq_api {
  void* (*ctx_new)();
  void* (*socket)(void*, int);
  int (*bind)(void*, const char*);
  int (*connect)(void*, const char*);
  int (*send)(void*, const void*, std::size_t, int);
  int (*msg_init)(void*);
  int (*msg_recv)(void*, void*, int);
  void* (*msg_data)(void*);
  int (*msg_close)(void*);
  int (*close)(void*);
  int (*setsockopt)(void*, int, const void*, std::size_t);
  bool ok = false;
};
constexpr int k_zmq_push = 8, k_zmq_pull = 7, k_zmq_linger = 17, k_zmq_sndhwm = 23, k_zmq_rcvhwm = 24;

zmq_api load_zmq() {
  zmq_api z{};
  void* lib = dlopen("libzmq.so.5", RTLD_NOW);
  if (lib == nullptr) return z;
  auto sym = [&](const char* name, auto* out) {
    *out = reinterpret_cast<std::remove_reference_t<decltype(*out)>>(dlsym(lib, name));
    return *out != nullptr;
  };
  z.ok = sym("zmq_ctx_new", &z.ctx_new) && sym("zmq_socket", &z.socket) && sym("zmq_bind", &z.bind) &&
         sym("zmq_connect", &z.connect) && sym("zmq_send", &z.send) && sym("zmq_msg_init", &z.msg_init) &&
         sym("zmq_msg_recv", &z.msg_recv) && sym("zmq_msg_data", &z.msg_data) && sym("zmq_msg_close", &z.msg_close) &&
         sym("zmq_close", &z.close) && sym("zmq_setsockopt", &z.setsockopt);
  return z;
}

// The pace of a latency run: one message in flight, the next after this one's delivery. The sender
// sleeps meanwhile (a spinning sender would take a core from ZeroMQ's I/O threads).
void pace(double t0, std::size_t size) {
  const double until = t0 + 100 + static_cast<double>(size) / 1000.0;
  const double left = until - now_us();
  if (left > 0) usleep(static_cast<useconds_t>(left));
}

// ---- readers (children) ----
// `count` messages from channel NAME; prints "p50 p99" of their one-way latency.
int channel_reader(const char* name, int spin_us, int count) {
  poolshim_channel* c = nullptr;
  if (poolshim_channel_open(name, 0, &c) != POOLSHIM_OK || poolshim_channel_set_spin(c, spin_us) != POOLSHIM_OK) {
    std::printf("open: %s\n", poolshim_buffer_error());
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  std::vector<double> lat;
  for (int k = 0; k < count; ++k) {
    const void* p = nullptr;
    std::size_t bytes = 0;
    if (poolshim_channel_recv(c, &p, &bytes, 30000) != POOLSHIM_OK) return 1;
    double sent = 0;
    std::memcpy(&sent, p, sizeof sent);
    lat.push_back(now_us() - sent);
    poolshim_channel_release(c);
  }
  const p50_p99 r = percentiles(lat);
  std::printf("%.2f %.2f\n", r.p50, r.p99);
  std::fflush(stdout);
  poolshim_channel_close(c);
  return 0;
}

int zmq_reader(const char* endpoint, bool paced, int count) {
  const zmq_api z = load_zmq();
  void* s = z.socket(z.ctx_new(), k_zmq_pull);
  const int hwm = 4;
  z.setsockopt(s, k_zmq_rcvhwm, &hwm, sizeof hwm);
  if (z.connect(s, endpoint) != 0) return 1;
  std::printf("ready\n");
  std::fflush(stdout);
  alignas(8) unsigned char msg[64];  // zmq_msg_t: received in place, as the channel's reader does
  for (std::size_t s_i = 0; s_i < k_sizes.size(); ++s_i) {
    std::vector<double> lat;
    for (int k = 0; k < count; ++k) {
      z.msg_init(msg);
      if (z.msg_recv(msg, s, 0) < 0) return 1;
      double sent = 0;
      std::memcpy(&sent, z.msg_data(msg), sizeof sent);
      lat.push_back(now_us() - sent);
      z.msg_close(msg);
    }
    const p50_p99 r = percentiles(lat);
    std::printf("%.2f %.2f%s", r.p50, r.p99, s_i + 1 < k_sizes.size() ? " " : "\n");
    if (!paced) std::printf("\n");
    std::fflush(stdout);
  }
  return 0;
}

// ---- the writer's side of each way ----
struct way_result {
  std::vector<p50_p99> latency;  // per size
};

std::vector<p50_p99> parse(const std::string& line) {
  std::vector<p50_p99> out;
  const char* p = line.c_str();
  char* end = nullptr;
  for (;;) {
    p50_p99 r;
    r.p50 = std::strtod(p, &end);
    if (end == p) break;
    p = end;
    r.p99 = std::strtod(p, &end);
    p = end;
    out.push_back(r);
  }
  return out;
}

// The ring for messages of `size` bytes: four times the message (half the ring is the largest
// inline one), at least 64 KiB: sized to the message, as a user would, so that it stays in cache.
std::uint64_t ring_for(std::size_t size) {
  std::uint64_t c = 64 * 1024;
  while (c < 4 * static_cast<std::uint64_t>(size)) c *= 2;
  return c;
}

// A channel of `capacity` and its reader process (spinning `spin_us` before it sleeps).
struct channel_run {
  poolshim_channel* w = nullptr;
  pid_t reader = -1;
  int out = -1;
  bool start(const std::string& name, std::uint64_t capacity, int spin_us, int count = g_count) {
    if (poolshim_channel_create(name.c_str(), capacity, 1, 0, &w) != POOLSHIM_OK) {
      std::printf("channel_bench: FAIL: create %s: %s\n", name.c_str(), poolshim_buffer_error());
      return false;
    }
    reader = spawn_self({"channel-reader", name, std::to_string(spin_us), std::to_string(count)}, &out);
    std::string line;
    return reader > 0 && read_line(out, &line) && line == "ready";
  }
  // The reader's line once it has every message; false if it failed.
  bool finish(std::string* line) {
    const bool got = read_line(out, line, 60000);
    if (reader > 0) waitpid(reader, nullptr, 0);
    if (out >= 0) close(out);
    if (w != nullptr) poolshim_channel_close(w);
    return got;
  }
};

// One message of `size` bytes stamped with the time `t`: reserved and filled in place, or copied
// in by send.
bool send_one(poolshim_channel* w, std::vector<unsigned char>& payload, std::size_t size, double t, bool reserve) {
  if (reserve) {
    void* where = nullptr;
    if (poolshim_channel_reserve(w, size, &where, 30000) != POOLSHIM_OK) return false;
    std::memcpy(where, &t, sizeof t);  // the payload is made in place: nothing else to copy
    return poolshim_channel_commit(w, 30000) == POOLSHIM_OK;
  }
  std::memcpy(payload.data(), &t, sizeof t);
  return poolshim_channel_send(w, payload.data(), size, 30000) == POOLSHIM_OK;
}

// One size's latency through a channel of `capacity`, paced.
p50_p99 channel_size_latency(const std::string& name, std::size_t size, std::uint64_t capacity, int reader_spin_us,
                             bool reserve) {
  channel_run run;
  std::string line;
  bool ok = run.start(name, capacity, reader_spin_us);
  std::vector<unsigned char> payload(size, 0x5a);
  for (int k = 0; k < g_count && ok; ++k) {
    const double t = now_us();
    ok = send_one(run.w, payload, size, t, reserve);
    pace(t, size);
  }
  const bool got = run.finish(&line) && ok;
  if (!got) std::printf("channel_bench: FAIL: %s: %s\n", name.c_str(), poolshim_buffer_error());
  const std::vector<p50_p99> r = got ? parse(line) : std::vector<p50_p99>{};
  return r.empty() ? p50_p99{} : r[0];
}

std::vector<p50_p99> channel_latency(const std::string& name, int reader_spin_us, bool reserve) {
  std::vector<p50_p99> out;
  for (const std::size_t size : k_sizes) {
    const p50_p99 r =
        channel_size_latency(name + "." + std::to_string(size), size, ring_for(size), reader_spin_us, reserve);
    if (r.p50 == 0) return {};
    out.push_back(r);
  }
  return out;
}

std::vector<p50_p99> zmq_latency(const zmq_api& z, const std::string& endpoint) {
  void* s = z.socket(z.ctx_new(), k_zmq_push);
  if (z.bind(s, endpoint.c_str()) != 0) return {};
  int out = -1;
  const pid_t rd = spawn_self({"zmq-reader", endpoint, "paced", std::to_string(g_count)}, &out);
  std::string line;
  if (rd < 0 || !read_line(out, &line) || line != "ready") return {};
  std::vector<unsigned char> payload(k_sizes.back(), 0x5a);
  for (const std::size_t size : k_sizes)
    for (int k = 0; k < g_count; ++k) {
      const double t = now_us();
      std::memcpy(payload.data(), &t, sizeof t);
      z.send(s, payload.data(), size, 0);
      pace(t, size);
    }
  const bool got = read_line(out, &line, 60000);
  waitpid(rd, nullptr, 0);
  close(out);
  const int linger = 0;
  z.setsockopt(s, k_zmq_linger, &linger, sizeof linger);
  z.close(s);
  return got ? parse(line) : std::vector<p50_p99>{};
}

std::vector<p50_p99> unix_latency() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return {};
  int res[2];
  if (pipe(res) != 0) return {};
  const pid_t child = fork();
  if (child == 0) {
    close(sv[0]);
    std::vector<unsigned char> in(k_sizes.back());
    std::string line;
    for (const std::size_t size : k_sizes) {
      std::vector<double> lat;
      for (int k = 0; k < g_count; ++k) {
        std::size_t got = 0;
        while (got < size) {
          const ssize_t n = read(sv[1], in.data() + got, size - got);
          if (n <= 0) _exit(1);
          got += static_cast<std::size_t>(n);
        }
        double sent = 0;
        std::memcpy(&sent, in.data(), sizeof sent);
        lat.push_back(now_us() - sent);
      }
      const p50_p99 r = percentiles(lat);
      line += std::to_string(r.p50) + " " + std::to_string(r.p99) + " ";
    }
    line += "\n";
    (void)!write(res[1], line.data(), line.size());
    _exit(0);
  }
  close(sv[1]);
  close(res[1]);
  std::vector<unsigned char> payload(k_sizes.back(), 0x5a);
  for (const std::size_t size : k_sizes)
    for (int k = 0; k < g_count; ++k) {
      const double t = now_us();
      std::memcpy(payload.data(), &t, sizeof t);
      std::size_t put = 0;
      while (put < size) {
        const ssize_t n = write(sv[0], payload.data() + put, size - put);
        if (n <= 0) break;
        put += static_cast<std::size_t>(n);
      }
      pace(t, size);
    }
  std::string line;
  const bool got = read_line(res[0], &line, 60000);
  waitpid(child, nullptr, 0);
  close(sv[0]);
  close(res[0]);
  return got ? parse(line) : std::vector<p50_p99>{};
}

// Throughput: k_tp_count messages of each size back to back (--tp-count; 1000 by default); the time
// from the first send to the reader's line (it has them all).
int k_tp_count = 1000;

std::vector<double> channel_throughput() {
  std::vector<double> rate;
  for (const std::size_t size : k_sizes) {
    channel_run run;
    std::string line;
    // A ring of the Python package's default (16 MiB) or four messages: room to run ahead.
    if (!run.start("bench.tp." + std::to_string(size), std::max<std::uint64_t>(ring_for(size), 16u << 20), 20,
                   k_tp_count))
      return {};
    std::vector<unsigned char> payload(size, 0x5a);
    const double t0 = now_us();
    for (int k = 0; k < k_tp_count; ++k)
      if (!send_one(run.w, payload, size, now_us(), false)) return {};
    if (!run.finish(&line)) return {};
    rate.push_back(k_tp_count / ((now_us() - t0) / 1e6));
  }
  return rate;
}

std::vector<double> zmq_throughput(const zmq_api& z, const std::string& endpoint) {
  void* s = z.socket(z.ctx_new(), k_zmq_push);
  const int hwm = 4;
  z.setsockopt(s, k_zmq_sndhwm, &hwm, sizeof hwm);
  if (z.bind(s, endpoint.c_str()) != 0) return {};
  int out = -1;
  const pid_t rd = spawn_self({"zmq-reader", endpoint, "unpaced", std::to_string(k_tp_count)}, &out);
  std::string line;
  if (rd < 0 || !read_line(out, &line) || line != "ready") return {};
  std::vector<unsigned char> payload(k_sizes.back(), 0x5a);
  std::vector<double> rate;
  for (const std::size_t size : k_sizes) {
    const double t0 = now_us();
    for (int k = 0; k < k_tp_count; ++k) {
      const double t = now_us();
      std::memcpy(payload.data(), &t, sizeof t);
      z.send(s, payload.data(), size, 0);
    }
    if (!read_line(out, &line, 60000)) return {};
    rate.push_back(k_tp_count / ((now_us() - t0) / 1e6));
  }
  waitpid(rd, nullptr, 0);
  close(out);
  z.close(s);
  return rate;
}

void print_row(const char* name, const std::vector<p50_p99>& r) {
  std::printf("%-30s", name);
  for (std::size_t i = 0; i < k_sizes.size(); ++i)
    if (i < r.size())
      std::printf(" %8.1f/%8.1f", r[i].p50, r[i].p99);
    else
      std::printf(" %17s", "-");
  std::printf("\n");
}

int run(const char* daemon) {
  char dir[] = "/tmp/poolshim-chbench-XXXXXX";
  if (mkdtemp(dir) == nullptr) return 1;
  const std::string sock = std::string(dir) + "/poolshimd.sock";
  setenv("POOLSHIM_SOCKET", sock.c_str(), 1);
  const pid_t d = fork();
  if (d == 0) {
    execl(daemon, daemon, "--socket", sock.c_str(), "--region", "1G", "--slab", "16M", static_cast<char*>(nullptr));
    _exit(127);
  }
  poolshim_channel* probe = nullptr;
  int rc = POOLSHIM_ENODAEMON;
  for (int i = 0; i < 500 && rc == POOLSHIM_ENODAEMON; ++i) {
    rc = poolshim_channel_create("bench.probe", 4096, 1, 0, &probe);
    if (rc == POOLSHIM_ENODAEMON) usleep(10000);
  }
  if (probe != nullptr) poolshim_channel_close(probe);
  int failures = rc == POOLSHIM_OK ? 0 : 1;
  if (failures == 0) {
    const zmq_api z = load_zmq();
    std::vector<std::pair<std::string, std::vector<p50_p99>>> rows;
    rows.emplace_back("channel send", channel_latency("bench.send", 20, false));
    rows.emplace_back("channel, reader busy-polls", channel_latency("bench.spin", 50000, false));
    rows.emplace_back("channel reserve (in place)", channel_latency("bench.res", 50000, true));
    if (z.ok) rows.emplace_back("zmq ipc (PUSH/PULL)", zmq_latency(z, std::string("ipc://") + dir + "/zmq.ipc"));
    rows.emplace_back("unix socket", unix_latency());
    // One memcpy of the payload under the same conditions as a channel's send: paced the same way
    // (the caches cool while the sender sleeps), into a destination that cycles as the ring does
    // (four times the message).
    std::vector<p50_p99> copy;
    for (const std::size_t size : k_sizes) {
      std::vector<unsigned char> a(size, 1), ring(4 * size, 0);
      std::vector<double> t;
      for (int k = 0; k < g_count; ++k) {
        unsigned char* dst = ring.data() + (k % 4) * size;
        const double t0 = now_us();
        std::memcpy(dst, a.data(), size);
        t.push_back(now_us() - t0);
        a[k % size] = static_cast<unsigned char>(dst[(k * 7) % size] + 1);  // the copies are used
        pace(t0, size);
      }
      copy.push_back(percentiles(t));
    }
    std::printf("one-way latency, %d messages per size and way, two processes, p50/p99 in microseconds:\n", g_count);
    std::printf("%-30s", "way");
    for (const std::size_t size : k_sizes) std::printf(" %13zu KiB", size >> 10);
    std::printf("\n");
    for (const auto& [name, r] : rows) {
      print_row(name.c_str(), r);
      failures += r.size() != k_sizes.size();
    }
    print_row("one memcpy (paced alike)", copy);
    if (z.ok) {
      const auto& zq = rows[3].second;
      for (std::size_t w = 0; w < 3; ++w) {
        std::printf("%-30s", ("zmq / " + rows[w].first).c_str());
        for (std::size_t i = 0; i < rows[w].second.size() && i < zq.size(); ++i)
          std::printf(" %16.1fx", zq[i].p50 / rows[w].second[i].p50);
        std::printf("\n");
      }
    } else {
      std::printf("(no libzmq.so.5 here: apt-get install libzmq5 for the ZeroMQ row)\n");
    }
    std::printf("%-30s", "channel send / one memcpy");
    for (std::size_t i = 0; i < rows[0].second.size(); ++i)
      std::printf(" %16.1fx", rows[0].second[i].p50 / copy[i].p50);
    std::printf("\n\nthroughput, %d messages per size back to back (messages/s):\n", k_tp_count);
    const std::vector<double> ct = channel_throughput();
    const std::vector<double> zt =
        z.ok ? zmq_throughput(z, std::string("ipc://") + dir + "/zmq-tp.ipc") : std::vector<double>{};
    failures += ct.size() != k_sizes.size();
    for (std::size_t i = 0; i < ct.size(); ++i)
      std::printf("  %8zu KiB: channel %9.0f/s (%6.2f GB/s)   zmq %9.0f/s (%6.2f GB/s)\n", k_sizes[i] >> 10, ct[i],
                  ct[i] * static_cast<double>(k_sizes[i]) / 1e9, i < zt.size() ? zt[i] : 0.0,
                  i < zt.size() ? zt[i] * static_cast<double>(k_sizes[i]) / 1e9 : 0.0);
    // The threshold: 1 MiB inline (a 4 MiB ring) against the same through a buffer of its own (a
    // 64 KiB ring, where it cannot go inline).
    const std::size_t mib = std::size_t{1} << 20;
    const p50_p99 in_ring = channel_size_latency("bench.mib.inline", mib, ring_for(mib), 20, false);
    const p50_p99 own = channel_size_latency("bench.mib.own", mib, 64 * 1024, 20, false);
    std::printf("\nthreshold: 1 MiB one-way p50/p99: inline %.1f/%.1f us; through a buffer of its own %.1f/%.1f us\n",
                in_ring.p50, in_ring.p99, own.p50, own.p99);
    failures += in_ring.p50 == 0 || own.p50 == 0;
  } else {
    std::printf("channel_bench: FAIL: no daemon at %s: %s\n", sock.c_str(), poolshim_buffer_error());
  }
  kill(d, SIGTERM);
  waitpid(d, nullptr, 0);
  std::error_code ignored;  // the socket, the daemon's identity key and the ZeroMQ endpoints
  std::filesystem::remove_all(dir, ignored);
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  // The count reaches the readers (children) through the environment.
  for (std::size_t i = 0; i + 1 < a.size(); ++i)
    if (a[i] == "--count") setenv("POOLSHIM_BENCH_COUNT", a[i + 1].c_str(), 1);
  for (std::size_t i = 0; i + 1 < a.size(); ++i)
    if (a[i] == "--tp-count") k_tp_count = std::max(10, std::atoi(a[i + 1].c_str()));
  if (const char* c = std::getenv("POOLSHIM_BENCH_COUNT")) g_count = std::max(10, std::atoi(c));
  if (a.size() >= 4 && a[0] == "channel-reader")
    return channel_reader(a[1].c_str(), std::atoi(a[2].c_str()), std::atoi(a[3].c_str()));
  if (a.size() >= 4 && a[0] == "zmq-reader") return zmq_reader(a[1].c_str(), a[2] == "paced", std::atoi(a[3].c_str()));
  if (a.size() >= 2 && a[0] == "--daemon") return run(a[1].c_str());
  std::fprintf(stderr,
               "usage: channel_bench --daemon poolshimd [--count N] [--tp-count N]\n"
               "  one-way latency (--count messages a size and way, default 200), throughput (--tp-count\n"
               "  messages a size, default 1000) and the inline threshold of channels, against ZeroMQ and a\n"
               "  Unix socket\n");
  return a.size() == 1 && (a[0] == "--help" || a[0] == "-h") ? 0 : 2;
}

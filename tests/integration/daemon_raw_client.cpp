// A protocol-level client of poolshimd for the daemon tests and benchmark (no CUDA, no shim):
//   bench N          N lease+return round trips: prints the mean round trip and leases per second
//   hold K           lease K slabs, write a pattern into each, print "ready", wait for stdin EOF
//   fresh            lease one slab and check that every byte is zero (memory another uid held is
//                    never lent again), then print "fresh" and return it
//   steal LEASE      try to return another client's lease: prints the daemon's status name
//   await-lent B MS  poll until at most B bytes are lent; print the ms elapsed since MS (epoch ms)
//   resolve HEX      try to resolve an IPC token (32 hex digits): prints the daemon's status name
//   squeeze S        lease until the daemon refuses, then retry every 50 ms for up to S seconds:
//                    prints how many it got at first and whether one came after the refusal
// The socket comes from POOLSHIM_SOCKET (the shim's option table). Exit 0 on success, 1 when a check
// fails, 2 on errors.
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "poolshim/config.h"
#include "poolshim/protocol.h"
#include "poolshim/transport.h"

namespace proto = poolshim::proto;

namespace {

int g_sock = -1;
std::uint32_t g_seq = 0;

proto::status send(const proto::request& q, proto::reply* r, int* fd_out = nullptr) {
  if (proto::exchange(g_sock, q, -1, r, fd_out) != proto::exchange_status::ok) {
    std::fprintf(stderr, "daemon_raw_client: no valid reply\n");
    std::exit(2);
  }
  return static_cast<proto::status>(r->status);
}

proto::status ask(proto::op o, std::uint64_t arg0, proto::reply* r, int* fd_out = nullptr) {
  proto::request q = proto::make_request(o, ++g_seq);
  q.arg[0] = arg0;
  return send(q, r, fd_out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s bench N | hold K | fresh | steal LEASE | squeeze S\n", argv[0]);
    return 2;
  }
  const std::string path = proto::socket_path(poolshim::opt::read_one(&poolshim::config::socket));
  std::string why;
  if (!proto::trusted_directory(path, getuid(), &why) || (g_sock = proto::connect_seqpacket(path, &why)) < 0 ||
      !proto::trusted_peer(g_sock, getuid(), &why)) {
    std::fprintf(stderr, "daemon_raw_client: %s\n", why.c_str());
    return 2;
  }
  proto::reply r{};
  if (ask(proto::op::hello, 0, &r) != proto::status::ok) return 2;
  const std::uint64_t slab = r.val[0];
  const std::string cmd = argv[1];
  if (cmd == "bench" && argc == 3) {
    // Rounds of: lease every ready slab (each lease timed), return them all (timed), let the
    // fillers refill. Then the bare protocol round trip (stats) many times.
    using clock = std::chrono::steady_clock;
    const long rounds = std::atol(argv[2]);
    double lease_s = 0, return_s = 0;
    long leases = 0;
    for (long round = 0; round < rounds; ++round) {
      std::vector<std::uint64_t> held;
      for (;;) {
        int fd = -1;
        const auto t0 = clock::now();
        if (ask(proto::op::lease_slab, slab, &r, &fd) != proto::status::ok) break;
        lease_s += std::chrono::duration<double>(clock::now() - t0).count();
        ++leases;
        held.push_back(r.val[0]);
        close(fd);
      }
      const auto t1 = clock::now();
      for (std::uint64_t l : held)
        if (ask(proto::op::return_slab, l, &r) != proto::status::ok) return 2;
      return_s += std::chrono::duration<double>(clock::now() - t1).count();
      usleep(1500000);  // the fillers replace what came back
    }
    const long n = 20000;
    const auto t2 = clock::now();
    for (long i = 0; i < n; ++i) ask(proto::op::stats, 0, &r);
    const double s = std::chrono::duration<double>(clock::now() - t2).count();
    std::printf(
        "lease_us=%.1f return_us=%.1f (%ld leases of %llu MiB slabs, each filled ahead) "
        "round_trip_us=%.1f ops_per_s=%.0f (stats requests)\n",
        leases ? lease_s / static_cast<double>(leases) * 1e6 : 0.0,
        leases ? return_s / static_cast<double>(leases) * 1e6 : 0.0, leases,
        static_cast<unsigned long long>(slab >> 20), s / n * 1e6, n / s);
    return leases > 0 ? 0 : 1;
  }
  if (cmd == "hold" && argc == 3) {
    const int k = std::atoi(argv[2]);
    std::vector<std::uint64_t> leases;
    for (int i = 0; i < k; ++i) {
      int fd = -1;
      if (ask(proto::op::lease_slab, slab, &r, &fd) != proto::status::ok) return 2;
      leases.push_back(r.val[0]);
      void* p = mmap(nullptr, slab, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (p == MAP_FAILED) return 2;
      std::memset(p, 0xa5, slab);
      munmap(p, slab);
      close(fd);
    }
    std::printf("ready leases=");
    for (std::uint64_t l : leases) std::printf("%llu,", static_cast<unsigned long long>(l));
    std::printf("\n");
    std::fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {
    }
    return 0;
  }
  if (cmd == "fresh") {
    int fd = -1;
    if (ask(proto::op::lease_slab, slab, &r, &fd) != proto::status::ok) return 2;
    auto* p = static_cast<unsigned char*>(mmap(nullptr, slab, PROT_READ, MAP_SHARED, fd, 0));
    if (p == MAP_FAILED) return 2;
    std::size_t nonzero = 0;
    for (std::size_t i = 0; i < slab; ++i) nonzero += p[i] != 0;
    munmap(p, slab);
    close(fd);
    ask(proto::op::return_slab, r.val[0], &r);
    std::printf("%s nonzero_bytes=%zu\n", nonzero == 0 ? "fresh" : "USED", nonzero);
    return nonzero == 0 ? 0 : 1;
  }
  if (cmd == "squeeze" && argc == 3) {
    const double limit = std::atof(argv[2]);
    int first = 0, later = 0;
    int fd = -1;
    while (ask(proto::op::lease_slab, slab, &r, &fd) == proto::status::ok) {
      close(fd);
      ++first;
    }
    const auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < limit) {
      usleep(50000);
      if (ask(proto::op::lease_slab, slab, &r, &fd) == proto::status::ok) {
        close(fd);
        ++later;
        break;
      }
    }
    std::printf("squeezed first=%d after_refusal=%d wait_s=%.2f\n", first, later,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return later > 0 ? 0 : 1;
  }
  if (cmd == "resolve" && argc == 3 && std::strlen(argv[2]) == 2 * proto::k_token_size) {
    proto::request q = proto::make_request(proto::op::ipc_resolve, ++g_seq);
    for (std::size_t i = 0; i < proto::k_token_size; ++i)
      q.payload[i] = static_cast<std::uint8_t>(std::strtoul(std::string(argv[2] + 2 * i, 2).c_str(), nullptr, 16));
    std::printf("%s\n", proto::status_name(send(q, &r)));
    return 0;
  }
  if (cmd == "await-lent" && argc == 4) {
    // Polls the daemon's figures over this connection (every 0.2 ms) until at most BYTES are lent;
    // prints the milliseconds since SINCE_MS (wall clock, the caller's moment of kill -9).
    const std::uint64_t bytes = std::strtoull(argv[2], nullptr, 10);
    const long long since = std::atoll(argv[3]);
    const auto wall_ms = [] {
      return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
                 .count() /
             1000.0;
    };
    for (int i = 0; i < 50000; ++i) {
      if (ask(proto::op::stats, 0, &r) == proto::status::ok && r.val[1] <= bytes) {
        std::printf("%.1f\n", wall_ms() - static_cast<double>(since));
        return 0;
      }
      usleep(200);
    }
    return 1;
  }
  if (cmd == "steal" && argc == 3) {
    const proto::status s = ask(proto::op::return_slab, std::strtoull(argv[2], nullptr, 10), &r);
    std::printf("%s\n", proto::status_name(s));
    return 0;
  }
  std::fprintf(stderr, "daemon_raw_client: unknown command\n");
  return 2;
}

// poolshimd's handler under random sequences of records (issue #13: the protocol fuzzer reaches
// validate_request only). Each sequence runs against a server of its own, driven without its event
// loop (server::test_*: clients on socketpairs, records fed straight to the handler, a test clock):
// clients connect and exit, records of every op — valid, out of range, corrupted — carry
// descriptors of every type (daemon slabs, key-named and plain memfds, sealed or not, of the wrong
// size, pipes, /dev/null, sockets, TCP sockets, eventfds, directories, files), leases are returned
// or kept, time moves on (the idle sweep). After every step the daemon's figures must agree with
// its clients' leases; after every sequence nothing may be left lent and no descriptor left open.
//
// usage: poolshim_handler_fuzz [SECONDS (default 3)] [SEED (default 1)]
// Prints what it ran; exits 1 with the seed, sequence and step of the first broken invariant.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "open_fds.h"
#include "poolshim/protocol.h"
#include "poolshimd/log.h"
#include "poolshimd/server.h"
#include "poolshimd/slab_identity.h"

namespace pd = poolshim::daemon;
namespace proto = poolshim::proto;

namespace {

constexpr std::uint64_t kSlab = std::uint64_t{2} << 20;

struct rng {
  std::uint64_t s;
  std::uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  std::uint32_t below(std::uint32_t n) { return static_cast<std::uint32_t>(next() % n); }
};

enum fd_kind {
  k_none,
  k_lent_slab,    // a descriptor of a slab this daemon lent (a dup)
  k_keyed_slab,   // a sealed memfd named with the daemon's key (as a predecessor lent it)
  k_plain_slab,   // sealed, slab-sized, any name
  k_unsealed,     // slab-sized, not sealed
  k_wrong_size,   // sealed, half a slab
  k_pipe,         // a pipe's read end
  k_dev_null,     // /dev/null
  k_unix_socket,  // one end of a socketpair
  k_tcp_socket,   // a connected TCP socket on loopback
  k_eventfd,      // an eventfd
  k_directory,    // a directory
  k_file,         // a regular file on disk
  k_kinds
};
const char* kind_name(int k) {
  static const char* names[] = {"none",    "lent_slab",   "keyed_slab", "plain_slab", "unsealed",  "wrong_size", "pipe",
                                "devnull", "unix_socket", "tcp_socket", "eventfd",    "directory", "file"};
  return names[k];
}

struct held {
  std::uint64_t client;
  std::uint64_t lease;
  int fd;  // -1 once closed (the lease may still stand)
};

struct figures {
  std::uint64_t sequences = 0, steps = 0, records = 0;
  std::map<int, std::uint64_t> statuses;
  std::map<std::pair<int, int>, std::uint64_t> by_op;  // (op, status) of records whose op is known
  std::uint64_t kinds[k_kinds] = {};
};

class sequence {
 public:
  sequence(rng& r, figures& f, const std::string& dir) : r_(r), f_(f), dir_(dir) {}

  // False (and *why) on the first broken invariant.
  bool run(int steps, std::string* why) {
    pd::server_options o;
    o.socket_path = dir_ + "/poolshimd.sock";
    o.region.slab_bytes = kSlab;
    o.region.total_bytes = 6 * kSlab;
    o.region.fill_threads = 1;
    o.client_quota = 2 * kSlab;
    o.uid_quota = 3 * kSlab;
    o.idle_timeout = std::chrono::seconds(2);
    o.uid_connections = 4;
    std::string key_why;
    key_ = pd::load_identity_key(dir_ + "/poolshimd.key", &key_why);
    server_ = std::make_unique<pd::server>(o);
    for (int i = 0; i < 2; ++i) {
      const auto c = server_->test_connect(static_cast<pid_t>(4000000 + i), 60000);
      clients_[c.id] = c.peer;
    }
    for (int step = 0; step < steps; ++step) {
      ++f_.steps;
      act();
      if (!check(why)) {
        *why = "step " + std::to_string(step) + ": " + *why;
        return false;
      }
    }
    // The end: every client's process exits; nothing stays lent.
    for (auto& [id, peer] : clients_) server_->test_exit(id);
    const proto::daemon_status s = server_->test_status();
    if (s.lent_bytes != 0) {
      *why = "after every client exited, " + std::to_string(s.lent_bytes) + " bytes are still lent";
      return false;
    }
    for (held& h : held_)
      if (h.fd >= 0) close(h.fd);
    for (auto& [id, peer] : clients_) close(peer);
    server_.reset();
    return true;
  }

 private:
  void act() {
    switch (r_.below(10)) {
      case 0:
      case 1:
        if (clients_.size() < 8) {
          // A few processes (pids that are not running: quotas per pid) of three uids.
          const auto c = server_->test_connect(static_cast<pid_t>(4000000 + r_.below(4)), 60000 + r_.below(3));
          clients_[c.id] = c.peer;
          break;
        }
        [[fallthrough]];
      case 2:
      case 3:
      case 4:
        record();
        break;
      case 5:
        give_back();
        break;
      case 6:
        server_->test_advance(std::chrono::milliseconds(r_.below(4) == 0 ? 500 * r_.below(8) : 10 * r_.below(20)));
        break;
      case 7:
        if (!clients_.empty()) {
          auto it = std::next(clients_.begin(), r_.below(static_cast<std::uint32_t>(clients_.size())));
          server_->test_exit(it->first);
          close(it->second);
          clients_.erase(it);
        }
        break;
      default:
        if (!held_.empty()) {  // let a slab go (the lease stands)
          held& h = held_[r_.below(static_cast<std::uint32_t>(held_.size()))];
          if (h.fd >= 0) close(h.fd);
          h.fd = -1;
        }
        break;
    }
  }

  std::uint64_t any_client() {
    if (clients_.empty() || r_.below(16) == 0) return 1000 + r_.below(4);  // one that is not there
    return std::next(clients_.begin(), r_.below(static_cast<std::uint32_t>(clients_.size())))->first;
  }

  std::uint64_t interesting() {
    static const std::uint64_t values[] = {
        0, 1, kSlab - 1, kSlab, kSlab + 1, 2 * kSlab, 2u << 20, 64u << 20, std::uint64_t{1} << 40, ~0ull, 7, 4096};
    if (r_.below(4) == 0) return r_.next();
    if (r_.below(3) == 0 && !held_.empty()) return held_[r_.below(static_cast<std::uint32_t>(held_.size()))].lease;
    return values[r_.below(sizeof values / sizeof values[0])];
  }

  int make_fd(int kind) {
    ++f_.kinds[kind];
    switch (kind) {
      case k_lent_slab:
        for (const held& h : held_)
          if (h.fd >= 0) return fcntl(h.fd, F_DUPFD_CLOEXEC, 0);
        return -1;
      case k_keyed_slab:
      case k_plain_slab:
      case k_unsealed:
      case k_wrong_size: {
        const std::string name = kind == k_keyed_slab ? pd::slab_name(key_, r_.next() | 1) : "fuzz-memfd";
        const int fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0) return -1;
        if (ftruncate(fd, static_cast<off_t>(kind == k_wrong_size ? kSlab / 2 : kSlab)) != 0) return fd;
        if (kind != k_unsealed) (void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
        std::uint64_t serial = 0;
        if (kind == k_keyed_slab && pd::slab_serial(key_, fd, &serial))  // lent to one of the uids, or none
          (void)pd::tag_owner(key_, fd, serial, 60000 + r_.below(4));
        return fd;
      }
      case k_pipe: {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) return -1;
        close(p[1]);
        return p[0];
      }
      case k_dev_null:
        return open("/dev/null", O_RDWR | O_CLOEXEC);
      case k_unix_socket: {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -1;
        close(sv[1]);
        return sv[0];
      }
      case k_tcp_socket:
        return tcp_socket();
      case k_eventfd:
        return eventfd(0, EFD_CLOEXEC);
      case k_directory:
        return open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      case k_file: {
        const int fd = open(dir_.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0 && r_.below(2) == 0) (void)!ftruncate(fd, static_cast<off_t>(kSlab));
        return fd;
      }
      default:
        return -1;
    }
  }

  // A connected TCP socket on loopback (its peer closed), with SO_LINGER set now and then.
  int tcp_socket() {
    const int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (l < 0 || bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(l, 1) != 0 ||
        getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      if (l >= 0) close(l);
      return -1;
    }
    const int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c >= 0 && connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      const int s = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
      if (s >= 0) close(s);
      if (r_.below(2) == 0) {
        const linger lg{1, 1};
        (void)setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      }
    }
    close(l);
    return c;
  }

  void record() {
    ++f_.records;
    if (clients_.empty()) {
      const auto c = server_->test_connect(static_cast<pid_t>(4000000 + r_.below(4)), 60000 + r_.below(3));
      clients_[c.id] = c.peer;
    }
    const std::uint64_t client = any_client();
    // Every op, leases and re-declarations more often, goodbyes less (each one ends a client).
    static const proto::op ops[] = {
        proto::op::lease_slab,   proto::op::lease_slab,   proto::op::lease_slab,     proto::op::lease_slab,
        proto::op::return_slab,  proto::op::return_slab,  proto::op::redeclare_slab, proto::op::redeclare_slab,
        proto::op::hello,        proto::op::stats,        proto::op::client_stats,   proto::op::return_idle,
        proto::op::ipc_register, proto::op::ipc_register, proto::op::ipc_resolve,    proto::op::ipc_unregister,
        proto::op::lease_device, proto::op::goodbye,      proto::op::buffer_create,  proto::op::buffer_create,
        proto::op::buffer_open,  proto::op::buffer_open,  proto::op::buffer_close,   proto::op::buffer_unlink,
        proto::op::buffer_list};
    const proto::op op = ops[r_.below(sizeof ops / sizeof ops[0])];
    proto::request q = proto::make_request(op, static_cast<std::uint32_t>(r_.next()));
    if (r_.below(2) == 0) {
      well_formed(op, &q);
    } else {
      q.arg[0] = interesting();
      if (r_.below(3) == 0) q.arg[1] = interesting();
    }
    if (r_.below(12) == 0) q.op = static_cast<std::uint16_t>(r_.below(40));
    // A payload where the op takes one (a handle, a token, a UUID), now and then where it does not.
    const bool takes_payload = q.op == static_cast<std::uint16_t>(proto::op::ipc_register) ||
                               q.op == static_cast<std::uint16_t>(proto::op::lease_device);
    const bool named = q.op >= static_cast<std::uint16_t>(proto::op::buffer_create);
    if (takes_payload ? r_.below(4) != 0 : r_.below(named ? 30 : 12) == 0)
      for (std::size_t i = 0; i < 64; ++i) q.payload[i] = static_cast<std::uint8_t>(r_.next());
    const bool takes_token = q.op == static_cast<std::uint16_t>(proto::op::ipc_resolve) ||
                             q.op == static_cast<std::uint16_t>(proto::op::ipc_unregister);
    if ((takes_token ? r_.below(4) != 0 : r_.below(20) == 0) && !tokens_.empty())
      std::memcpy(q.payload, tokens_[r_.below(static_cast<std::uint32_t>(tokens_.size()))].data(), 16);
    unsigned char buf[proto::k_record_size + 8];
    std::memcpy(buf, &q, sizeof q);
    std::size_t len = sizeof q;
    if (r_.below(10) == 0) buf[r_.below(sizeof q)] ^= static_cast<unsigned char>(1 + r_.below(255));  // corrupted
    if (r_.below(20) == 0) len = r_.below(sizeof buf);                                                // short, long
    int kind = k_none;
    if (q.op == static_cast<std::uint16_t>(proto::op::redeclare_slab) ? r_.below(8) != 0 : r_.below(6) == 0)
      kind = 1 + static_cast<int>(r_.below(k_kinds - 1));
    int fd_in = kind == k_none ? -1 : make_fd(kind);
    if (kind != k_none && r_.below(30) == 0) {  // the transport's "more than one descriptor" mark
      if (fd_in >= 0) close(fd_in);
      fd_in = -2;
    }
    int fd_out = -1;
    const proto::reply rep = server_->test_record(client, buf, len, fd_in, &fd_out);
    ++f_.statuses[rep.status];
    if (rep.op >= 1 && rep.op <= 17) ++f_.by_op[{rep.op, rep.status}];
    if (rep.status == static_cast<std::int32_t>(proto::status::internal) && clients_.count(client) != 0) {
      close(clients_[client]);  // the daemon has let it go (a goodbye, the idle sweep)
      clients_.erase(client);
    }
    if (rep.status == 0 && rep.op == static_cast<std::uint16_t>(proto::op::ipc_register)) {
      std::array<std::uint8_t, 16> t{};
      std::memcpy(t.data(), rep.payload, 16);
      tokens_.push_back(t);
    }
    if (fd_out >= 0) held_.push_back({client, rep.val[0], fd_out});
    bad_fd_out_ = bad_fd_out_ || (fd_out >= 0 && rep.status != 0);
  }

  // Arguments in range for the op (payloads below).
  void well_formed(proto::op op, proto::request* q) {
    switch (op) {
      case proto::op::lease_slab:
        q->arg[0] = 1 + r_.below(static_cast<std::uint32_t>(kSlab));
        break;
      case proto::op::return_slab:
        q->arg[0] = held_.empty() ? 1 : held_[r_.below(static_cast<std::uint32_t>(held_.size()))].lease;
        break;
      case proto::op::redeclare_slab:
        q->arg[0] = kSlab;
        break;
      case proto::op::client_stats:
        q->arg[0] = r_.below(10);
        break;
      case proto::op::ipc_register:
        q->arg[0] = r_.below(static_cast<std::uint32_t>(kSlab));
        q->arg[1] = 1 + r_.below(4096);
        break;
      case proto::op::lease_device:
        q->arg[0] = (std::uint64_t{1} + r_.below(4)) << 21;
        break;
      case proto::op::buffer_create: {
        // u8[bytes] of a few names, now and then shared, from a byte to three slabs
        q->arg[0] = 1 + r_.below(static_cast<std::uint32_t>(3 * kSlab));
        q->arg[1] =
            static_cast<std::uint64_t>(proto::buffer_kind::host) | (r_.below(4) == 0 ? proto::k_buffer_shared : 0);
        q->arg[2] = 1 | (std::uint64_t{1} << 16);
        std::memcpy(q->payload + proto::k_name_size, &q->arg[0], sizeof q->arg[0]);
        name_of(q);
        break;
      }
      case proto::op::buffer_open:
      case proto::op::buffer_unlink:
        q->arg[0] = 0;
        q->arg[1] = r_.below(4) == 0 ? proto::k_buffer_shared : 0;
        if (op == proto::op::buffer_open && r_.below(4) == 0) {
          q->arg[2] = proto::k_open_reference_only;
          q->arg[3] = r_.below(8);  // a channel reference of this client's, or not
        }
        name_of(q);
        break;
      case proto::op::buffer_close:
        q->arg[0] = 1 + r_.below(16);
        break;
      case proto::op::buffer_list:
        q->arg[0] = r_.below(6);
        break;
      default:
        break;
    }
  }
  void name_of(proto::request* q) {
    static const char* names[] = {"a", "b", "weights", "kv-cache.0"};
    const char* n = names[r_.below(4)];
    std::memcpy(q->payload, n, std::strlen(n));
  }

  void give_back() {
    if (held_.empty()) return;
    const std::size_t i = r_.below(static_cast<std::uint32_t>(held_.size()));
    held h = held_[i];
    held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(i));
    if (r_.below(3) != 0 && h.fd >= 0) {  // mostly as the shim does: closed first
      close(h.fd);
      h.fd = -1;
    }
    proto::request q = proto::make_request(proto::op::return_slab, 1);
    q.arg[0] = h.lease;
    int fd_out = -1;
    const proto::reply rep = server_->test_record(h.client, &q, sizeof q, -1, &fd_out);
    ++f_.statuses[rep.status];
    if (fd_out >= 0) close(fd_out);
    if (h.fd >= 0) held_.push_back({h.client, 0, h.fd});  // kept after its return: lease 0
  }

  bool check(std::string* why) {
    if (bad_fd_out_) {
      *why = "a refused request carried a descriptor";
      return false;
    }
    const proto::daemon_status s = server_->test_status();
    if (s.lent_bytes + s.free_bytes + s.named_bytes != s.region_bytes) {
      *why = "lent + free + named != region (" + std::to_string(s.lent_bytes) + " + " + std::to_string(s.free_bytes) +
             " + " + std::to_string(s.named_bytes) + " != " + std::to_string(s.region_bytes) + ")";
      return false;
    }
    if (s.lent_bytes != server_->test_lent_by_clients()) {
      *why = "the region counts " + std::to_string(s.lent_bytes) + " bytes lent, the clients' leases " +
             std::to_string(server_->test_lent_by_clients());
      return false;
    }
    return true;
  }

  rng& r_;
  figures& f_;
  std::string dir_;
  pd::identity_key key_;
  std::unique_ptr<pd::server> server_;
  std::map<std::uint64_t, int> clients_;  // id -> the client's end of its socketpair
  std::vector<held> held_;
  std::vector<std::array<std::uint8_t, 16>> tokens_;
  bool bad_fd_out_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
  const std::uint64_t seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1;
  poolshim::daemon::log::start(6);  // off: a hostile sequence would fill the output
  char tmpl[] = "/tmp/poolshim-handler-fuzz-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    return 2;
  }
  const std::string dir = tmpl;
  const int fds_before = pd::open_fd_count("/memfd:poolshim-slab.");
  rng r{seed * 0x9e3779b97f4a7c15ull + 1};
  figures f;
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int status = 0;
  while (std::chrono::steady_clock::now() < end) {
    const std::uint64_t index = f.sequences++;
    std::string why;
    sequence s(r, f, dir);
    if (!s.run(40 + static_cast<int>(r.below(80)), &why)) {
      std::printf("handler_fuzz: FAIL: seed %llu, sequence %llu, %s\n", static_cast<unsigned long long>(seed),
                  static_cast<unsigned long long>(index), why.c_str());
      status = 1;
      break;
    }
  }
  // Descriptors the daemon received and did not keep are closed by its helper thread: give it a
  // moment, then nothing may be left open.
  int fds_after = pd::open_fd_count("/memfd:poolshim-slab.");
  for (int i = 0; i < 100 && fds_after > fds_before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    fds_after = pd::open_fd_count("/memfd:poolshim-slab.");
  }
  if (status == 0 && fds_after != fds_before) {
    std::printf("handler_fuzz: FAIL: %d descriptors open after the run, %d before\n", fds_after, fds_before);
    status = 1;
  }
  std::printf("handler_fuzz: %llu sequences, %llu steps, %llu records in %.1f s (seed %llu)\n",
              static_cast<unsigned long long>(f.sequences), static_cast<unsigned long long>(f.steps),
              static_cast<unsigned long long>(f.records), seconds, static_cast<unsigned long long>(seed));
  std::printf("  replies:");
  for (const auto& [st, n] : f.statuses)
    std::printf(" %s=%llu", proto::status_name(static_cast<proto::status>(st)), static_cast<unsigned long long>(n));
  std::printf("\n  accepted per op:");
  for (int op = 1; op <= 17; ++op) {
    std::uint64_t ok = 0, all = 0;
    for (const auto& [k, n] : f.by_op)
      if (k.first == op) {
        all += n;
        ok += k.second == 0 ? n : 0;
      }
    std::printf(" %s=%llu/%llu", proto::op_name(static_cast<proto::op>(op)), static_cast<unsigned long long>(ok),
                static_cast<unsigned long long>(all));
  }
  std::printf("\n  quota refusals: %llu", static_cast<unsigned long long>(f.statuses[8]));
  std::printf("\n  descriptors sent:");
  for (int k = 1; k < k_kinds; ++k) std::printf(" %s=%llu", kind_name(k), static_cast<unsigned long long>(f.kinds[k]));
  std::printf("\n%s\n", status == 0 ? "handler_fuzz: OK" : "handler_fuzz: FAILED");
  std::string cmd = "rm -rf '" + dir + "'";
  (void)!std::system(cmd.c_str());
  return status;
}

// poolshimd's event loop (daemon/poolshimd/server.h) in a thread, spoken to with raw records: the
// lease life cycle and accounting, quotas, and hostile input (every malformed record gets an error
// reply, the connection and the daemon survive, and no descriptor leaks).
#include "poolshimd/server.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "open_fds.h"
#include "poolshim/channel_ring.h"
#include "poolshim/protocol.h"
#include "poolshim/transport.h"

namespace poolshim::daemon {
namespace server_test {  // named, not anonymous: a unity build puts several test files in one unit

constexpr std::uint64_t kSlab = std::uint64_t{2} << 20;
// The servers here read /proc for held slabs at most this often (the daemon: once a second).
constexpr std::chrono::milliseconds kProcScan{100};

class Server : public ::testing::Test {
 protected:
  void start(std::uint64_t client_quota = 0, std::uint64_t uid_quota = 0,
             const std::function<void(server_options&)>& tweak = nullptr) {
    char tmpl[] = "/tmp/poolshimd-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    server_options o;
    o.socket_path = dir_ + "/poolshimd.sock";
    o.region.slab_bytes = kSlab;
    o.region.total_bytes = 4 * kSlab;
    o.region.fill_threads = 1;
    o.client_quota = client_quota;
    o.uid_quota = uid_quota;
    o.proc_scan_interval = kProcScan;
    if (tweak) tweak(o);
    server_ = std::make_unique<server>(o);
    thread_ = std::thread([this] { server_->run(); });
    std::string why;
    sock_ = proto::connect_seqpacket(o.socket_path, &why);
    ASSERT_GE(sock_, 0) << why;
  }
  void TearDown() override {
    if (sock_ >= 0) close(sock_);
    if (server_) {
      server_->stop();
      thread_.join();
      server_.reset();
    }
    // The daemon keeps its identity key (poolshimd.key) beside the socket across restarts.
    if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }
  // Sends raw bytes (and a descriptor) and returns the reply's status; *r gets the reply.
  proto::status raw(const void* bytes, std::size_t len, int fd_in, proto::reply* r, int* fd_out = nullptr) {
    EXPECT_TRUE(proto::send_record(sock_, bytes, len, fd_in));
    unsigned char buf[proto::k_record_size];
    std::size_t got = 0;
    int fd = -1;
    EXPECT_EQ(proto::recv_record(sock_, buf, sizeof buf, &got, &fd), proto::recv_status::ok);
    EXPECT_EQ(got, proto::k_record_size);
    std::memcpy(r, buf, sizeof *r);
    if (fd_out != nullptr) {
      *fd_out = fd;
    } else if (fd >= 0) {
      close(fd);
    }
    return static_cast<proto::status>(r->status);
  }
  proto::status ask(proto::op o, std::uint64_t arg0, proto::reply* r, int fd_in = -1, int* fd_out = nullptr) {
    proto::request q = proto::make_request(o, ++seq_);
    q.arg[0] = arg0;
    return raw(&q, sizeof q, fd_in, r, fd_out);
  }
  std::uint64_t lent() {
    proto::reply r{};
    EXPECT_EQ(ask(proto::op::stats, 0, &r), proto::status::ok);
    return r.val[1];
  }

  std::string dir_;
  std::unique_ptr<server> server_;
  std::thread thread_;
  int sock_ = -1;
  std::uint32_t seq_ = 0;
};

TEST_F(Server, LeaseLifeCycleIsAccounted) {
  start();
  proto::reply r{};
  ASSERT_EQ(ask(proto::op::hello, 0, &r), proto::status::ok);
  EXPECT_EQ(r.val[0], kSlab);
  EXPECT_EQ(r.val[1], static_cast<std::uint64_t>(getpid()));
  int fd = -1;
  ASSERT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &fd), proto::status::ok);
  ASSERT_GE(fd, 0);
  const std::uint64_t lease = r.val[0];
  EXPECT_EQ(lent(), kSlab);
  ASSERT_EQ(ask(proto::op::client_stats, 0, &r), proto::status::ok);
  EXPECT_EQ(r.val[0], static_cast<std::uint64_t>(getpid()));
  EXPECT_EQ(r.val[2], kSlab);
  EXPECT_EQ(ask(proto::op::client_stats, 1, &r), proto::status::not_found);
  EXPECT_EQ(ask(proto::op::return_slab, lease + 100, &r), proto::status::not_found);
  EXPECT_EQ(ask(proto::op::return_slab, lease, &r), proto::status::ok);
  EXPECT_EQ(ask(proto::op::return_slab, lease, &r), proto::status::not_found) << "returned twice";
  EXPECT_EQ(lent(), 0u);
  close(fd);
}

TEST_F(Server, RedeclaringAKnownSlabKeepsItsLease) {
  start();
  proto::reply r{};
  int fd = -1;
  ASSERT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &fd), proto::status::ok);
  const std::uint64_t lease = r.val[0];
  ASSERT_EQ(ask(proto::op::redeclare_slab, kSlab, &r, fd), proto::status::ok);
  EXPECT_EQ(r.val[0], lease);
  EXPECT_EQ(lent(), kSlab) << "counted once";
  EXPECT_EQ(ask(proto::op::redeclare_slab, kSlab, &r), proto::status::missing_fd);
  close(fd);
}

TEST_F(Server, QuotaPerClientIsEnforced) {
  start(/*client_quota=*/2 * kSlab);
  proto::reply r{};
  int fds[2];
  for (int& fd : fds) ASSERT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &fd), proto::status::ok);
  int extra = -1;
  EXPECT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &extra), proto::status::quota);
  EXPECT_EQ(extra, -1) << "no descriptor with a refusal";
  for (int fd : fds) close(fd);
}

TEST_F(Server, QuotaPerUidCountsEveryClientOfTheUid) {
  start(/*client_quota=*/0, /*uid_quota=*/3 * kSlab);
  proto::reply r{};
  int fds[2];
  for (int& fd : fds) ASSERT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &fd), proto::status::ok);
  // A second connection of the same uid shares the uid's quota.
  std::string why;
  int other = proto::connect_seqpacket(dir_ + "/poolshimd.sock", &why);
  ASSERT_GE(other, 0) << why;
  std::swap(sock_, other);
  int third = -1;
  EXPECT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &third), proto::status::ok);
  EXPECT_EQ(ask(proto::op::lease_slab, kSlab, &r), proto::status::quota) << "4 slabs for one uid";
  std::swap(sock_, other);
  close(other);
  for (int fd : {fds[0], fds[1], third}) close(fd);
}

TEST_F(Server, FullRegionRefusesAndRaisesPressure) {
  start();
  proto::reply r{};
  int fds[4];
  for (int& fd : fds) ASSERT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &fd), proto::status::ok);
  EXPECT_EQ(ask(proto::op::lease_slab, kSlab, &r), proto::status::no_memory);
  ASSERT_EQ(ask(proto::op::return_idle, 0, &r), proto::status::ok);
  EXPECT_EQ(r.val[0], kSlab) << "clients are asked to give a slab back";
  EXPECT_EQ(r.pressure_mib, kSlab >> 20);
  for (int fd : fds) close(fd);
}

// Issue #17: what a client reports idle shows in client_stats (--status, poolshim-stats node, the
// metrics page), believed up to what the daemon lent it, and trim_clients asks every other client
// of the uid for it at its next report.
TEST_F(Server, IdleReportsShowInClientStatsAndTrimClientsAsksForThem) {
  start();
  proto::reply r{};
  int slabs[2];
  for (int& fd : slabs) ASSERT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &fd), proto::status::ok);
  auto report = [&](std::uint64_t device, std::uint64_t pinned) {
    proto::request q = proto::make_request(proto::op::return_idle, ++seq_);
    q.arg[0] = device;
    q.arg[1] = pinned;
    q.arg[2] = proto::k_idle_report;
    EXPECT_EQ(raw(&q, sizeof q, -1, &r), proto::status::ok);
  };
  report(std::uint64_t{96} << 20, 3 * kSlab / 2);
  EXPECT_EQ(r.val[1], 0u) << "nothing asked yet";
  ASSERT_EQ(ask(proto::op::client_stats, 0, &r), proto::status::ok);
  proto::client_status c = proto::decode_client_status(r);
  EXPECT_EQ(c.idle_device_bytes, 0u) << "no device memory lent: 96 MiB idle is not believed";
  EXPECT_EQ(c.idle_pinned_bytes, 3 * kSlab / 2);
  report(0, 64 * kSlab);
  ASSERT_EQ(ask(proto::op::client_stats, 0, &r), proto::status::ok);
  c = proto::decode_client_status(r);
  EXPECT_EQ(c.idle_pinned_bytes, 2 * kSlab) << "at most the two slabs it holds";
  // Another connection of this uid asks everyone else to trim.
  std::string why;
  int other = proto::connect_seqpacket(dir_ + "/poolshimd.sock", &why);
  ASSERT_GE(other, 0) << why;
  std::swap(sock_, other);
  ASSERT_EQ(ask(proto::op::trim_clients, 0, &r), proto::status::ok);
  EXPECT_EQ(r.val[0], 1u) << "one client asked (not the asker)";
  EXPECT_EQ(r.val[1], 0u);
  EXPECT_EQ(r.val[2], 2 * kSlab);
  std::swap(sock_, other);
  close(other);
  report(0, 0);
  EXPECT_EQ(r.val[1], ~std::uint64_t{0}) << "every idle device byte";
  EXPECT_EQ(r.val[2], ~std::uint64_t{0});
  report(0, 0);
  EXPECT_EQ(r.val[1], 0u) << "asked once";
  proto::request q = proto::make_request(proto::op::return_idle, ++seq_);
  q.arg[0] = 1;  // figures without the report flag are refused, as before
  EXPECT_EQ(raw(&q, sizeof q, -1, &r), proto::status::bad_argument);
  for (int fd : slabs) close(fd);
}

TEST_F(Server, HostileRecordsGetErrorsAndNothingLeaks) {
  start();
  proto::reply r{};
  ASSERT_EQ(ask(proto::op::hello, 0, &r), proto::status::ok);
  const int before = open_fd_count();
  unsigned char junk[proto::k_record_size];
  std::memset(junk, 0x5a, sizeof junk);
  EXPECT_EQ(raw(junk, sizeof junk, -1, &r), proto::status::bad_magic);
  EXPECT_EQ(raw(junk, 7, -1, &r), proto::status::bad_size) << "truncated";
  unsigned char big[1000] = {};
  EXPECT_EQ(raw(big, sizeof big, -1, &r), proto::status::bad_size) << "oversized";
  proto::request q = proto::make_request(proto::op::stats, 1);
  q.version = proto::k_version + 1;
  EXPECT_EQ(raw(&q, sizeof q, -1, &r), proto::status::bad_version);
  q = proto::make_request(proto::op::stats, 1);
  q.op = 77;
  EXPECT_EQ(raw(&q, sizeof q, -1, &r), proto::status::unknown_op);
  EXPECT_EQ(r.op, 77) << "the reply echoes what it can";
  q = proto::make_request(proto::op::stats, 1);
  q.reserved[3] = 9;
  EXPECT_EQ(raw(&q, sizeof q, -1, &r), proto::status::bad_reserved);
  // A descriptor nobody asked for is closed by the daemon.
  const int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  EXPECT_EQ(ask(proto::op::stats, 0, &r, devnull), proto::status::missing_fd);
  close(devnull);
  EXPECT_EQ(ask(proto::op::stats, 0, &r), proto::status::ok) << "the connection survives";
  EXPECT_EQ(open_fd_count(), before) << "the daemon kept none of the descriptors it was sent";
}

TEST_F(Server, ClosedSocketKeepsLeasesOfALiveProcess) {
  start();
  proto::reply r{};
  int fd = -1;
  ASSERT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &fd), proto::status::ok);
  close(sock_);
  std::string why;
  sock_ = proto::connect_seqpacket(dir_ + "/poolshimd.sock", &why);
  ASSERT_GE(sock_, 0);
  EXPECT_EQ(lent(), kSlab) << "this process still maps it: its lease stands until it exits";
  ASSERT_EQ(ask(proto::op::redeclare_slab, kSlab, &r, fd), proto::status::ok) << "and it can take it over";
  ASSERT_EQ(ask(proto::op::return_slab, r.val[0], &r), proto::status::ok);
  EXPECT_EQ(lent(), 0u);
  close(fd);
}

TEST_F(Server, IpcTokenResolvesToTheRegisteredHandleUntilUnregistered) {
  start();
  proto::request q = proto::make_request(proto::op::ipc_register, ++seq_);
  q.arg[0] = 8192;
  q.arg[1] = 512;
  for (int i = 0; i < 64; ++i) q.payload[i] = static_cast<std::uint8_t>(i + 1);
  proto::reply r{};
  ASSERT_EQ(raw(&q, sizeof q, -1, &r), proto::status::ok);
  std::uint8_t tok[proto::k_token_size];
  std::memcpy(tok, r.payload, sizeof tok);
  EXPECT_TRUE(std::any_of(tok, tok + sizeof tok, [](std::uint8_t b) { return b != 0; }));
  proto::request res = proto::make_request(proto::op::ipc_resolve, ++seq_);
  std::memcpy(res.payload, tok, sizeof tok);
  ASSERT_EQ(raw(&res, sizeof res, -1, &r), proto::status::ok);
  EXPECT_EQ(r.val[0], 8192u);
  EXPECT_EQ(r.val[1], 512u);
  EXPECT_EQ(std::memcmp(r.payload, q.payload, 64), 0);
  proto::request wrong = res;
  wrong.seq = ++seq_;
  wrong.payload[0] ^= 0xff;
  EXPECT_EQ(raw(&wrong, sizeof wrong, -1, &r), proto::status::not_found) << "a guessed token";
  proto::request un = proto::make_request(proto::op::ipc_unregister, ++seq_);
  std::memcpy(un.payload, tok, sizeof tok);
  ASSERT_EQ(raw(&un, sizeof un, -1, &r), proto::status::ok);
  res.seq = ++seq_;
  EXPECT_EQ(raw(&res, sizeof res, -1, &r), proto::status::not_found) << "the block was freed";
}

// A TCP socket on loopback whose send queue is full (its peer never reads) and whose SO_LINGER is
// 30 s: the last close() of it blocks for 30 s unless its linger is cleared. *peer: the unread end.
int lingering_socket(int* listener, int* peer) {
  *listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int small = 4096;
  setsockopt(*listener, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t n = sizeof a;
  if (bind(*listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(*listener, 4) != 0 ||
      getsockname(*listener, reinterpret_cast<sockaddr*>(&a), &n) != 0)
    return -1;
  const int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  setsockopt(c, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  if (connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  *peer = accept4(*listener, nullptr, nullptr, SOCK_CLOEXEC);
  static char chunk[65536];
  while (send(c, chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
  }
  const linger l{1, 30};
  setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  return c;
}

TEST_F(Server, LingeringSocketSentWithARecordDoesNotHoldTheLoop) {
  start();
  int listener = -1, peer = -1;
  const int tcp = lingering_socket(&listener, &peer);
  ASSERT_GE(tcp, 0);
  proto::reply r{};
  const auto t0 = std::chrono::steady_clock::now();
  // Not a memfd: refused before it is used.
  EXPECT_EQ(ask(proto::op::redeclare_slab, kSlab, &r, tcp), proto::status::bad_argument) << "a socket is no slab";
  // Unasked (stats takes none), and this process's copy closed while the record is on its way:
  // the daemon's close is the last one, which would wait out the linger.
  proto::request q = proto::make_request(proto::op::stats, ++seq_);
  ASSERT_TRUE(proto::send_record(sock_, &q, sizeof q, tcp));
  close(tcp);
  unsigned char buf[proto::k_record_size];
  std::size_t len = 0;
  int fd = -1;
  ASSERT_EQ(proto::recv_record(sock_, buf, sizeof buf, &len, &fd), proto::recv_status::ok) << "no reply in 2 s";
  std::memcpy(&r, buf, sizeof r);
  EXPECT_EQ(static_cast<proto::status>(r.status), proto::status::missing_fd);
  EXPECT_EQ(ask(proto::op::stats, 0, &r), proto::status::ok);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 5.0) << "the loop waited for the socket's linger";
  close(peer);
  close(listener);
}

TEST_F(Server, ConnectionsPerUidAreCapped) {
  start(0, 0, [](server_options& o) { o.uid_connections = 2; });
  proto::reply r{};
  ASSERT_EQ(ask(proto::op::hello, 0, &r), proto::status::ok);
  std::string why;
  const int second = proto::connect_seqpacket(dir_ + "/poolshimd.sock", &why);
  const int third = proto::connect_seqpacket(dir_ + "/poolshimd.sock", &why);
  ASSERT_GE(second, 0);
  ASSERT_GE(third, 0);
  // The third is accepted and closed at once: the client sees the end of the connection.
  proto::request q = proto::make_request(proto::op::stats, 1);
  (void)proto::send_record(third, &q, sizeof q, -1);
  unsigned char buf[proto::k_record_size];
  std::size_t len = 0;
  int fd = -1;
  EXPECT_NE(proto::recv_record(third, buf, sizeof buf, &len, &fd), proto::recv_status::ok);
  EXPECT_TRUE(proto::send_record(second, &q, sizeof q, -1));
  EXPECT_EQ(proto::recv_record(second, buf, sizeof buf, &len, &fd), proto::recv_status::ok) << "the second is served";
  close(second);
  close(third);
}

TEST_F(Server, IdleConnectionsHoldingNothingAreClosed) {
  start(0, 0, [](server_options& o) { o.idle_timeout = std::chrono::seconds(1); });
  proto::reply r{};
  int fd = -1;
  ASSERT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &fd), proto::status::ok);  // sock_ holds a lease
  std::string why;
  const int idle = proto::connect_seqpacket(dir_ + "/poolshimd.sock", &why, 0);
  ASSERT_GE(idle, 0);
  pollfd p{idle, POLLIN, 0};
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(poll(&p, 1, 5000), 1) << "an idle connection was not closed";
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(s, 0.8);
  unsigned char buf[proto::k_record_size];
  std::size_t len = 0;
  int got = -1;
  EXPECT_EQ(proto::recv_record(idle, buf, sizeof buf, &len, &got), proto::recv_status::closed);
  close(idle);
  EXPECT_EQ(lent(), kSlab) << "the connection that holds a lease stays";
  close(fd);
}

TEST_F(Server, GoodbyeReturnsEverything) {
  start();
  proto::reply r{};
  int fds[2];
  for (int& fd : fds) ASSERT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &fd), proto::status::ok);
  ASSERT_EQ(ask(proto::op::goodbye, 0, &r), proto::status::ok);
  close(sock_);
  std::string why;
  sock_ = proto::connect_seqpacket(dir_ + "/poolshimd.sock", &why);
  ASSERT_GE(sock_, 0);
  EXPECT_EQ(lent(), 0u);
  for (int fd : fds) close(fd);
}

// Issue #13, finding 2: a slab returned while its memfd is kept still holds memory: it counts
// against the process's quota until the process lets it go (here: closes the descriptor).
TEST_F(Server, ReturnedSlabTheClientKeepsCountsAgainstItsQuotaUntilLetGo) {
  start(/*client_quota=*/2 * kSlab);
  proto::reply r{};
  int kept[2];
  for (int& fd : kept) {
    ASSERT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &fd), proto::status::ok);
    ASSERT_EQ(ask(proto::op::return_slab, r.val[0], &r), proto::status::ok);  // returned; the memfd kept
  }
  EXPECT_EQ(lent(), 0u) << "the region has them back";
  EXPECT_EQ(ask(proto::op::lease_slab, kSlab, &r), proto::status::quota)
      << "two returned slabs still held: the quota is full";
  close(kept[0]);
  std::this_thread::sleep_for(kProcScan + std::chrono::milliseconds(50));  // /proc: at most once a kProcScan
  int fd = -1;
  EXPECT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &fd), proto::status::ok) << "one let go: room for one";
  EXPECT_EQ(ask(proto::op::lease_slab, kSlab, &r), proto::status::quota) << "the other is still held";
  close(fd);
  close(kept[1]);
}

TEST_F(Server, ReturnedSlabMappedButClosedStillCounts) {
  start(/*client_quota=*/kSlab);
  proto::reply r{};
  int fd = -1;
  ASSERT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &fd), proto::status::ok);
  void* p = mmap(nullptr, kSlab, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(p, MAP_FAILED);
  close(fd);  // only the mapping keeps it
  ASSERT_EQ(ask(proto::op::return_slab, r.val[0], &r), proto::status::ok);
  EXPECT_EQ(ask(proto::op::lease_slab, kSlab, &r), proto::status::quota)
      << "a mapping holds it as well as a descriptor";
  munmap(p, kSlab);
  std::this_thread::sleep_for(kProcScan + std::chrono::milliseconds(50));
  int again = -1;
  EXPECT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &again), proto::status::ok) << "unmapped: let go";
  close(again);
}

TEST_F(Server, GoodbyeAndANewConnectionDoNotWipeAReturnedSlabStillHeld) {
  start(/*client_quota=*/kSlab);
  proto::reply r{};
  int kept = -1;
  ASSERT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &kept), proto::status::ok);
  ASSERT_EQ(ask(proto::op::goodbye, 0, &r), proto::status::ok);  // returns it; the memfd is kept
  close(sock_);
  std::string why;
  sock_ = proto::connect_seqpacket(dir_ + "/poolshimd.sock", &why);
  ASSERT_GE(sock_, 0) << why;
  EXPECT_EQ(ask(proto::op::lease_slab, kSlab, &r), proto::status::quota) << "the same process still holds it";
  close(kept);
}

TEST_F(Server, SlabClosedBeforeItsReturnStopsCountingAtTheNextLook) {
  start(/*client_quota=*/kSlab);
  proto::reply r{};
  auto cycle = [&] {  // as the shim does it: unmap, close, then return
    int fd = -1;
    const proto::status st = ask(proto::op::lease_slab, kSlab, &r, -1, &fd);
    if (st == proto::status::ok) {
      close(fd);
      EXPECT_EQ(ask(proto::op::return_slab, r.val[0], &r), proto::status::ok);
    }
    return st;
  };
  EXPECT_EQ(cycle(), proto::status::ok);
  EXPECT_EQ(cycle(), proto::status::ok) << "the returned slab is held by no one: /proc says so";
  // /proc is read at most once a second per uid: until the next look, the last return counts.
  std::this_thread::sleep_for(kProcScan + std::chrono::milliseconds(50));
  EXPECT_EQ(cycle(), proto::status::ok);
}

// Issue #13, finding 3: re-declaration is for slabs a daemon with this key lent, not lent now, not
// returned here, and within the quotas.
class Redeclare : public Server {
 protected:
  identity_key key() {
    std::string why;
    const identity_key k = load_identity_key(dir_ + "/poolshimd.key", &why);
    EXPECT_TRUE(why.empty()) << why;
    return k;
  }
  // A slab as a predecessor with the same key would have lent it (to this uid, or `owner`).
  static int predecessor_slab(const identity_key& k, std::uint64_t serial, bool sealed = true, int owner = -2) {
    const int fd = memfd_create(slab_name(k, serial).c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0 || ftruncate(fd, kSlab) != 0) return -1;
    if (sealed && fcntl(fd, F_ADD_SEALS, slab_region::k_seals) != 0) return -1;
    if (owner != -1) (void)tag_owner(k, fd, serial, owner == -2 ? geteuid() : static_cast<uid_t>(owner));
    return fd;
  }
};

TEST_F(Redeclare, OnlySlabsThisKeyNamedAreTaken) {
  start();
  proto::reply r{};
  const int plain = memfd_create("anything", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  ASSERT_EQ(ftruncate(plain, kSlab), 0);
  ASSERT_EQ(fcntl(plain, F_ADD_SEALS, slab_region::k_seals), 0);
  EXPECT_EQ(ask(proto::op::redeclare_slab, kSlab, &r, plain), proto::status::not_permitted)
      << "a memfd of slab size that no daemon lent";
  const int forged = predecessor_slab(identity_key{1, 2}, 7);
  EXPECT_EQ(ask(proto::op::redeclare_slab, kSlab, &r, forged), proto::status::not_permitted) << "another key";
  const int unsealed = predecessor_slab(key(), 8, false);
  EXPECT_EQ(ask(proto::op::redeclare_slab, kSlab, &r, unsealed), proto::status::no_memory) << "not sealed";
  const int good = predecessor_slab(key(), 9);
  ASSERT_EQ(ask(proto::op::redeclare_slab, kSlab, &r, good), proto::status::ok);
  EXPECT_EQ(lent(), kSlab);
  const int copy = predecessor_slab(key(), 9);  // the same name, another file
  EXPECT_EQ(ask(proto::op::redeclare_slab, kSlab, &r, copy), proto::status::not_permitted) << "serial 9 is lent";
  for (int f : {plain, forged, unsealed, good, copy}) close(f);
}

TEST_F(Redeclare, ASlabLentToAnotherUidIsRefused) {
  if (!owner_tags_supported()) GTEST_SKIP() << "memfds keep no user xattr here (Linux before 6.6)";
  start();
  proto::reply r{};
  const int others = predecessor_slab(key(), 21, true, static_cast<int>(geteuid()) + 1);
  EXPECT_EQ(ask(proto::op::redeclare_slab, kSlab, &r, others), proto::status::not_permitted) << "another uid's";
  const int untagged = predecessor_slab(key(), 22, true, -1);
  EXPECT_EQ(ask(proto::op::redeclare_slab, kSlab, &r, untagged), proto::status::not_permitted) << "no owner tag";
  int fd = -1;
  ASSERT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &fd), proto::status::ok);
  std::uint64_t serial = 0;
  ASSERT_TRUE(slab_serial(key(), fd, &serial));
  EXPECT_EQ(check_owner(key(), fd, serial, geteuid()), owner_tag::match) << "a lease is tagged with its uid";
  EXPECT_EQ(check_owner(key(), fd, serial, geteuid() + 1), owner_tag::other);
  for (int f : {others, untagged, fd}) close(f);
}

TEST_F(Redeclare, ReturnedSlabCannotComeBack) {
  start();
  proto::reply r{};
  int fd = -1;
  ASSERT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &fd), proto::status::ok);
  ASSERT_EQ(ask(proto::op::return_slab, r.val[0], &r), proto::status::ok);
  EXPECT_EQ(ask(proto::op::redeclare_slab, kSlab, &r, fd), proto::status::not_permitted)
      << "a slab returned here is not lent again by re-declaring it";
  EXPECT_EQ(lent(), 0u);
  close(fd);
}

TEST_F(Redeclare, QuotasApply) {
  start(/*client_quota=*/0, /*uid_quota=*/kSlab);
  proto::reply r{};
  int fd = -1;
  ASSERT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &fd), proto::status::ok);
  const int good = predecessor_slab(key(), 11);
  EXPECT_EQ(ask(proto::op::redeclare_slab, kSlab, &r, good), proto::status::quota);
  EXPECT_EQ(lent(), kSlab);
  close(fd);
  close(good);
}

// Issue #13, finding 8: the client quota is per process, whatever its connections.
TEST_F(Server, ClientQuotaIsPerProcessNotPerConnection) {
  start(/*client_quota=*/kSlab);
  proto::reply r{};
  int fd = -1;
  ASSERT_EQ(ask(proto::op::lease_slab, kSlab, &r, -1, &fd), proto::status::ok);
  std::string why;
  int other = proto::connect_seqpacket(dir_ + "/poolshimd.sock", &why);
  ASSERT_GE(other, 0) << why;
  std::swap(sock_, other);
  EXPECT_EQ(ask(proto::op::lease_slab, kSlab, &r), proto::status::quota) << "a second connection, the same process";
  std::swap(sock_, other);
  close(other);
  close(fd);
}

// Issue #13, finding 13: IPC registrations per client are capped.
TEST_F(Server, IpcRegistrationsPerClientAreCapped) {
  start();
  proto::reply r{};
  proto::request q = proto::make_request(proto::op::ipc_register, 0);
  q.arg[1] = 512;
  q.payload[0] = 1;  // a handle, not empty
  std::uint64_t ok = 0;
  proto::status last = proto::status::ok;
  for (std::uint64_t i = 0; i <= server::k_max_exports && last == proto::status::ok; ++i) {
    q.seq = ++seq_;
    q.arg[0] = i;
    last = raw(&q, sizeof q, -1, &r);
    ok += last == proto::status::ok;
  }
  EXPECT_EQ(ok, server::k_max_exports);
  EXPECT_EQ(last, proto::status::quota);
}

// Issue #13, finding 12: another uid sees its own clients only; the metrics page names clients
// only when asked to.
TEST_F(Server, AnotherUidSeesOnlyItsOwnClients) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (a second uid)";
  start();
  proto::reply r{};
  ASSERT_EQ(ask(proto::op::hello, 0, &r), proto::status::ok);
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);  // root's directory, readable: a node daemon's
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  const pid_t child = fork();
  if (child == 0) {
    // nobody: its own client_stats 0 is itself; 1 is not found (root's client is not shown)
    char verdict = 'x';
    std::string why;
    if (setgid(65534) == 0 && setuid(65534) == 0) {
      const int s = proto::connect_seqpacket(dir_ + "/poolshimd.sock", &why);
      proto::request q = proto::make_request(proto::op::client_stats, 1);
      proto::reply a{}, b{};
      if (s >= 0 && proto::exchange(s, q, -1, &a, nullptr) == proto::exchange_status::ok) {
        q = proto::make_request(proto::op::client_stats, 2);
        q.arg[0] = 1;
        if (proto::exchange(s, q, -1, &b, nullptr) == proto::exchange_status::ok)
          verdict = (a.status == 0 && proto::decode_client_status(a).uid == 65534 &&
                     b.status == static_cast<std::int32_t>(proto::status::not_found))
                        ? 'y'
                        : 'n';
      }
    }
    (void)!write(pipefd[1], &verdict, 1);
    _exit(0);
  }
  close(pipefd[1]);
  char verdict = 0;
  ASSERT_EQ(read(pipefd[0], &verdict, 1), 1);
  close(pipefd[0]);
  int st = 0;
  waitpid(child, &st, 0);
  EXPECT_EQ(verdict, 'y') << "x: could not ask; n: saw another uid's client";
}

// ---- named buffers (issue #14) ----

// A buffer_create request: u8[bytes] (or the given element type and shape), host, in the asker's
// namespace unless shared.
proto::request create_request(const std::string& name, std::uint64_t bytes, bool shared = false,
                              std::uint32_t dtype = 1, std::vector<std::uint64_t> shape = {}) {
  proto::request q = proto::make_request(proto::op::buffer_create, 1);
  std::memcpy(q.payload, name.data(), std::min(name.size(), proto::k_name_size));
  if (shape.empty()) shape = {bytes};
  q.arg[0] = bytes;
  q.arg[1] = static_cast<std::uint64_t>(proto::buffer_kind::host) | (shared ? proto::k_buffer_shared : 0);
  q.arg[2] = dtype | (std::uint64_t{shape.size()} << 16);
  std::memcpy(q.payload + proto::k_name_size, shape.data(), std::min<std::size_t>(shape.size(), 8) * 8);
  return q;
}
proto::request name_request(proto::op o, const std::string& name, bool shared = false) {
  proto::request q = proto::make_request(o, 1);
  std::memcpy(q.payload, name.data(), std::min(name.size(), proto::k_name_size));
  q.arg[1] = shared ? proto::k_buffer_shared : 0;
  return q;
}

class Buffers : public Server {
 protected:
  proto::status send(proto::request q, proto::reply* r, int* fd = nullptr) {
    q.seq = ++seq_;
    return raw(&q, sizeof q, -1, r, fd);
  }
  std::uint64_t named() {
    proto::reply r{};
    EXPECT_EQ(ask(proto::op::stats, 0, &r), proto::status::ok);
    return proto::decode_status(r).named_bytes;
  }
  int connect_again() {
    std::string why;
    const int s = proto::connect_seqpacket(dir_ + "/poolshimd.sock", &why);
    EXPECT_GE(s, 0) << why;
    return s;
  }
};

TEST_F(Buffers, CreateOpenShareMemoryAndUnlinkFreesWithTheLastReference) {
  start();
  proto::reply r{};
  int fd = -1;
  ASSERT_EQ(send(create_request("weights", 3 << 20), &r, &fd), proto::status::ok);
  ASSERT_GE(fd, 0);
  const std::uint64_t mine = r.val[0];
  EXPECT_EQ(r.val[1], 3u << 20);
  EXPECT_EQ(named(), 2 * kSlab) << "3 MiB takes two 2 MiB slabs of the region";
  auto* p = static_cast<unsigned char*>(mmap(nullptr, 3 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(p, MAP_FAILED);
  p[12345] = 0x5a;
  EXPECT_EQ(send(create_request("weights", 1 << 20), &r), proto::status::exists);

  // A second connection opens it: the same memory, the metadata.
  int other = connect_again();
  std::swap(sock_, other);
  int fd2 = -1;
  ASSERT_EQ(send(name_request(proto::op::buffer_open, "weights"), &r, &fd2), proto::status::ok);
  const std::uint64_t theirs = r.val[0];
  EXPECT_EQ(r.val[1], 3u << 20);
  EXPECT_EQ(r.val[3] & 0xffff, 1u) << "u8";
  EXPECT_EQ(r.val[5], static_cast<std::uint64_t>(getpid()));
  auto* q = static_cast<unsigned char*>(mmap(nullptr, 3 << 20, PROT_READ, MAP_SHARED, fd2, 0));
  ASSERT_NE(q, MAP_FAILED);
  EXPECT_EQ(q[12345], 0x5a) << "one piece of memory";
  ASSERT_EQ(ask(proto::op::buffer_list, 0, &r), proto::status::ok);
  EXPECT_STREQ(reinterpret_cast<const char*>(r.payload), "weights");
  EXPECT_EQ(r.val[2], 2u) << "two references";
  EXPECT_EQ(ask(proto::op::buffer_list, 1, &r), proto::status::not_found);

  ASSERT_EQ(send(name_request(proto::op::buffer_unlink, "weights"), &r), proto::status::ok);
  EXPECT_EQ(send(name_request(proto::op::buffer_open, "weights"), &r), proto::status::not_found) << "the name is gone";
  EXPECT_EQ(named(), 2 * kSlab) << "the memory stays while it is referenced";
  ASSERT_EQ(ask(proto::op::buffer_close, theirs, &r), proto::status::ok);
  EXPECT_EQ(ask(proto::op::buffer_close, theirs, &r), proto::status::not_found) << "closed twice";
  std::swap(sock_, other);
  EXPECT_EQ(named(), 2 * kSlab);
  ASSERT_EQ(ask(proto::op::buffer_close, mine, &r), proto::status::ok);
  EXPECT_EQ(named(), 0u) << "unlinked and unreferenced: freed";
  EXPECT_EQ(q[12345], 0x5a) << "a mapping made before stays valid";
  munmap(p, 3 << 20);
  munmap(q, 3 << 20);
  for (int f : {fd, fd2, other}) close(f);
}

// A reference without the memory (a channel's writer holding what it sent by reference): no
// memfd comes back, yet it keeps the buffer as any reference does.
TEST_F(Buffers, AReferenceOnlyOpenHoldsTheBufferWithoutItsMemory) {
  start();
  proto::reply r{};
  int fd = -1;
  ASSERT_EQ(send(create_request("held", 1 << 20), &r, &fd), proto::status::ok);
  const std::uint64_t mine = r.val[0];
  proto::request q = name_request(proto::op::buffer_open, "held");
  q.arg[2] = proto::k_open_reference_only | 2;
  EXPECT_EQ(send(q, &r), proto::status::bad_argument) << "an unknown arg2 bit";
  q.arg[2] = proto::k_open_reference_only;
  int none = -1;
  ASSERT_EQ(send(q, &r, &none), proto::status::ok);
  EXPECT_EQ(none, -1) << "no memfd";
  const std::uint64_t hold = r.val[0];
  EXPECT_EQ(r.val[1], 1u << 20);
  ASSERT_EQ(ask(proto::op::buffer_list, 0, &r), proto::status::ok);
  EXPECT_EQ(r.val[2], 2u) << "two references";

  // A channel writer's hold names its channel: counted there as held bytes until it ends.
  proto::request cq = name_request(proto::op::channel_create, "ch");
  cq.arg[0] = 4096;
  cq.arg[1] = 1;
  int ring = -1;
  ASSERT_EQ(send(cq, &r, &ring), proto::status::ok);
  const std::uint64_t writer = r.val[0];
  q.arg[3] = writer + 100;
  EXPECT_EQ(send(q, &r), proto::status::bad_argument) << "a hold naming a channel this client does not write";
  q.arg[3] = writer;
  ASSERT_EQ(send(q, &r), proto::status::ok);
  const std::uint64_t channel_hold = r.val[0];
  ASSERT_EQ(ask(proto::op::channel_list, 0, &r), proto::status::ok);
  EXPECT_EQ(proto::decode_channel_entry(r).held_bytes, 1u << 20) << "the channel holds the buffer's bytes";
  ASSERT_EQ(ask(proto::op::buffer_close, channel_hold, &r), proto::status::ok);
  ASSERT_EQ(ask(proto::op::channel_list, 0, &r), proto::status::ok);
  EXPECT_EQ(proto::decode_channel_entry(r).held_bytes, 0u) << "its hold ended";
  // Every participant maps the header writable: a reader that scribbles on it changes nothing the
  // daemon reports or indexes with (the ring's shape is the daemon's own copy).
  auto* h = static_cast<channel::header*>(
      mmap(nullptr, channel::mapping_bytes(4096), PROT_READ | PROT_WRITE, MAP_SHARED, ring, 0));
  ASSERT_NE(h, MAP_FAILED);
  h->capacity = std::uint64_t{1} << 40;
  h->max_readers = 0xffffffffu;
  ASSERT_EQ(ask(proto::op::channel_list, 0, &r), proto::status::ok);
  const proto::channel_entry listed = proto::decode_channel_entry(r);
  EXPECT_EQ(listed.capacity, 4096u);
  EXPECT_EQ(listed.max_readers, 1u);
  int slot_fd = -1;
  ASSERT_EQ(send(name_request(proto::op::channel_open, "ch"), &r, &slot_fd), proto::status::ok) << "the one slot";
  EXPECT_EQ(send(name_request(proto::op::channel_open, "ch"), &r), proto::status::busy)
      << "a second reader of one at most, whatever the header says";
  munmap(h, channel::mapping_bytes(4096));
  close(slot_fd);
  ASSERT_EQ(ask(proto::op::channel_close, writer, &r), proto::status::ok);
  close(ring);
  ASSERT_EQ(send(name_request(proto::op::buffer_unlink, "held"), &r), proto::status::ok);
  ASSERT_EQ(ask(proto::op::buffer_close, mine, &r), proto::status::ok);
  EXPECT_EQ(named(), kSlab) << "the reference-only hold keeps the memory";
  ASSERT_EQ(ask(proto::op::buffer_close, hold, &r), proto::status::ok);
  EXPECT_EQ(named(), 0u) << "its last reference ended: freed";
  close(fd);
}

TEST_F(Buffers, NamesAreInTheUidsNamespaceUnlessShared) {
  start();
  proto::reply r{};
  int a = -1, b = -1;
  ASSERT_EQ(send(create_request("x", 4096), &r, &a), proto::status::ok);
  ASSERT_EQ(send(create_request("x", 4096, /*shared=*/true), &r, &b), proto::status::ok) << "another namespace";
  EXPECT_EQ(send(name_request(proto::op::buffer_open, "y", true), &r), proto::status::not_found);
  int c = -1;
  EXPECT_EQ(send(name_request(proto::op::buffer_open, "x", true), &r, &c), proto::status::ok);
  for (int f : {a, b, c}) close(f);
}

TEST_F(Buffers, BadRequestsAreRefusedWithNothingCreated) {
  start(/*client_quota=*/0, /*uid_quota=*/2 * kSlab);
  proto::reply r{};
  const std::string long_name(64, 'n');
  EXPECT_EQ(send(create_request("a/b", 16), &r), proto::status::bad_argument) << "a '/'";
  EXPECT_EQ(send(create_request("", 16), &r), proto::status::bad_argument) << "empty";
  EXPECT_EQ(send(create_request(long_name, 16), &r), proto::status::bad_argument) << "64 bytes";
  EXPECT_EQ(send(create_request("t", 16, false, 99), &r), proto::status::bad_argument) << "unknown dtype";
  EXPECT_EQ(send(create_request("t", 16, false, 11, {2, 3}), &r), proto::status::bad_argument) << "2x3 f32 is 24 bytes";
  EXPECT_EQ(send(create_request("t", 20, false, 5, {2, 3}), &r), proto::status::bad_argument) << "2x3 u32 too";
  EXPECT_EQ(send(create_request("t", 8, false, 1, {~0ull, ~0ull}), &r), proto::status::bad_argument) << "overflow";
  proto::request dev = create_request("t", 1 << 21);
  dev.arg[1] = static_cast<std::uint64_t>(proto::buffer_kind::device);
  EXPECT_EQ(send(dev, &r), proto::status::bad_argument) << "a device buffer names its device's UUID";
  std::memset(dev.device_uuid, 0x5a, sizeof dev.device_uuid);
  // No device has that UUID (the simulator's, or none: no driver at all).
  EXPECT_EQ(send(dev, &r), proto::status::no_device) << "a device that does not exist";
  proto::request host_on_device = create_request("t", 16);
  std::memset(host_on_device.device_uuid, 0x5a, sizeof host_on_device.device_uuid);
  EXPECT_EQ(send(host_on_device, &r), proto::status::bad_argument) << "a host buffer names no device";
  EXPECT_EQ(send(create_request("big", 3 * kSlab), &r), proto::status::quota) << "over the uid quota";
  EXPECT_EQ(send(create_request("huge", 5 * kSlab), &r), proto::status::quota);
  EXPECT_EQ(named(), 0u) << "nothing was created by a refused request";
  int fd = -1;
  EXPECT_EQ(send(create_request("t", 24, false, 11, {2, 3}), &r, &fd), proto::status::ok) << "2x3 f32";
  EXPECT_EQ(named(), kSlab);
  EXPECT_EQ(send(name_request(proto::op::buffer_unlink, "none"), &r), proto::status::not_found);
  close(fd);
}

TEST_F(Buffers, FullRegionIsNoMemory) {
  start();
  proto::reply r{};
  int fd = -1;
  ASSERT_EQ(send(create_request("all", 4 * kSlab), &r, &fd), proto::status::ok);
  EXPECT_EQ(send(create_request("more", 1), &r), proto::status::no_memory);
  EXPECT_EQ(ask(proto::op::lease_slab, kSlab, &r), proto::status::no_memory) << "the buffer took the region";
  close(fd);
}

TEST_F(Buffers, AHolderKilledGivesItsReferenceBackAtOnce) {
  start();
  proto::reply r{};
  int fd = -1;
  ASSERT_EQ(send(create_request("held", kSlab), &r, &fd), proto::status::ok);
  const std::uint64_t mine = r.val[0];
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  if (child == 0) {
    std::string why;
    const int s = proto::connect_seqpacket(dir_ + "/poolshimd.sock", &why);
    proto::request q = name_request(proto::op::buffer_open, "held");
    proto::reply a{};
    int got = -1;
    const bool ok = s >= 0 && proto::exchange(s, q, -1, &a, &got) == proto::exchange_status::ok && a.status == 0;
    (void)!write(ready[1], ok ? "y" : "n", 1);
    pause();
    _exit(0);
  }
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  ASSERT_EQ(c, 'y');
  ASSERT_EQ(send(name_request(proto::op::buffer_unlink, "held"), &r), proto::status::ok);
  ASSERT_EQ(ask(proto::op::buffer_close, mine, &r), proto::status::ok);
  EXPECT_EQ(named(), kSlab) << "the child holds the last reference";
  const auto t0 = std::chrono::steady_clock::now();
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  while (named() != 0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2))
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(named(), 0u) << "freed when its last holder died";
  std::printf("[ figure ] kill -9 of the last holder to its buffer freed: %.1f ms\n", ms);
  close(ready[0]);
  close(ready[1]);
  close(fd);
}

// Device memory lent on the simulator's device 0 (ctest unit.daemon.device; the driver is the
// simulator's libcuda.so.1): clients are connections of this process, each its own client.
class ServerDevice : public Server {
 protected:
  static constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
  void start_lending(std::uint64_t limit, unsigned idle_percent) {
    start(0, 0, [&](server_options& o) {
      o.device_limit = limit;
      o.idle_percent = idle_percent;
    });
  }
  int connect() {
    std::string why;
    const int s = proto::connect_seqpacket(dir_ + "/poolshimd.sock", &why);
    EXPECT_GE(s, 0) << why;
    return s;
  }
  // A device lease of `bytes` by the client on socket s (its fd closed: the daemon keeps its handle).
  proto::status lease(int s, std::uint64_t bytes, proto::reply* r) {
    std::swap(sock_, s);
    proto::request q = proto::make_request(proto::op::lease_device, ++seq_);
    q.arg[0] = bytes;
    static constexpr unsigned char uuid[16] = {0x70, 0x6f, 0x6f, 0x6c, 0x73, 0x68, 0x69, 0x6d, 0x2d, 0x73, 0x69, 0x6d};
    std::memcpy(q.payload, uuid, sizeof uuid);  // "poolshim-sim": the simulator's device 0
    int fd = -1;
    const proto::status st = raw(&q, sizeof q, -1, r, &fd);
    if (fd >= 0) close(fd);
    std::swap(sock_, s);
    return st;
  }
  // The client on socket s reports idle device bytes; returns what the daemon asks of it.
  std::uint64_t report(int s, std::uint64_t idle_device) {
    std::swap(sock_, s);
    proto::request q = proto::make_request(proto::op::return_idle, ++seq_);
    q.arg[0] = idle_device;
    q.arg[2] = proto::k_idle_report;
    proto::reply r{};
    EXPECT_EQ(raw(&q, sizeof q, -1, &r), proto::status::ok);
    std::swap(sock_, s);
    return r.val[1];
  }
};

// Review of issue #17: a client that says it holds idle more than it was lent (by mistake, or to
// make others wait for memory that never comes) is held to what it was lent, so a refused lease
// asks the clients that really hold idle memory.
TEST_F(ServerDevice, AClientOverReportingIdleBytesDoesNotTakeTheAskFromTheRealHolders) {
  start_lending(8 * kMiB, server_options::k_no_idle_bound);
  proto::reply r{};
  const int honest = connect(), liar = connect();
  ASSERT_EQ(lease(honest, 4 * kMiB, &r), proto::status::ok) << "needs the simulator's libcuda.so.1";
  ASSERT_EQ(lease(liar, 2 * kMiB, &r), proto::status::ok);
  EXPECT_EQ(report(honest, 4 * kMiB), 0u);
  EXPECT_EQ(report(liar, std::uint64_t{1} << 40), 0u);  // 1 TiB idle, of 2 MiB lent
  ASSERT_EQ(lease(sock_, 4 * kMiB, &r), proto::status::no_memory) << "6 of 8 MiB lent";
  EXPECT_EQ(r.val[0], 4 * kMiB) << "asked on its behalf";
  EXPECT_EQ(report(honest, 4 * kMiB), 4 * kMiB) << "asked of the client that holds it";
  EXPECT_EQ(report(liar, std::uint64_t{1} << 40), 0u) << "the liar holds 2 MiB at most: less than the other";
  close(liar);
  close(honest);
}

// A client that calls memory in use idle (within what it was lent) takes the ask and gives nothing
// back: what it kept is not believed idle again, so the next refused lease asks the client that
// really holds idle memory. Memory lent to it later is believed again.
TEST_F(ServerDevice, AClientThatKeepsWhatItWasAskedForIsNoLongerAsked) {
  start_lending(8 * kMiB, server_options::k_no_idle_bound);
  proto::reply r{};
  const int honest = connect(), liar = connect();
  ASSERT_EQ(lease(liar, 4 * kMiB, &r), proto::status::ok) << "needs the simulator's libcuda.so.1";
  ASSERT_EQ(lease(honest, 2 * kMiB, &r), proto::status::ok);
  EXPECT_EQ(report(honest, 2 * kMiB), 0u);
  EXPECT_EQ(report(liar, 4 * kMiB), 0u);
  ASSERT_EQ(lease(sock_, 4 * kMiB, &r), proto::status::no_memory);
  EXPECT_EQ(r.val[0], 4 * kMiB);
  EXPECT_EQ(report(liar, 4 * kMiB), 4 * kMiB) << "the largest idle holder, by its word";
  EXPECT_EQ(report(liar, 4 * kMiB), 0u) << "it gave nothing back";
  ASSERT_EQ(lease(sock_, 4 * kMiB, &r), proto::status::no_memory);
  EXPECT_EQ(r.val[0], 2 * kMiB) << "all the idle memory there is: the honest client's";
  EXPECT_EQ(report(liar, 4 * kMiB), 0u) << "what it kept is not believed";
  EXPECT_EQ(report(honest, 2 * kMiB), 2 * kMiB);
  close(liar);
  close(honest);
}

// The same client giving back a small lease for each large ask (the earlier rule, three asks in a
// row of which it gave nothing, took any returned lease as good faith): what it kept of the ask is
// still not believed, and a refused lease is told only of the memory that is really coming.
TEST_F(ServerDevice, AClientGivingASmallLeaseForALargeAskIsBelievedOnlyForWhatItGave) {
  start_lending(16 * kMiB, server_options::k_no_idle_bound);
  proto::reply r{};
  const int honest = connect();
  int liar = connect();
  ASSERT_EQ(lease(liar, 2 * kMiB, &r), proto::status::ok) << "needs the simulator's libcuda.so.1";
  const std::uint64_t small = r.val[0];
  ASSERT_EQ(lease(liar, 8 * kMiB, &r), proto::status::ok);
  ASSERT_EQ(lease(honest, 2 * kMiB, &r), proto::status::ok);
  EXPECT_EQ(report(honest, 2 * kMiB), 0u);
  EXPECT_EQ(report(liar, 10 * kMiB), 0u);
  ASSERT_EQ(lease(sock_, 8 * kMiB, &r), proto::status::no_memory) << "12 of 16 MiB lent";
  EXPECT_EQ(r.val[0], 8 * kMiB);
  EXPECT_EQ(report(liar, 10 * kMiB), 8 * kMiB) << "asked of the largest idle holder, by its word";
  proto::request give = proto::make_request(proto::op::return_slab, ++seq_);
  give.arg[0] = small;
  std::swap(sock_, liar);
  EXPECT_EQ(raw(&give, sizeof give, -1, &r), proto::status::ok) << "the 2 MiB lease back";
  std::swap(sock_, liar);
  EXPECT_EQ(report(liar, 8 * kMiB), 0u) << "6 MiB of the ask kept";
  ASSERT_EQ(lease(sock_, 8 * kMiB, &r), proto::status::no_memory) << "10 of 16 MiB lent";
  EXPECT_EQ(r.val[0], 4 * kMiB) << "the liar's 2 MiB beyond what it kept, and the honest client's 2 MiB";
  EXPECT_EQ(report(honest, 2 * kMiB), 2 * kMiB);
  EXPECT_EQ(report(liar, 8 * kMiB), 2 * kMiB);
  close(liar);
  close(honest);
}

// The node's footprint bound: a lease that leaves more lent than idle_percent above what clients
// use (lent less reported idle) asks the idle holders for the excess; off, nobody is asked.
TEST_F(ServerDevice, ALeaseBeyondTheNodeIdleBoundAsksIdleHoldersForTheExcess) {
  for (const unsigned percent : {10u, server_options::k_no_idle_bound}) {
    start_lending(256 * kMiB, percent);
    proto::reply r{};
    const int holder = connect();
    ASSERT_EQ(lease(holder, 32 * kMiB, &r), proto::status::ok) << "needs the simulator's libcuda.so.1";
    ASSERT_EQ(lease(holder, 32 * kMiB, &r), proto::status::ok);
    EXPECT_EQ(report(holder, 40 * kMiB), 0u) << "no lease since: nothing asked";
    ASSERT_EQ(lease(sock_, 16 * kMiB, &r), proto::status::ok);  // 80 MiB lent, 40 MiB in use
    const std::uint64_t excess = 80 * kMiB - (40 * kMiB + 40 * kMiB / 100 * 10);
    EXPECT_EQ(report(holder, 40 * kMiB), percent == 10 ? excess : 0u) << percent;
    close(holder);
    TearDown();
    server_.reset();
    sock_ = -1;
  }
}

}  // namespace server_test
}  // namespace poolshim::daemon

// The socket layer (daemon/protocol/transport.h): records keep their boundaries, one descriptor
// travels with a record, extra or truncated descriptors are closed and flagged, an oversized
// message reports its real length, and the trust checks refuse what a squatter could control.
#include "poolshim/transport.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace poolshim::proto {
namespace {

struct pair_of_sockets {
  int a = -1, b = -1;
  pair_of_sockets() {
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    a = sv[0];
    b = sv[1];
  }
  ~pair_of_sockets() {
    close(a);
    close(b);
  }
};

int open_fd_count() {
  int n = 0;
  for (int fd = 0; fd < 1024; ++fd) n += fcntl(fd, F_GETFD) != -1;
  return n;
}

TEST(Transport, RecordAndDescriptorArriveTogether) {
  pair_of_sockets p;
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const char msg[16] = "fifteen chars..";
  ASSERT_TRUE(send_record(p.a, msg, sizeof msg, pipe_fds[1]));
  char got[32];
  std::size_t len = 0;
  int fd = -1;
  ASSERT_EQ(recv_record(p.b, got, sizeof got, &len, &fd), recv_status::ok);
  EXPECT_EQ(len, sizeof msg);
  EXPECT_EQ(std::memcmp(got, msg, sizeof msg), 0);
  ASSERT_GE(fd, 0);
  EXPECT_NE(fd, pipe_fds[1]) << "a new descriptor for the same pipe";
  EXPECT_EQ(write(fd, "x", 1), 1);
  char c = 0;
  EXPECT_EQ(read(pipe_fds[0], &c, 1), 1);
  EXPECT_EQ(c, 'x');
  EXPECT_EQ(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  close(fd);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}

TEST(Transport, OversizedMessageReportsItsRealLength) {
  pair_of_sockets p;
  char big[300] = {};
  ASSERT_TRUE(send_record(p.a, big, sizeof big, -1));
  char got[128];
  std::size_t len = 0;
  int fd = -1;
  ASSERT_EQ(recv_record(p.b, got, sizeof got, &len, &fd), recv_status::ok);
  EXPECT_EQ(len, sizeof big) << "the caller must see that the record was truncated";
  EXPECT_EQ(fd, -1);
}

TEST(Transport, ExtraDescriptorsAreClosedAndFlagged) {
  pair_of_sockets p;
  const int before = open_fd_count();
  // Three descriptors in one message, as a hostile peer might send.
  int fds[3];
  for (int& f : fds) f = open("/dev/null", O_RDONLY | O_CLOEXEC);
  char data[8] = {};
  iovec iov{data, sizeof data};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof fds)] = {};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof fds);
  std::memcpy(CMSG_DATA(c), fds, sizeof fds);
  ASSERT_EQ(sendmsg(p.a, &m, 0), static_cast<ssize_t>(sizeof data));
  for (int f : fds) close(f);
  char got[8];
  std::size_t len = 0;
  int fd = 0;
  ASSERT_EQ(recv_record(p.b, got, sizeof got, &len, &fd), recv_status::ok);
  EXPECT_EQ(fd, -2);
  EXPECT_EQ(open_fd_count(), before) << "every received descriptor was closed";
}

TEST(Transport, ConnectToAFullBacklogTimesOut) {
  char tmpl[] = "/tmp/poolshim-transport-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/s.sock";
  std::string why;
  const int l = listen_seqpacket(path, 0, &why);  // never accepts
  ASSERT_GE(l, 0) << why;
  std::vector<int> held;
  const auto t0 = std::chrono::steady_clock::now();
  int s = -1;
  for (int i = 0; i < 8 && (s = connect_seqpacket(path, &why, 200)) >= 0; ++i) held.push_back(s);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 0) << "the backlog never filled";
  EXPECT_LT(took, 3.0) << "connect waited past its timeout";
  for (int h : held) close(h);
  close(l);
  unlink(path.c_str());
  rmdir(tmpl);
}

TEST(Transport, ClosedPeerIsReported) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  close(sv[0]);
  char got[8];
  std::size_t len = 0;
  int fd = -1;
  EXPECT_EQ(recv_record(sv[1], got, sizeof got, &len, &fd), recv_status::closed);
  close(sv[1]);
}

TEST(Transport, PeerCredentialsNameThisProcess) {
  pair_of_sockets p;
  peer who{};
  ASSERT_TRUE(peer_of(p.a, &who));
  EXPECT_EQ(who.pid, getpid());
  EXPECT_EQ(who.uid, getuid());
  std::string why;
  EXPECT_TRUE(trusted_peer(p.a, getuid(), &why)) << why;
  if (getuid() != 0) {
    EXPECT_FALSE(trusted_peer(p.a, getuid() + 1, &why)) << "a peer that is neither root nor me";
  } else {
    EXPECT_TRUE(trusted_peer(p.a, 12345, &why)) << "root is trusted by everyone";
  }
}

class TrustedDirectory : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/poolshim-trust-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { rmdir(dir_.c_str()); }
  std::string sock() const { return dir_ + "/poolshimd.sock"; }
  std::string dir_;
};

TEST_F(TrustedDirectory, OwnersPrivateDirectoryIsTrusted) {
  ASSERT_EQ(chmod(dir_.c_str(), 0700), 0);
  std::string why;
  EXPECT_TRUE(trusted_directory(sock(), getuid(), &why)) << why;
}

TEST_F(TrustedDirectory, DirectoryOthersCanWriteIsRefused) {
  std::string why;
  for (mode_t m : {0777, 0770, 0722, 0702}) {
    ASSERT_EQ(chmod(dir_.c_str(), m), 0);
    EXPECT_FALSE(trusted_directory(sock(), getuid(), &why)) << std::oct << m;
  }
  if (getuid() != 0) {  // a user's directory must be exactly 0700; root's may be readable
    ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
    EXPECT_FALSE(trusted_directory(sock(), getuid(), &why));
  } else {
    ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
    EXPECT_TRUE(trusted_directory(sock(), 12345, &why)) << "root's readable directory serves every user: " << why;
  }
}

TEST_F(TrustedDirectory, AnotherUsersDirectoryIsRefused) {
  ASSERT_EQ(chmod(dir_.c_str(), 0700), 0);
  std::string why;
  if (getuid() == 0) {
    ASSERT_EQ(chown(dir_.c_str(), 12345, 12345), 0);
    EXPECT_FALSE(trusted_directory(sock(), 0, &why)) << "root does not trust a user's directory";
    EXPECT_FALSE(trusted_directory(sock(), 23456, &why)) << "nor another user";
    EXPECT_TRUE(trusted_directory(sock(), 12345, &why)) << why;
  } else {
    EXPECT_FALSE(trusted_directory(sock(), getuid() + 1, &why));
  }
  EXPECT_FALSE(why.empty());
}

TEST(Transport, SocketPathFollowsTheDesignsOrder) {
  EXPECT_EQ(socket_path("/x/y.sock"), "/x/y.sock");
  struct stat st {};
  if (stat("/run/poolshim", &st) != 0) {
    setenv("XDG_RUNTIME_DIR", "/run/user/77", 1);
    EXPECT_EQ(socket_path(""), "/run/user/77/poolshim/poolshimd.sock");
    EXPECT_EQ(socket_path(nullptr), "/run/user/77/poolshim/poolshimd.sock");
    unsetenv("XDG_RUNTIME_DIR");
    EXPECT_EQ(socket_path(""), "/tmp/poolshim-" + std::to_string(getuid()) + "/poolshimd.sock");
  }
}

TEST(Transport, SocketPathIsWhatTheCallerReadNotTheEnvironment) {
  // POOLSHIM_SOCKET belongs to the option tables (config.h); the transport only resolves.
  setenv("POOLSHIM_SOCKET", "/from/the/environment.sock", 1);
  EXPECT_EQ(socket_path("/x/y.sock"), "/x/y.sock");
  EXPECT_NE(socket_path(""), "/from/the/environment.sock");
  unsetenv("POOLSHIM_SOCKET");
}

}  // namespace
}  // namespace poolshim::proto

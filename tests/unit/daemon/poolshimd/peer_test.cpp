// The peer's process as a pidfd (daemon/poolshimd/peer.h; issue #13, finding 16): the very process
// that connected, never another that got its pid later.
#include "poolshimd/peer.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "poolshim/transport.h"

namespace poolshim::daemon {
namespace {

// The pid a pidfd refers to (its fdinfo's "Pid:" line; -1 once the process is gone).
long pid_of(int pidfd) {
  const std::string path = "/proc/self/fdinfo/" + std::to_string(pidfd);
  FILE* f = std::fopen(path.c_str(), "re");
  if (f == nullptr) return 0;
  char line[256];
  long pid = 0;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::sscanf(line, "Pid: %ld", &pid) == 1) break;
  std::fclose(f);
  return pid;
}

TEST(PeerPidfd, NamesTheConnectingProcessEitherWay) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  for (bool peerpidfd : {true, false}) {
    const int fd = peer_pidfd(sv[0], getpid(), boot_ticks(), peerpidfd);
    ASSERT_GE(fd, 0) << std::strerror(errno) << (peerpidfd ? " (SO_PEERPIDFD)" : " (pidfd_open)");
    EXPECT_EQ(pid_of(fd), getpid());
    close(fd);
  }
  close(sv[0]);
  close(sv[1]);
}

TEST(PeerPidfd, AProcessStartedAfterTheAcceptIsNotThePeer) {
  // As if the peer had exited and its pid gone to this child, started after the accept: the
  // older kernels' way refuses it (by its start time).
  const unsigned long long accepted_at = boot_ticks();
  std::this_thread::sleep_for(std::chrono::milliseconds(30));  // past the tick of the accept
  const pid_t child = fork();
  if (child == 0) {
    pause();
    _exit(0);
  }
  ASSERT_GT(child, 0);
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  errno = 0;
  EXPECT_EQ(peer_pidfd(sv[0], child, accepted_at, false), -1) << "a process started after the accept";
  EXPECT_EQ(errno, ESRCH);
  const int fd = peer_pidfd(sv[0], child, boot_ticks(), false);
  EXPECT_GE(fd, 0) << "the same process, when it existed at the accept";
  if (fd >= 0) close(fd);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  close(sv[0]);
  close(sv[1]);
}

TEST(PeerPidfd, PeerThatExitedBeforeTheAcceptIsSeenAsExited) {
  // SO_PEERPIDFD: the peer's pidfd even once it has exited (readable at once), never a pid's.
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  const pid_t child = fork();
  if (child == 0) {
    // A socketpair's peer credentials are those of the process that made it: the child makes its
    // own pair, sends one end back, and exits.
    int mine[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, mine) != 0) _exit(1);
    const char b = 'x';
    _exit(proto::send_record(sv[1], &b, 1, mine[0]) ? 0 : 1);
  }
  int st = 0;
  ASSERT_EQ(waitpid(child, &st, 0), child);  // exited and reaped: its pid is free for anyone
  ASSERT_EQ(WEXITSTATUS(st), 0);
  char b = 0;
  std::size_t got = 0;
  int end = -1;
  ASSERT_EQ(proto::recv_record(sv[0], &b, 1, &got, &end), proto::recv_status::ok);
  ASSERT_GE(end, 0);
  int fd = -1;
  socklen_t len = sizeof fd;
  if (getsockopt(end, SOL_SOCKET, 77 /* SO_PEERPIDFD */, &fd, &len) != 0) {
    close(end);
    GTEST_SKIP() << "no SO_PEERPIDFD on this kernel (before Linux 6.5)";
  }
  close(fd);
  fd = peer_pidfd(end, child, boot_ticks());
  if (fd >= 0) {
    pollfd p{fd, POLLIN, 0};
    EXPECT_EQ(poll(&p, 1, 0), 1) << "the exited peer's pidfd is readable: its leases end at once";
    close(fd);
  } else {
    EXPECT_EQ(errno, ESRCH) << "or it is refused as gone; never another process's";
  }
  close(end);
  close(sv[0]);
  close(sv[1]);
}

}  // namespace
}  // namespace poolshim::daemon

// The peer's process (peer.h).
#include "poolshimd/peer.h"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

namespace poolshim::daemon {

unsigned long long boot_ticks() noexcept {
  timespec t{};
  clock_gettime(CLOCK_BOOTTIME, &t);
  const auto hz = static_cast<unsigned long long>(sysconf(_SC_CLK_TCK));
  return static_cast<unsigned long long>(t.tv_sec) * hz +
         static_cast<unsigned long long>(t.tv_nsec) * hz / 1000000000ull;
}

unsigned long long start_ticks(pid_t pid) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return 0;
  char buf[1024];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // the command name may hold spaces and parentheses
  if (p == nullptr || p[1] == '\0') return 0;
  unsigned long long ticks = 0;
  // After ") ": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
  // cutime cstime priority nice num_threads itrealvalue starttime (field 22).
  if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &ticks) !=
      1)
    return 0;
  return ticks;
}

int peer_pidfd(int sock, pid_t pid, unsigned long long accepted_at, bool use_peerpidfd) noexcept {
  if (use_peerpidfd) {
    int fd = -1;
    socklen_t len = sizeof fd;
    if (getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &fd, &len) == 0 && fd >= 0) return fd;
  }
  const unsigned long long before = start_ticks(pid);
  const int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return -1;
  const unsigned long long after = start_ticks(pid);
  // The same process around the open, and one that existed when the connection was accepted (a
  // process started later got a reused pid). Start times are in ticks: a process started within
  // the accept's tick passes.
  if (before == 0 || before != after || after > accepted_at) {
    close(fd);
    errno = ESRCH;
    return -1;
  }
  return fd;
}

}  // namespace poolshim::daemon

// Child processes of the pair and benchmark programs (channel_pair, channel_bench): the program
// runs itself with other arguments, and reads the child's lines ("ready", its figures).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <time.h>
#include <unistd.h>

#include <string>
#include <vector>

extern char** environ;

namespace child_process {

inline double now_us() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) / 1e3;
}

// A child running this program with `args`; its stdout comes back through *out_fd.
inline pid_t spawn_self(const std::vector<std::string>& args, int* out_fd) {
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return -1;
  exe[n] = '\0';
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  std::vector<char*> argv{exe};
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, exe, &fa, nullptr, argv.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  *out_fd = p[0];
  return pid;
}

// Waits for a line on fd (a child's "ready"); false after `timeout_ms`.
inline bool read_line(int fd, std::string* line, int timeout_ms = 10000) {
  line->clear();
  for (;;) {
    pollfd f{fd, POLLIN, 0};
    if (poll(&f, 1, timeout_ms) != 1) return false;
    char c = 0;
    if (read(fd, &c, 1) != 1) return false;
    if (c == '\n') return true;
    line->push_back(c);
  }
}

}  // namespace child_process

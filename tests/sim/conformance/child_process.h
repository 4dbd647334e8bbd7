// Child processes for the cross-process tests (IPC, VMM export) and for tests that need their own
// simulator configuration (fault injection, sticky errors). A child is this same test binary,
// started with posix_spawn of /proc/self/exe and --gtest_filter naming one child test: real CUDA
// does not allow fork() after initialisation, so a child never inherits a CUDA state. Also: hex
// coding of handles for environment variables, and descriptor passing with SCM_RIGHTS.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern char** environ;

namespace conformance {

// The descriptor number under which run_child_test hands a descriptor to the child, and the
// variable that tells the child where to find it.
inline constexpr int inherited_fd = 100;
inline constexpr const char* inherited_fd_env = "POOLSHIM_CONF_INHERITED_FD";

struct child_result {
  int exit_code = -1;  // exit status; -1 when killed by a signal
  int term_signal = 0;
  bool timed_out = false;
  std::string output;  // stdout and stderr together

  // The child exited 0 and gtest reports `test` as passed: a skipped child does not count, so a
  // child that silently skipped cannot make its parent test pass.
  bool passed(const std::string& test) const {
    return exit_code == 0 && output.find("[       OK ] " + test) != std::string::npos;
  }
};

// Runs the test `test` ("Suite.Name") of this binary in a fresh process, with `env` ("K=V")
// added to (or replacing entries of) this process's environment. When pass_fd >= 0 the child gets
// it as descriptor `inherited_fd`. The child is killed after `limit`.
inline child_result run_child_test(const std::string& test, const std::vector<std::string>& env, int pass_fd = -1,
                                   std::chrono::seconds limit = std::chrono::seconds(60)) {
  child_result r;
  char exe[4096];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len <= 0) {
    r.output = "readlink(/proc/self/exe) failed";
    return r;
  }
  exe[len] = '\0';

  std::vector<std::string> vars;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string v(*e);
    // A report file named by the parent's environment must not be overwritten by the child.
    bool replaced = v.rfind("GTEST_OUTPUT=", 0) == 0;
    for (const auto& add : env) {
      auto eq = add.find('=');
      if (v.compare(0, eq + 1, add, 0, eq + 1) == 0) replaced = true;
    }
    if (!replaced) vars.push_back(std::move(v));
  }
  for (const auto& add : env) vars.push_back(add);
  if (pass_fd >= 0) vars.push_back(std::string(inherited_fd_env) + "=" + std::to_string(inherited_fd));
  std::vector<char*> envp;
  for (auto& v : vars) envp.push_back(v.data());
  envp.push_back(nullptr);

  std::string filter = "--gtest_filter=" + test;
  std::string color = "--gtest_color=no";
  char* argv[] = {exe, filter.data(), color.data(), nullptr};

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    r.output = "pipe2 failed";
    return r;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, out[1], STDERR_FILENO);
  if (pass_fd >= 0) {
    if (pass_fd == inherited_fd) {
      fcntl(pass_fd, F_SETFD, 0);  // dup2 onto itself would keep FD_CLOEXEC
    } else {
      posix_spawn_file_actions_adddup2(&fa, pass_fd, inherited_fd);
    }
  }
  pid_t pid = -1;
  int rc = posix_spawn(&pid, exe, &fa, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  if (rc != 0) {
    close(out[0]);
    r.output = std::string("posix_spawn failed: ") + std::strerror(rc);
    return r;
  }

  const auto deadline = std::chrono::steady_clock::now() + limit;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      r.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    ssize_t got = read(out[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    r.output.append(buf, static_cast<std::size_t>(got));
  }
  close(out[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.term_signal = WTERMSIG(status);
  return r;
}

// ---- handles in environment variables -------------------------------------------------------------

inline std::string to_hex(const void* data, std::size_t n) {
  static const char digits[] = "0123456789abcdef";
  const auto* b = static_cast<const unsigned char*>(data);
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    s += digits[b[i] >> 4];
    s += digits[b[i] & 15];
  }
  return s;
}
inline bool from_hex(const std::string& s, void* data, std::size_t n) {
  if (s.size() != 2 * n) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  auto* b = static_cast<unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    b[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return true;
}

// ---- descriptors over a unix socket ----------------------------------------------------------------

inline bool send_fd(int sock, int fd) {
  char byte = 'F';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof ctrl;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  ssize_t n;
  while ((n = sendmsg(sock, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  return n == 1;
}
// Returns the received descriptor (close-on-exec), or -1.
inline int recv_fd(int sock) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof ctrl;
  ssize_t n;
  while ((n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  if (n != 1) return -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
      return fd;
    }
  }
  return -1;
}

// The value of an environment variable set by the parent test, or nullptr: child tests skip when
// their variable is absent (a normal run of the suite).
inline const char* parent_env(const char* name) { return std::getenv(name); }

}  // namespace conformance

// Unix-socket plumbing for the protocol (transport.h).
#include "poolshim/transport.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "poolshim/protocol.h"

namespace poolshim::proto {
namespace {

bool make_address(const std::string& path, sockaddr_un* a, std::string* why) {
  std::memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof a->sun_path) {
    if (why) *why = "socket path is empty or longer than " + std::to_string(sizeof a->sun_path - 1) + " bytes";
    return false;
  }
  std::memcpy(a->sun_path, path.data(), path.size());
  return true;
}

std::string dir_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

void set_timeouts(int s, int ms) {
  if (ms <= 0) return;
  const timeval tv{ms / 1000, (ms % 1000) * 1000};
  (void)setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  (void)setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

}  // namespace

int listen_seqpacket(const std::string& path, int backlog, std::string* why) {
  sockaddr_un a;
  if (!make_address(path, &a, why)) return -1;
  const int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) {
    if (why) *why = errno_text("socket");
    return -1;
  }
  // A stale socket file of a daemon that died is replaced; a live daemon is not: probe it first
  // (a live one with a full backlog answers EAGAIN after the timeout: live too).
  const int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (probe >= 0) {
    set_timeouts(probe, k_client_timeout_ms);
    const bool live = connect(probe, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 || errno == EAGAIN;
    close(probe);
    if (live) {
      close(s);
      if (why) *why = "another daemon answers on " + path;
      return -1;
    }
  }
  unlink(path.c_str());
  // The socket file is connectable by all (0666): who may reach it is the directory's business
  // (0700 for a per-user daemon; root's, readable by all, for a node-wide one), and the daemon
  // keeps each uid's memory apart.
  if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || chmod(path.c_str(), 0666) != 0 ||
      listen(s, backlog) != 0) {
    if (why) *why = errno_text(("bind/listen " + path).c_str());
    close(s);
    return -1;
  }
  return s;
}

int connect_seqpacket(const std::string& path, std::string* why, int timeout_ms) {
  sockaddr_un a;
  if (!make_address(path, &a, why)) return -1;
  const int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (s < 0) {
    if (why) *why = errno_text("socket");
    return -1;
  }
  // AF_UNIX connect waits for room in the listener's backlog for at most SO_SNDTIMEO (EAGAIN).
  set_timeouts(s, timeout_ms);
  if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (why) *why = errno_text(("connect " + path).c_str());
    close(s);
    return -1;
  }
  return s;
}

bool send_record(int sock, const void* rec, std::size_t len, int fd) noexcept {
  iovec iov{const_cast<void*>(rec), len};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  for (;;) {
    const ssize_t n = sendmsg(sock, &m, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    return n == static_cast<ssize_t>(len);
  }
}

void disarm_linger(int fd) noexcept {
  // The type from the inode (AT_STATX_DONT_SYNC): a FUSE file's server is not asked.
  struct statx sx {};
  if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE, &sx) == 0 && S_ISSOCK(sx.stx_mode)) {
    const linger none{0, 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &none, sizeof none);
  }
}

void close_received(int fd) noexcept {
  if (fd < 0) return;
  disarm_linger(fd);
  close(fd);
}

recv_status recv_record(int sock, void* buf, std::size_t cap, std::size_t* len, int* fd, fd_sink refused) noexcept {
  const auto refuse = [&](int f) {
    if (refused.put != nullptr) {
      refused.put(refused.ctx, f);
    } else {
      close_received(f);
    }
  };
  *len = 0;
  *fd = -1;
  iovec iov{buf, cap};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  // Room for a few descriptors, so that a hostile peer's extra ones arrive (and are closed) rather
  // than being silently dropped by the kernel with MSG_CTRUNC.
  alignas(cmsghdr) char control[CMSG_SPACE(8 * sizeof(int))];
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC | MSG_TRUNC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return recv_status::error;
  int got = 0;
  int first = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int f;
      std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
      if (got++ == 0) {
        first = f;
      } else {
        refuse(f);
      }
    }
  }
  if (got > 1 || (m.msg_flags & MSG_CTRUNC) != 0) {
    if (first >= 0) refuse(first);
    *fd = -2;
  } else {
    *fd = first;
  }
  if (n == 0 && got == 0) return recv_status::closed;
  *len = static_cast<std::size_t>(n);
  return recv_status::ok;
}

exchange_status exchange(int sock, const request& q, int fd_in, reply* r, int* fd_out) noexcept {
  if (fd_out != nullptr) *fd_out = -1;
  if (!send_record(sock, &q, sizeof q, fd_in)) return exchange_status::io_error;
  alignas(8) unsigned char buf[k_record_size];
  std::size_t len = 0;
  int fd = -1;
  if (recv_record(sock, buf, sizeof buf, &len, &fd) != recv_status::ok) return exchange_status::io_error;
  if (validate_reply(buf, len, q, r) != status::ok || fd == -2) {
    close_received(fd);
    return exchange_status::bad_reply;
  }
  if (fd_out != nullptr) {
    *fd_out = fd;
  } else {
    close_received(fd);
  }
  return exchange_status::ok;
}

bool peer_of(int sock, peer* out) noexcept {
  ucred c{};
  socklen_t n = sizeof c;
  if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &c, &n) != 0 || n != sizeof c) return false;
  out->pid = c.pid;
  out->uid = c.uid;
  out->gid = c.gid;
  return true;
}

std::string socket_path(const char* configured) {
  if (configured != nullptr && *configured != '\0') return configured;
  struct stat st {};
  if (stat("/run/poolshim", &st) == 0 && S_ISDIR(st.st_mode)) return "/run/poolshim/poolshimd.sock";
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x != nullptr && *x == '/')
    return std::string(x) + "/poolshim/poolshimd.sock";
  return "/tmp/poolshim-" + std::to_string(getuid()) + "/poolshimd.sock";
}

bool trusted_directory(const std::string& socket_path, uid_t me, std::string* why) {
  const std::string dir = dir_of(socket_path);
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0) {
    if (why) *why = errno_text(("stat " + dir).c_str());
    return false;
  }
  if (!S_ISDIR(st.st_mode)) {
    if (why) *why = dir + " is not a directory";
    return false;
  }
  const mode_t perms = st.st_mode & 07777;
  // Root's directory may be readable by all (a node-wide daemon), never writable by others (a
  // squatter could replace the socket); the user's must be 0700.
  if (st.st_uid == 0 && (perms & 022) == 0) return true;
  if (st.st_uid == me && perms == 0700) return true;
  if (why) {
    char text[160];
    std::snprintf(text, sizeof text,
                  "%s is owned by uid %u with mode %04o (want root and not writable by others, "
                  "or uid %u and 0700)",
                  dir.c_str(), static_cast<unsigned>(st.st_uid), static_cast<unsigned>(perms),
                  static_cast<unsigned>(me));
    *why = text;
  }
  return false;
}

bool trusted_peer(int sock, uid_t me, std::string* why) {
  peer p{};
  if (!peer_of(sock, &p)) {
    if (why) *why = errno_text("SO_PEERCRED");
    return false;
  }
  if (p.uid == 0 || p.uid == me) return true;
  if (why) *why = "the daemon runs as uid " + std::to_string(p.uid) + ", neither root nor uid " + std::to_string(me);
  return false;
}

bool prepare_directory(const std::string& socket_path, std::string* why) {
  const std::string dir = dir_of(socket_path);
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    if (why) *why = errno_text(("mkdir " + dir).c_str());
    return false;
  }
  return trusted_directory(socket_path, geteuid(), why);
}

}  // namespace poolshim::proto

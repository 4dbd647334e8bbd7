// The socket layer under the protocol: SOCK_SEQPACKET Unix sockets (message boundaries kept, so a
// record is one message), one optional descriptor per message by SCM_RIGHTS, peer identity by
// SO_PEERCRED, and the socket path rules with the client's trust check (DESIGN.md, "Daemon"): the
// directory is root's (and writable by no one else) or the user's with mode 0700, and the peer is
// root or the user. Used by the daemon and by the shim; nothing here allocates after setup.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>

namespace poolshim::proto {

// Every descriptor made here is close-on-exec and the sockets are non-inheritable by exec.
int listen_seqpacket(const std::string& path, int backlog, std::string* why);

// A client's default limit on each step (connect, send, receive): a daemon that accepts and then
// hangs, or whose backlog is full, fails the call (EAGAIN) instead of holding the caller.
constexpr int k_client_timeout_ms = 2000;
// Connects with SO_SNDTIMEO and SO_RCVTIMEO set to timeout_ms (0: none): connect waits at most
// that long for room in the daemon's backlog, and every later send and receive on the socket too
// (a caller may set its own afterwards).
int connect_seqpacket(const std::string& path, std::string* why, int timeout_ms = k_client_timeout_ms);

// Sends exactly `len` bytes as one message, with `fd` attached when fd >= 0. False on any failure.
bool send_record(int sock, const void* rec, std::size_t len, int fd) noexcept;

// A descriptor a peer sent that the receiver does not keep, disposed of without ever blocking on
// it: a socket's SO_LINGER is cleared first (a peer's TCP socket with a full send queue and a
// 30 s linger would otherwise hold close() for 30 s), then it is closed.
void close_received(int fd) noexcept;
// A socket's SO_LINGER cleared (anything else is left as it is): its last close then does not wait
// for the peer. close_received's first step, for a receiver that closes elsewhere.
void disarm_linger(int fd) noexcept;

// Where recv_record puts the descriptors it refuses (the extra ones of a message): the daemon
// hands them to a thread of its own (server.cpp), since even the last close of a socket may run
// the release of what is queued in it. Null put: close_received.
struct fd_sink {
  void (*put)(void* ctx, int fd) noexcept = nullptr;
  void* ctx = nullptr;
};

enum class recv_status { ok, closed, error };
// Receives one message into buf (cap bytes). *len is the message's real length, which may exceed
// cap (then the record is truncated and must be refused). *fd is the descriptor that came with it,
// or -1; a message with more than one descriptor, or a truncated control message, has all of them
// given to `refused` and *fd = -2 (the record must be refused).
recv_status recv_record(int sock, void* buf, std::size_t cap, std::size_t* len, int* fd, fd_sink refused = {}) noexcept;

// One request and its reply on a connected socket: sends q (with fd_in when >= 0), receives the
// reply, validates it against q. The reply's descriptor goes to *fd_out (or is closed when fd_out
// is null). io_error: the connection failed; bad_reply: the peer answered something invalid.
enum class exchange_status { ok, io_error, bad_reply };
struct request;
struct reply;
exchange_status exchange(int sock, const request& q, int fd_in, reply* r, int* fd_out) noexcept;

struct peer {
  pid_t pid;
  uid_t uid;
  gid_t gid;
};
bool peer_of(int sock, peer* out) noexcept;

// The socket path: `configured` when it is not empty (POOLSHIM_SOCKET or --socket, read from an
// option table by the caller: nothing here reads poolshim's variables), else
// /run/poolshim/poolshimd.sock when /run/poolshim exists, else
// $XDG_RUNTIME_DIR/poolshim/poolshimd.sock, else /tmp/poolshim-<uid>/poolshimd.sock.
std::string socket_path(const char* configured);

// The client's checks, before a byte is sent: the socket's directory (see the top of this file)
// and then the connected peer. False with *why set when the daemon is not to be trusted.
bool trusted_directory(const std::string& socket_path, uid_t me, std::string* why);
bool trusted_peer(int sock, uid_t me, std::string* why);

// The daemon's side: creates the socket's directory with mode 0700 when it is missing (a per-user
// daemon), and refuses a directory it would not trust as a client either.
bool prepare_directory(const std::string& socket_path, std::string* why);

}  // namespace poolshim::proto

// The shim's daemon connection (daemon_client.h).
#include "source/daemon_client.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/process.h"
#include "poolshim/protocol.h"
#include "poolshim/transport.h"

namespace poolshim::daemon_client {
namespace {

constexpr std::chrono::seconds k_retry_after{1};
constexpr int k_reply_timeout_ms = 2000;
// How often the watcher looks at the connection of a process that holds slabs (watch below).
constexpr long k_watch_period_ns = 250'000'000;

struct held {
  std::uint64_t token;
  int fd;
  std::size_t bytes;
  std::uint64_t lease;  // the current daemon's id; 0 when it did not take the slab back in
};

struct connection {
  std::mutex mutex;
  int sock = -1;
  bool refused = false;  // the daemon is not to be trusted: local sources for the life of the process
  std::chrono::steady_clock::time_point down_since{};
  bool ever_tried = false;
  std::uint64_t slab_bytes = 0;
  std::uint32_t seq = 0;
  std::uint64_t next_token = 1;
  std::vector<held> slabs;
  bool watching = false;  // this process's watcher thread runs (watch below)
};

std::atomic<std::uint32_t> g_pressure{0};
// The figures as they are counted (relaxed atomics, one per DAEMON row of the counter table).
struct live_figures {
#define POOLSHIM_DAEMON_LIVE_FIGURE(field, from, ...) std::atomic<std::uint64_t> from{0};
  POOLSHIM_DAEMON_FIGURES(POOLSHIM_DAEMON_LIVE_FIGURE)
#undef POOLSHIM_DAEMON_LIVE_FIGURE
};
constinit live_figures g_figures;

void bump(std::atomic<std::uint64_t>& c) noexcept { c.fetch_add(1, std::memory_order_relaxed); }

connection& conn() noexcept;

void reset_in_child() noexcept {
  connection& c = conn();
  // The child holds copies of the connection and of the parent's slab descriptors: the leases are
  // the parent's (its mappings of them stay valid here), so the copies are closed and forgotten.
  if (c.sock >= 0) close(c.sock);
  c.sock = -1;
  for (const held& h : c.slabs) close(h.fd);
  new (&c.slabs) std::vector<held>();  // the parent's vector is not ours to free
  c.ever_tried = false;
  c.refused = false;
  c.watching = false;  // threads do not survive fork: the child starts its own when it connects
  c.mutex.unlock();
}

connection& conn() noexcept {
  static connection* c = [] {
    auto* p = new connection();  // leaky: slabs may be returned from static destructors
    pthread_atfork([] { conn().mutex.lock(); }, [] { conn().mutex.unlock(); }, reset_in_child);
    return p;
  }();
  return *c;
}

void mark_down(connection& c, const char* why) noexcept {
  if (c.sock >= 0) {
    close(c.sock);
    c.sock = -1;
    POOLSHIM_LOG_WARN("poolshimd connection lost ({}): local slabs until it is back", why);
  }
  c.down_since = std::chrono::steady_clock::now();
}

// One request and its reply; false on an I/O failure or a malformed reply (the connection is then
// down: a daemon that answers nonsense is not talked to again until a reconnect).
bool exchange(connection& c, proto::request q, int fd_in, proto::reply* r, int* fd_out) noexcept {
  q.seq = ++c.seq;
  switch (proto::exchange(c.sock, q, fd_in, r, fd_out)) {
    case proto::exchange_status::ok:
      g_pressure.store(r->pressure_mib, std::memory_order_relaxed);
      return true;
    case proto::exchange_status::io_error:
      mark_down(c, "no reply");
      return false;
    case proto::exchange_status::bad_reply:
      mark_down(c, "malformed reply");
      return false;
  }
  return false;
}

// The slabs this process still holds, made known to a daemon that does not know them (restarted).
void redeclare(connection& c) noexcept {
  for (held& h : c.slabs) {
    proto::request q = proto::make_request(proto::op::redeclare_slab, 0);
    q.arg[0] = h.bytes;
    proto::reply r{};
    if (!exchange(c, q, h.fd, &r, nullptr)) return;
    h.lease = r.status == static_cast<std::int32_t>(proto::status::ok) ? r.val[0] : 0;
    if (h.lease != 0) bump(g_figures.redeclared);
  }
}

void start_watching(connection& c) noexcept;

// The daemon closed this connection: it closes one that holds nothing after its idle timeout
// (POOLSHIMD_IDLE_TIMEOUT), and a restarted daemon has hung up on every old one. Looked at before
// each request (one poll, no byte sent; requests are never on the hit path).
bool hung_up(int sock) noexcept {
  pollfd p{sock, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)) != 0;
}

bool ensure_connected(connection& c) noexcept {
  if (c.sock >= 0 && !hung_up(c.sock)) return true;
  if (c.sock >= 0) {
    // Not a failure: connect again at once (no pause, no warning); with slabs held, they are
    // re-declared to a restarted daemon below.
    close(c.sock);
    c.sock = -1;
    if (c.slabs.empty()) {
      POOLSHIM_LOG_DEBUG("poolshimd closed the connection (idle, or restarted): connecting again");
    } else {  // a daemon never closes a connection that holds slabs: it stopped
      POOLSHIM_LOG_WARN("poolshimd hung up while {} slab(s) are held: they stay mapped; re-declared when it is back",
                        c.slabs.size());
    }
    c.down_since = {};
  }
  if (c.refused) return false;
  if (c.ever_tried && std::chrono::steady_clock::now() - c.down_since < k_retry_after) return false;
  const bool first = !c.ever_tried;
  c.ever_tried = true;
  c.down_since = std::chrono::steady_clock::now();
  std::string path, why;
  try {
    path = proto::socket_path(base::current_config().socket);  // POOLSHIM_SOCKET, from the table
  } catch (...) {
    return false;
  }
  const uid_t me = getuid();
  // A missing socket is the usual case (no daemon): quiet. An untrusted one is refused loudly.
  int s = -1;
  try {
    if (!proto::trusted_directory(path, me, &why)) {
      if (access(path.c_str(), F_OK) == 0 || errno != ENOENT) {
        c.refused = true;
        bump(g_figures.refusals);
        POOLSHIM_LOG_WARN("not trusting the poolshimd socket {}: {}; pinned memory comes from local slabs", path, why);
      }
      return false;
    }
    s = proto::connect_seqpacket(path, &why);
    if (s < 0) {
      if (first) POOLSHIM_LOG_DEBUG("no poolshimd at {} ({}): local slabs", path, why);
      return false;
    }
    if (!proto::trusted_peer(s, me, &why)) {
      close(s);
      c.refused = true;
      bump(g_figures.refusals);
      POOLSHIM_LOG_WARN("not trusting the poolshimd at {}: {}; pinned memory comes from local slabs", path, why);
      return false;
    }
  } catch (...) {
    if (s >= 0) close(s);
    return false;
  }
  timeval tv{k_reply_timeout_ms / 1000, (k_reply_timeout_ms % 1000) * 1000};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  c.sock = s;
  proto::reply r{};
  if (!exchange(c, proto::make_request(proto::op::hello, 0), -1, &r, nullptr)) return false;
  if (r.status != static_cast<std::int32_t>(proto::status::ok) || r.val[0] == 0) {
    mark_down(c, "hello refused");
    return false;
  }
  c.slab_bytes = r.val[0];
  bump(g_figures.connects);
  POOLSHIM_LOG_DEBUG("poolshimd {} at {}: slabs of {} MiB", r.val[1], path, c.slab_bytes >> 20);
  redeclare(c);
  start_watching(c);
  return c.sock >= 0;
}

// The watcher: a restarted daemon learns of the slabs this process holds within about a second,
// even when the program makes no further request (an idle process, a long kernel). A small thread
// started at the first connection; it never delays a request: it only takes the connection's
// mutex when that is free, and only while slabs are held it looks at the socket (poll, no byte
// sent) and, once the daemon has hung up, reconnects (at most once a second, as every request
// does) and re-declares. It stops when the daemon is refused; a fork child starts its own.
void* watch(void*) noexcept {
  for (;;) {
    timespec nap{0, k_watch_period_ns};
    while (nanosleep(&nap, &nap) != 0 && errno == EINTR) {
    }
    connection& c = conn();
    std::unique_lock lock(c.mutex, std::try_to_lock);
    if (!lock.owns_lock()) continue;  // a request is in flight: it sees a dead daemon itself
    if (c.refused) {
      c.watching = false;
      return nullptr;
    }
    if (c.slabs.empty()) continue;  // nothing to re-declare: the next lease reconnects
    (void)ensure_connected(c);      // a hung-up connection is made again and what is held re-declared
  }
}

void start_watching(connection& c) noexcept {
  if (c.watching) return;
  // Every signal blocked in the watcher (the program's handlers run on its own threads), a small
  // stack, detached: nothing waits for it.
  sigset_t all, old;
  sigfillset(&all);
  if (pthread_sigmask(SIG_SETMASK, &all, &old) != 0) return;
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) == 0) {
    (void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    (void)pthread_attr_setstacksize(&attr, std::size_t{256} << 10);
    pthread_t t;
    c.watching = pthread_create(&t, &attr, watch, nullptr) == 0;
    if (c.watching) (void)pthread_setname_np(t, "poolshim-watch");
    pthread_attr_destroy(&attr);
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (!c.watching) POOLSHIM_LOG_DEBUG("no watcher thread: slabs are re-declared at the next request");
}

}  // namespace

bool lease_slab(std::size_t bytes, slab_lease* out) noexcept {
  connection& c = conn();
  std::lock_guard lock(c.mutex);
  if (!ensure_connected(c) || bytes > c.slab_bytes) {
    bump(g_figures.fallbacks);
    return false;
  }
  try {
    c.slabs.reserve(c.slabs.size() + 1);
  } catch (...) {
    bump(g_figures.fallbacks);
    return false;
  }
  proto::request q = proto::make_request(proto::op::lease_slab, 0);
  q.arg[0] = c.slab_bytes;
  proto::reply r{};
  int fd = -1;
  if (!exchange(c, q, -1, &r, &fd) || r.status != static_cast<std::int32_t>(proto::status::ok) || fd < 0 ||
      r.val[1] != c.slab_bytes) {
    if (fd >= 0) close(fd);
    if (c.sock >= 0 && r.status != static_cast<std::int32_t>(proto::status::ok))
      POOLSHIM_LOG_DEBUG("poolshimd refused a slab: {}", proto::status_name(static_cast<proto::status>(r.status)));
    bump(g_figures.fallbacks);
    return false;
  }
  const held h{c.next_token++, fd, static_cast<std::size_t>(c.slab_bytes), r.val[0]};
  c.slabs.push_back(h);  // reserved: cannot throw
  out->fd = h.fd;
  out->bytes = h.bytes;
  out->token = h.token;
  bump(g_figures.leases_taken);
  return true;
}

void return_slab(const slab_lease& lease) noexcept {
  connection& c = conn();
  std::lock_guard lock(c.mutex);
  auto it = std::find_if(c.slabs.begin(), c.slabs.end(), [&](const held& h) { return h.token == lease.token; });
  if (it == c.slabs.end()) {
    close(lease.fd);  // a slab of before a fork, or unknown: only the descriptor is ours
    return;
  }
  // Closed (the caller has unmapped it) before the return is sent: the daemon counts a returned
  // slab against this process while the process holds it (server.h), and this one holds nothing.
  close(it->fd);
  const std::uint64_t id = it->lease;
  c.slabs.erase(it);
  if (id != 0 && (c.sock >= 0 || ensure_connected(c))) {
    proto::request q = proto::make_request(proto::op::return_slab, 0);
    q.arg[0] = id;
    proto::reply r{};
    (void)exchange(c, q, -1, &r, nullptr);  // a daemon that is gone reclaims it at our exit
  }
  bump(g_figures.leases_returned);
}

bool ipc_register(const unsigned char (&real_handle)[64], std::uint64_t offset, std::uint64_t bytes,
                  unsigned char (&token)[16]) noexcept {
  connection& c = conn();
  std::lock_guard lock(c.mutex);
  if (!ensure_connected(c)) return false;
  proto::request q = proto::make_request(proto::op::ipc_register, 0);
  q.arg[0] = offset;
  q.arg[1] = bytes;
  std::memcpy(q.payload, real_handle, sizeof real_handle);
  proto::reply r{};
  if (!exchange(c, q, -1, &r, nullptr) || r.status != static_cast<std::int32_t>(proto::status::ok)) return false;
  std::memcpy(token, r.payload, sizeof token);
  return true;
}

bool ipc_resolve(const unsigned char (&token)[16], unsigned char (&real_handle)[64], std::uint64_t* offset,
                 std::uint64_t* bytes) noexcept {
  connection& c = conn();
  std::lock_guard lock(c.mutex);
  if (!ensure_connected(c)) return false;
  proto::request q = proto::make_request(proto::op::ipc_resolve, 0);
  std::memcpy(q.payload, token, sizeof token);
  proto::reply r{};
  if (!exchange(c, q, -1, &r, nullptr) || r.status != static_cast<std::int32_t>(proto::status::ok)) return false;
  std::memcpy(real_handle, r.payload, sizeof real_handle);
  *offset = r.val[0];
  *bytes = r.val[1];
  return true;
}

void ipc_unregister(const unsigned char (&token)[16]) noexcept {
  connection& c = conn();
  std::lock_guard lock(c.mutex);
  if (c.sock < 0) return;  // a daemon that went away dropped the registration with us
  proto::request q = proto::make_request(proto::op::ipc_unregister, 0);
  std::memcpy(q.payload, token, sizeof token);
  proto::reply r{};
  (void)exchange(c, q, -1, &r, nullptr);
}

bool lease_device(const unsigned char (&uuid)[16], std::size_t bytes, device_lease* out,
                  std::uint64_t* reclaiming) noexcept {
  if (reclaiming != nullptr) *reclaiming = 0;
  connection& c = conn();
  std::lock_guard lock(c.mutex);
  if (!ensure_connected(c)) return false;
  proto::request q = proto::make_request(proto::op::lease_device, 0);
  q.arg[0] = bytes;
  std::memcpy(q.payload, uuid, sizeof uuid);
  proto::reply r{};
  int fd = -1;
  const bool answered = exchange(c, q, -1, &r, &fd);
  if (!answered || r.status != static_cast<std::int32_t>(proto::status::ok) || fd < 0 || r.val[1] < bytes) {
    if (fd >= 0) close(fd);
    if (answered && reclaiming != nullptr && r.status == static_cast<std::int32_t>(proto::status::no_memory))
      *reclaiming = r.val[0];
    return false;
  }
  out->fd = fd;
  out->bytes = static_cast<std::size_t>(r.val[1]);
  out->id = r.val[0];
  bump(g_figures.device_leases);
  return true;
}

void return_device(std::uint64_t id) noexcept {
  connection& c = conn();
  std::lock_guard lock(c.mutex);
  if (c.sock < 0) return;  // a daemon that went away released its handle; our mapping is gone too
  proto::request q = proto::make_request(proto::op::return_slab, 0);
  q.arg[0] = id;
  proto::reply r{};
  (void)exchange(c, q, -1, &r, nullptr);
}

std::uint32_t pressure_mib() noexcept { return g_pressure.load(std::memory_order_relaxed); }

bool daemon_wants_memory() noexcept {
  static std::atomic<std::int64_t> last_poll_ns{0};
  const std::int64_t now =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
  std::int64_t last = last_poll_ns.load(std::memory_order_relaxed);
  if (now - last < 1000000000 || !last_poll_ns.compare_exchange_strong(last, now, std::memory_order_relaxed))
    return pressure_mib() != 0;
  connection& c = conn();
  std::unique_lock lock(c.mutex, std::try_to_lock);
  if (!lock.owns_lock() || c.sock < 0) return pressure_mib() != 0;  // only a live connection is asked
  proto::reply r{};
  if (!exchange(c, proto::make_request(proto::op::return_idle, 0), -1, &r, nullptr)) return false;
  return r.status == static_cast<std::int32_t>(proto::status::ok) && r.val[0] != 0;
}

bool report_idle(std::uint64_t idle_device, std::uint64_t idle_pinned, idle_request* asked) noexcept {
  *asked = idle_request{};
  connection& c = conn();
  std::unique_lock lock(c.mutex, std::try_to_lock);
  if (!lock.owns_lock() || c.sock < 0 || hung_up(c.sock)) return false;
  proto::request q = proto::make_request(proto::op::return_idle, 0);
  q.arg[0] = std::min<std::uint64_t>(idle_device, proto::k_max_lease_bytes * 64);
  q.arg[1] = std::min<std::uint64_t>(idle_pinned, proto::k_max_lease_bytes * 64);
  q.arg[2] = proto::k_idle_report;
  proto::reply r{};
  // A daemon older than the report refuses it (bad_argument): no request comes back, as before.
  if (!exchange(c, q, -1, &r, nullptr) || r.status != static_cast<std::int32_t>(proto::status::ok)) return false;
  asked->device = r.val[1];
  asked->pinned = r.val[2] != 0 ? r.val[2] : r.val[0];
  return true;
}

figures get_figures() noexcept {
  figures f;
#define POOLSHIM_DAEMON_FIGURE_COPY(field, from, ...) f.from = g_figures.from.load(std::memory_order_relaxed);
  POOLSHIM_DAEMON_FIGURES(POOLSHIM_DAEMON_FIGURE_COPY)
#undef POOLSHIM_DAEMON_FIGURE_COPY
  return f;
}

}  // namespace poolshim::daemon_client

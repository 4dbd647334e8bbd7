// The shim's daemon connection (daemon_client.h).
#include "source/daemon_client.h"

#include <pthread.h>
#include <sys/socket.h>
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

bool ensure_connected(connection& c) noexcept {
  if (c.sock >= 0) return true;
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
  return c.sock >= 0;
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
  if (it->lease != 0 && (c.sock >= 0 || ensure_connected(c))) {
    proto::request q = proto::make_request(proto::op::return_slab, 0);
    q.arg[0] = it->lease;
    proto::reply r{};
    (void)exchange(c, q, -1, &r, nullptr);  // a daemon that is gone reclaims it at our exit
  }
  close(it->fd);
  c.slabs.erase(it);
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

bool lease_device(const unsigned char (&uuid)[16], std::size_t bytes, device_lease* out) noexcept {
  connection& c = conn();
  std::lock_guard lock(c.mutex);
  if (!ensure_connected(c)) return false;
  proto::request q = proto::make_request(proto::op::lease_device, 0);
  q.arg[0] = bytes;
  std::memcpy(q.payload, uuid, sizeof uuid);
  proto::reply r{};
  int fd = -1;
  if (!exchange(c, q, -1, &r, &fd) || r.status != static_cast<std::int32_t>(proto::status::ok) || fd < 0 ||
      r.val[1] < bytes) {
    if (fd >= 0) close(fd);
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

figures get_figures() noexcept {
  figures f;
#define POOLSHIM_DAEMON_FIGURE_COPY(field, from, ...) f.from = g_figures.from.load(std::memory_order_relaxed);
  POOLSHIM_DAEMON_FIGURES(POOLSHIM_DAEMON_FIGURE_COPY)
#undef POOLSHIM_DAEMON_FIGURE_COPY
  return f;
}

}  // namespace poolshim::daemon_client

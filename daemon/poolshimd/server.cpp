// poolshimd's event loop (server.h).
#include "poolshimd/server.h"

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "poolshim/transport.h"
#include "poolshimd/log.h"

namespace poolshim::daemon {
namespace {

// epoll tags: kind in the top byte, client id below.
enum kind : std::uint64_t { k_listen = 1, k_sock = 2, k_pidfd = 3, k_wake = 4, k_metrics = 5 };
constexpr std::uint64_t tag(kind k, std::uint64_t id = 0) { return (std::uint64_t{k} << 56) | id; }
constexpr kind kind_of(std::uint64_t t) { return static_cast<kind>(t >> 56); }
constexpr std::uint64_t id_of(std::uint64_t t) { return t & ((std::uint64_t{1} << 56) - 1); }

constexpr std::chrono::seconds k_pressure_hold{5};

int pidfd_open_compat(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

void add(int ep, int fd, std::uint64_t t) {
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.u64 = t;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != 0)
    throw std::runtime_error(std::string("epoll_ctl: ") + std::strerror(errno));
}

}  // namespace

server::server(server_options o) : options_(std::move(o)), region_(options_.region), devices_(options_.device_limit) {
  std::string why;
  if (!proto::prepare_directory(options_.socket_path, &why)) throw std::runtime_error(why);
  listen_ = proto::listen_seqpacket(options_.socket_path, 64, &why);
  if (listen_ < 0) throw std::runtime_error(why);
  epoll_ = epoll_create1(EPOLL_CLOEXEC);
  wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_ < 0 || wake_ < 0) throw std::runtime_error(std::string("epoll/eventfd: ") + std::strerror(errno));
  add(epoll_, listen_, tag(k_listen));
  add(epoll_, wake_, tag(k_wake));
  if (options_.metrics_port > 0) {
    metrics_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(options_.metrics_port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int one = 1;
    setsockopt(metrics_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (metrics_ < 0 || bind(metrics_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(metrics_, 16) != 0)
      throw std::runtime_error("metrics port " + std::to_string(options_.metrics_port) + ": " + std::strerror(errno));
    add(epoll_, metrics_, tag(k_metrics));
  }
  const region_figures f = region_.figures();
  log::info("poolshimd {} listening on {}: region {} MiB in {} slabs of {} MiB", getpid(), options_.socket_path,
            f.region_bytes >> 20, f.slabs, options_.region.slab_bytes >> 20);
}

server::~server() {
  for (auto& [id, c] : clients_) {
    if (c->sock >= 0) close(c->sock);
    if (c->pidfd >= 0) close(c->pidfd);
  }
  if (listen_ >= 0) {
    close(listen_);
    unlink(options_.socket_path.c_str());
  }
  for (int fd : {epoll_, wake_, metrics_})
    if (fd >= 0) close(fd);
}

void server::stop() noexcept {
  const std::uint64_t one = 1;
  ssize_t n = write(wake_, &one, sizeof one);
  (void)n;
}

bool server::idle() const { return clients_.empty() && region_.figures().lent_bytes == 0; }

int server::run() {
  auto idle_since = std::chrono::steady_clock::now();
  epoll_event events[32];
  for (;;) {
    const int n = epoll_wait(epoll_, events, 32, 1000);
    if (n < 0 && errno != EINTR) throw std::runtime_error(std::string("epoll_wait: ") + std::strerror(errno));
    for (int i = 0; i < n; ++i) {
      const std::uint64_t t = events[i].data.u64;
      switch (kind_of(t)) {
        case k_listen:
          accept_clients();
          break;
        case k_wake:
          log::info("poolshimd: stopping");
          return 0;
        case k_metrics:
          serve_metrics();
          break;
        case k_pidfd:
          on_client_exited(id_of(t));
          break;
        case k_sock: {
          auto it = clients_.find(id_of(t));
          if (it != clients_.end()) on_client_readable(*it->second);
          break;
        }
      }
    }
    if (!idle()) {
      idle_since = std::chrono::steady_clock::now();
    } else if (options_.idle_exit.count() > 0 && std::chrono::steady_clock::now() - idle_since >= options_.idle_exit) {
      log::info("poolshimd: idle for {} s, exiting", options_.idle_exit.count());
      return 0;
    }
  }
}

void server::accept_clients() {
  for (;;) {
    const int s = accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (s < 0) return;  // EAGAIN: all taken; anything else: the next event retries
    proto::peer p{};
    const int pidfd = proto::peer_of(s, &p) ? pidfd_open_compat(p.pid) : -1;
    if (pidfd < 0) {
      log::warn("poolshimd: refused a client whose process cannot be watched ({})", std::strerror(errno));
      close(s);
      continue;
    }
    auto c = std::make_unique<client>();
    c->id = next_client_++;
    c->sock = s;
    c->pidfd = pidfd;
    c->pid = p.pid;
    c->uid = p.uid;
    add(epoll_, s, tag(k_sock, c->id));
    add(epoll_, pidfd, tag(k_pidfd, c->id));
    log::debug("poolshimd: client {} pid {} uid {}", c->id, c->pid, c->uid);
    clients_.emplace(c->id, std::move(c));
  }
}

void server::drop_socket(client& c) {
  if (c.sock < 0) return;
  epoll_ctl(epoll_, EPOLL_CTL_DEL, c.sock, nullptr);
  close(c.sock);
  c.sock = -1;
  if (c.leases.empty()) on_client_exited(c.id);  // nothing to keep for the process
}

void server::on_client_readable(client& c) {
  for (;;) {
    alignas(8) unsigned char buf[proto::k_record_size];
    std::size_t len = 0;
    int fd_in = -1;
    const proto::recv_status st = proto::recv_record(c.sock, buf, sizeof buf, &len, &fd_in);
    if (st == proto::recv_status::error) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      drop_socket(c);
      return;
    }
    if (st == proto::recv_status::closed) {
      drop_socket(c);
      return;
    }
    proto::request q{};
    proto::status v = proto::validate_request(buf, len, region_.slab_bytes(), &q);
    if (v == proto::status::ok && fd_in == -2) v = proto::status::missing_fd;
    if (v == proto::status::ok && proto::op_takes_fd(static_cast<proto::op>(q.op)) != (fd_in >= 0))
      v = proto::status::missing_fd;
    int fd_out = -1;
    proto::reply r;
    if (v != proto::status::ok) {
      if (fd_in >= 0) close(fd_in);
      ++refused_records_;
      if (c.bad_records++ < 3)  // a hostile client does not fill the log
        log::warn("poolshimd: client {} (pid {} uid {}): refused a record of {} bytes: {}", c.id, c.pid, c.uid, len,
                  proto::status_name(v));
      // Echo what can be echoed, so that the client can match the error to its request.
      proto::request echo = proto::make_request(proto::op::hello, 0);
      if (len >= 16) {
        std::memcpy(&echo.op, buf + 6, sizeof echo.op);
        std::memcpy(&echo.seq, buf + 12, sizeof echo.seq);
      }
      r = proto::make_reply(echo, v);
    } else {
      r = handle(c, q, fd_in, &fd_out);
    }
    r.pressure_mib = pressure_mib();
    const bool sent = proto::send_record(c.sock, &r, sizeof r, fd_out);
    if (fd_out >= 0) close(fd_out);
    if (!sent) {
      drop_socket(c);
      return;
    }
    if (q.op == static_cast<std::uint16_t>(proto::op::goodbye) && v == proto::status::ok) {
      drop_socket(c);
      return;
    }
  }
}

proto::reply server::handle(client& c, const proto::request& q, int fd_in, int* fd_out) {
  using proto::status;
  const std::uint64_t slab = region_.slab_bytes();
  switch (static_cast<proto::op>(q.op)) {
    case proto::op::hello: {
      proto::reply r = proto::make_reply(q, status::ok);
      r.val[0] = slab;
      r.val[1] = static_cast<std::uint64_t>(getpid());
      r.val[2] = region_.figures().region_bytes;
      return r;
    }
    case proto::op::lease_slab: {
      if (options_.client_quota != 0 && c.lent_bytes + slab > options_.client_quota)
        return proto::make_reply(q, status::quota);
      if (options_.uid_quota != 0 && uid_lent(c.uid) + slab > options_.uid_quota)
        return proto::make_reply(q, status::quota);
      int fd = -1;
      const int i = region_.lend(c.id, &fd);
      if (i < 0) {
        pressure_until_ = std::chrono::steady_clock::now() + k_pressure_hold;
        return proto::make_reply(q, status::no_memory);
      }
      const lease l{next_lease_++, i};
      c.leases.push_back(l);
      c.lent_bytes += slab;
      *fd_out = fd;
      proto::reply r = proto::make_reply(q, status::ok);
      r.val[0] = l.id;
      r.val[1] = slab;
      return r;
    }
    case proto::op::return_slab: {
      auto it = std::find_if(c.leases.begin(), c.leases.end(), [&](const lease& l) { return l.id == q.arg[0]; });
      if (it == c.leases.end()) {
        for (const auto& [id, other] : clients_)
          for (const lease& l : other->leases)
            if (l.id == q.arg[0]) return proto::make_reply(q, status::not_permitted);
        return proto::make_reply(q, status::not_found);
      }
      const lease l = *it;
      c.leases.erase(it);
      end_lease(c, l);
      return proto::make_reply(q, status::ok);
    }
    case proto::op::lease_device: {
      unsigned char uuid[proto::k_uuid_size];
      std::memcpy(uuid, q.payload, sizeof uuid);
      lease l{next_lease_, -1};
      int fd = -1;
      std::string why;
      if (!devices_.lend(uuid, q.arg[0], &l.handle, &l.device, &fd, &why)) {
        if (c.bad_records++ < 3) log::info("poolshimd: client {} (pid {}): no device memory: {}", c.id, c.pid, why);
        return proto::make_reply(q, devices_.enabled() ? status::no_memory : status::not_permitted);
      }
      ++next_lease_;
      l.bytes = q.arg[0];
      c.leases.push_back(l);
      c.device_bytes += l.bytes;
      *fd_out = fd;
      proto::reply r = proto::make_reply(q, status::ok);
      r.val[0] = l.id;
      r.val[1] = l.bytes;
      return r;
    }
    case proto::op::redeclare_slab: {
      // A slab this daemon lent already: the same process reconnecting takes its lease over.
      if (const int known = region_.find_lent(fd_in); known >= 0) {
        close(fd_in);
        for (auto& [id, other] : clients_) {
          auto it =
              std::find_if(other->leases.begin(), other->leases.end(), [&](const lease& l) { return l.slab == known; });
          if (it == other->leases.end()) continue;
          if (other->pid != c.pid) return proto::make_reply(q, status::not_permitted);
          const lease l = *it;
          if (other.get() != &c) {
            other->leases.erase(it);
            other->lent_bytes -= slab;
            c.leases.push_back(l);
            c.lent_bytes += slab;
            region_.set_owner(known, c.id);
          }
          proto::reply r = proto::make_reply(q, status::ok);
          r.val[0] = l.id;
          return r;
        }
        return proto::make_reply(q, status::not_permitted);
      }
      const int i = region_.adopt(c.id, fd_in, q.arg[0]);
      close(fd_in);
      if (i < 0) return proto::make_reply(q, q.arg[0] != slab ? status::bad_argument : status::no_memory);
      const lease l{next_lease_++, i};
      c.leases.push_back(l);
      c.lent_bytes += slab;
      proto::reply r = proto::make_reply(q, status::ok);
      r.val[0] = l.id;
      return r;
    }
    case proto::op::stats: {
      proto::reply r = proto::make_reply(q, status::ok);
      proto::encode_status(status_figures(), &r);
      return r;
    }
    case proto::op::client_stats: {
      if (q.arg[0] >= clients_.size()) return proto::make_reply(q, status::not_found);
      auto it = clients_.begin();
      std::advance(it, static_cast<std::ptrdiff_t>(q.arg[0]));
      proto::reply r = proto::make_reply(q, status::ok);
      proto::encode_client_status(client_figures(*it->second), &r);
      return r;
    }
    case proto::op::return_idle: {
      proto::reply r = proto::make_reply(q, status::ok);
      r.val[0] = std::uint64_t{pressure_mib()} << 20;
      return r;
    }
    case proto::op::goodbye:
      release_all(c);
      return proto::make_reply(q, status::ok);
    case proto::op::ipc_register: {
      token t{};
      if (getrandom(t.data(), t.size(), 0) != static_cast<ssize_t>(t.size()))
        return proto::make_reply(q, status::internal);
      ipc_export e{c.id, c.uid, {}, q.arg[0], q.arg[1]};
      std::memcpy(e.handle.data(), q.payload, e.handle.size());
      exports_[t] = e;
      proto::reply r = proto::make_reply(q, status::ok);
      std::memcpy(r.payload, t.data(), t.size());
      return r;
    }
    case proto::op::ipc_resolve:
    case proto::op::ipc_unregister: {
      token t{};
      std::memcpy(t.data(), q.payload, t.size());
      auto it = exports_.find(t);
      if (it == exports_.end()) return proto::make_reply(q, status::not_found);
      const bool resolve = q.op == static_cast<std::uint16_t>(proto::op::ipc_resolve);
      // Another uid learns nothing, not even that the token exists.
      if (it->second.uid != c.uid) return proto::make_reply(q, resolve ? status::not_found : status::not_permitted);
      if (!resolve) {
        if (it->second.client != c.id) return proto::make_reply(q, status::not_permitted);
        exports_.erase(it);
        return proto::make_reply(q, status::ok);
      }
      proto::reply r = proto::make_reply(q, status::ok);
      std::memcpy(r.payload, it->second.handle.data(), it->second.handle.size());
      r.val[0] = it->second.offset;
      r.val[1] = it->second.bytes;
      return r;
    }
  }
  return proto::make_reply(q, status::unknown_op);
}

void server::end_lease(client& c, const lease& l) {
  if (l.slab >= 0) {
    region_.give_back(l.slab);
    c.lent_bytes -= region_.slab_bytes();
  } else {
    devices_.give_back(l.handle, l.bytes, l.device);
    c.device_bytes -= l.bytes;
  }
}

void server::release_all(client& c) {
  for (const lease& l : c.leases) end_lease(c, l);
  c.leases.clear();
}

void server::on_client_exited(std::uint64_t id) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  client& c = *it->second;
  if (!c.leases.empty()) {
    log::info("poolshimd: client {} (pid {}) is gone: {} lease(s), {} MiB pinned and {} MiB device back", c.id, c.pid,
              c.leases.size(), c.lent_bytes >> 20, c.device_bytes >> 20);
    ++reclaimed_clients_;
  }
  release_all(c);
  std::erase_if(exports_, [&](const auto& kv) { return kv.second.client == c.id; });  // its blocks are gone
  if (c.sock >= 0) {
    epoll_ctl(epoll_, EPOLL_CTL_DEL, c.sock, nullptr);
    close(c.sock);
  }
  if (c.pidfd >= 0) {
    epoll_ctl(epoll_, EPOLL_CTL_DEL, c.pidfd, nullptr);
    close(c.pidfd);
  }
  clients_.erase(it);
}

std::uint64_t server::uid_lent(uid_t uid) const {
  std::uint64_t sum = 0;
  for (const auto& [id, c] : clients_)
    if (c->uid == uid) sum += c->lent_bytes;
  return sum;
}

std::uint32_t server::pressure_mib() const {
  if (std::chrono::steady_clock::now() >= pressure_until_) return 0;
  return static_cast<std::uint32_t>(region_.slab_bytes() >> 20);
}

proto::daemon_status server::status_figures() const {
  const region_figures f = region_.figures();
  proto::daemon_status s;
  s.region_bytes = f.region_bytes;
  s.lent_bytes = f.lent_bytes;
  s.free_bytes = f.free_bytes;
  s.clients = clients_.size();
  for (const auto& [id, c] : clients_) s.leases += c->leases.size();
  s.reclaimed_slabs = f.reclaimed;
  s.device_lent_bytes = devices_.lent_bytes();
  return s;
}

proto::client_status server::client_figures(const client& c) {
  proto::client_status s;
  s.pid = static_cast<std::uint64_t>(c.pid);
  s.uid = c.uid;
  s.lent_bytes = c.lent_bytes;
  s.leases = c.leases.size();
  s.device_bytes = c.device_bytes;
  return s;
}

// The figures of the stats reply (their metric names from the protocol's list), then the daemon's
// own that are not on the wire.
std::string server::metrics_text() const {
  std::string t;
  auto line = [&](const char* name, const char* help, std::uint64_t v) {
    t += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " gauge\n" + name + " " + std::to_string(v) +
         "\n";
  };
  const proto::daemon_status s = status_figures();
  for (const proto::status_figure& f : proto::k_status_figures)
    if (f.metric != nullptr) line(f.metric, f.help, s.*f.member);
  line("poolshimd_ready_slabs", "Free slabs already filled.", region_.figures().ready_slabs);
  line("poolshimd_refused_records_total", "Records refused as malformed.", refused_records_);
  t += "# HELP poolshimd_client_lent_bytes Bytes lent, per client process.\n# TYPE poolshimd_client_lent_bytes gauge\n";
  for (const auto& [id, c] : clients_)
    t += "poolshimd_client_lent_bytes{pid=\"" + std::to_string(c->pid) + "\",uid=\"" + std::to_string(c->uid) + "\"} " +
         std::to_string(c->lent_bytes) + "\n";
  return t;
}

void server::serve_metrics() {
  for (;;) {
    const int s = accept4(metrics_, nullptr, nullptr, SOCK_CLOEXEC);
    if (s < 0) return;
    timeval tv{0, 200000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char ignored[1024];
    (void)recv(s, ignored, sizeof ignored, 0);  // the request line: every path gets the figures
    const std::string body = metrics_text();
    const std::string head =
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\n\r\n";
    const std::string all = head + body;
    (void)send(s, all.data(), all.size(), MSG_NOSIGNAL);
    close(s);
  }
}

}  // namespace poolshim::daemon

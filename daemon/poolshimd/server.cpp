// poolshimd's event loop (server.h).
#include "poolshimd/server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <poolshim/version.h>  // generated (include/CMakeLists.txt)
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "poolshim/channel_ring.h"
#include "poolshim/transport.h"
#include "poolshimd/log.h"
#include "poolshimd/peer.h"

namespace poolshim::daemon {
namespace {

// epoll tags: kind in the top byte, client (or metrics connection) id below.
enum kind : std::uint64_t {
  k_listen = 1,
  k_sock = 2,
  k_pidfd = 3,
  k_wake = 4,
  k_metrics = 5,
  k_metrics_conn = 6,
  k_filled = 7,
  k_redis = 8,
  k_redis_pid = 9
};
constexpr std::uint64_t tag(kind k, std::uint64_t id = 0) { return (std::uint64_t{k} << 56) | id; }
constexpr kind kind_of(std::uint64_t t) { return static_cast<kind>(t >> 56); }
constexpr std::uint64_t id_of(std::uint64_t t) { return t & ((std::uint64_t{1} << 56) - 1); }

constexpr std::chrono::seconds k_pressure_hold{5};

std::string seconds_text(std::uint64_t ns) {
  char b[32];
  std::snprintf(b, sizeof b, "%llu.%03llu", static_cast<unsigned long long>(ns / 1000000000u),
                static_cast<unsigned long long>(ns / 1000000u % 1000u));
  return b;
}
std::uint64_t now_ns() {
  timespec t{};
  clock_gettime(CLOCK_REALTIME, &t);
  return static_cast<std::uint64_t>(t.tv_sec) * 1000000000u + static_cast<std::uint64_t>(t.tv_nsec);
}

void add(int ep, int fd, std::uint64_t t, std::uint32_t events = EPOLLIN) {
  epoll_event e{};
  e.events = events;
  e.data.u64 = t;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != 0)
    throw std::runtime_error(std::string("epoll_ctl: ") + std::strerror(errno));
}

void modify(int ep, int fd, std::uint64_t t, std::uint32_t events) {
  epoll_event e{};
  e.events = events;
  e.data.u64 = t;
  (void)epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
}

// A received descriptor's file type, without asking its file system: fstat on a FUSE file may wait
// for the FUSE server (the attacker); statx with AT_STATX_DONT_SYNC answers from the inode. 0 when
// it is not a descriptor.
mode_t type_of(int fd, unsigned* dev_major = nullptr) {
  struct statx sx {};
  if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE, &sx) != 0) return 0;
  if (dev_major != nullptr) *dev_major = sx.stx_rdev_major;
  return sx.stx_mode & S_IFMT;
}

// A memfd (any tmpfs or hugetlbfs file): F_GET_SEALS answers for those alone, without the file
// system's help.
bool is_memfd(int fd) { return type_of(fd) == S_IFREG && fcntl(fd, F_GET_SEALS) >= 0; }

// A received descriptor whose close cannot block: a memfd, a pipe or FIFO, /dev/null and its kin
// (major 1). A socket's last close may run its linger or release what is queued in it; a file's
// close may flush to a FUSE server or NFS; a tty's may drain.
bool closes_quickly(int fd) {
  unsigned major = 0;
  const mode_t t = type_of(fd, &major);
  if (t == 0) return true;  // not a descriptor: close() returns at once
  if (t == S_IFIFO) return true;
  if (t == S_IFCHR) return major == 1;
  return is_memfd(fd);
}

// Our own TCP socket closed with a reset (linger 0): nothing is kept or sent after it.
void close_with_reset(int fd) {
  const linger reset{1, 0};
  (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  close(fd);
}

// The process of this pidfd has exited.
bool process_exited(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  return poll(&p, 1, 0) > 0;
}

// Of `wanted` (files by device and inode), those that a process of `uid` holds: an open
// descriptor (/proc/PID/fd) or a mapping (/proc/PID/maps). Processes of other uids are not looked
// at; a process that goes away meanwhile is skipped; this process's descriptors in `own_closing`
// (returned slabs a filler has yet to close) are not holders.
std::set<std::pair<dev_t, ino_t>> files_held_by(uid_t uid, const std::set<std::pair<dev_t, ino_t>>& wanted,
                                                const std::vector<int>& own_closing) {
  const std::string self = std::to_string(getpid());
  std::set<std::pair<dev_t, ino_t>> found;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return wanted;  // cannot look: everything still counts
  while (dirent* e = readdir(proc)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    struct stat pst {};
    if (fstatat(dirfd(proc), e->d_name, &pst, 0) != 0 || pst.st_uid != uid) continue;
    const std::string base = std::string("/proc/") + e->d_name;
    if (DIR* fds = opendir((base + "/fd").c_str())) {
      const bool mine = self == e->d_name;
      while (dirent* f = readdir(fds)) {
        if (f->d_name[0] == '.') continue;
        if (mine && std::find(own_closing.begin(), own_closing.end(), std::atoi(f->d_name)) != own_closing.end())
          continue;
        struct stat st {};
        if (fstatat(dirfd(fds), f->d_name, &st, 0) == 0 && wanted.count({st.st_dev, st.st_ino}) != 0)
          found.insert({st.st_dev, st.st_ino});
      }
      closedir(fds);
    }
    // maps: "start-end perms offset major:minor inode path"; only the slabs' and named buffers'
    // memfds are wanted.
    if (FILE* maps = std::fopen((base + "/maps").c_str(), "re")) {
      char line[512];
      while (std::fgets(line, sizeof line, maps) != nullptr) {
        if (std::strstr(line, "/memfd:poolshim-slab.") == nullptr &&
            std::strstr(line, "/memfd:poolshim-buffer:") == nullptr)
          continue;
        unsigned major = 0, minor = 0;
        unsigned long long ino = 0;
        if (std::sscanf(line, "%*s %*s %*s %x:%x %llu", &major, &minor, &ino) != 3) continue;
        for (const auto& w : wanted)
          if (w.second == static_cast<ino_t>(ino) && ::major(w.first) == major && ::minor(w.first) == minor)
            found.insert(w);
      }
      std::fclose(maps);
    }
  }
  closedir(proc);
  return found;
}

}  // namespace

// What the fill thread hands back to the loop (shared with the thread, like the thread itself):
// the jobs done, (id, filled), and the eventfd that wakes the loop for them (its own duplicate).
struct fill_results {
  std::mutex mutex;
  std::vector<std::pair<std::uint64_t, bool>> done;
  int event = -1;
};

namespace {
// The region's options with the slab identity key, kept beside the socket (its directory prepared
// first: the key file is written there).
region_options keyed(const server_options& o) {
  region_options r = o.region;
  std::string why;
  if (!proto::prepare_directory(o.socket_path, &why)) return r;  // the constructor throws with why
  const std::string dir = o.socket_path.substr(0, o.socket_path.rfind('/') + 1);
  r.key = load_identity_key(dir + "poolshimd.key", &why);
  if (!why.empty())
    log::warn("poolshimd: slab identity key: {}; slabs of an earlier daemon cannot be re-declared to this one", why);
  return r;
}
}  // namespace

server::server(server_options o)
    : options_(std::move(o)),
      region_(keyed(options_)),
      devices_(options_.device_limit),
      // Closes what might block (server.h's top comment); whatever is left at stop is closed too.
      closer_(job_thread<int>::start([](const int& fd) { close(fd); }, [](const int& fd) { close(fd); })) {
  std::string why;
  if (!proto::prepare_directory(options_.socket_path, &why)) throw std::runtime_error(why);
  listen_ = proto::listen_seqpacket(options_.socket_path, 64, &why);
  if (listen_ < 0) throw std::runtime_error(why);
  epoll_ = epoll_create1(EPOLL_CLOEXEC);
  wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_ < 0 || wake_ < 0) throw std::runtime_error(std::string("epoll/eventfd: ") + std::strerror(errno));
  add(epoll_, listen_, tag(k_listen));
  add(epoll_, wake_, tag(k_wake));
  filled_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (filled_ < 0) throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
  add(epoll_, filled_, tag(k_filled));
  // Fills named buffers (fallocate) off the loop: a job in, its result out, the loop woken.
  auto results = std::make_shared<fill_results>();
  results->event = fcntl(filled_, F_DUPFD_CLOEXEC, 0);
  fill_results_ = results;
  filler_ = job_thread<fill_job>::start(
      [results](const fill_job& j) {
        const bool ok = fallocate(j.fd, 0, 0, static_cast<off_t>(j.bytes)) == 0;
        close(j.fd);
        std::lock_guard lock(results->mutex);
        results->done.emplace_back(j.id, ok);
        const std::uint64_t one = 1;
        (void)!write(results->event, &one, sizeof one);
      },
      [](const fill_job& j) { close(j.fd); },
      [results] { close(results->event); });  // its own duplicate: the server closes its copy
  if (options_.metrics_port > 0) {
    metrics_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(options_.metrics_port));
    if (inet_pton(AF_INET, options_.metrics_address.c_str(), &a.sin_addr) != 1)
      throw std::runtime_error("metrics address '" + options_.metrics_address + "' is not an IPv4 address");
    const int one = 1;
    setsockopt(metrics_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (metrics_ < 0 || bind(metrics_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(metrics_, 16) != 0)
      throw std::runtime_error("metrics port " + options_.metrics_address + ":" +
                               std::to_string(options_.metrics_port) + ": " + std::strerror(errno));
    add(epoll_, metrics_, tag(k_metrics));
  }
  if (!options_.redis_url.empty()) {
    redis_url u;
    if (!parse_redis_url(options_.redis_url, &u, &why)) throw std::runtime_error(why);
    const std::string& p = options_.redis_prefix;
    if (p.empty() || p.size() > 64 || !std::all_of(p.begin(), p.end(), [](char c) { return c > 0x20 && c < 0x7f; }))
      throw std::runtime_error("the Redis key prefix must be 1 to 64 printable bytes, not '" + p + "'");
    redis_wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (redis_wake_ < 0) throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
    add(epoll_, redis_wake_, tag(k_redis));
    redis_ = std::make_unique<redis_bridge>(u, p, redis_wake_);
    log::info("poolshimd: Redis control plane at {}: hashes {}<name>, commands from {}cmd", options_.redis_url, p, p);
  }
  const region_figures f = region_.figures();
  log::info("poolshimd {} listening on {}: region {} MiB in {} slabs of {} MiB", getpid(), options_.socket_path,
            f.region_bytes >> 20, f.slabs, options_.region.slab_bytes >> 20);
}

server::~server() {
  redis_.reset();  // its threads stop first (they write redis_wake_)
  for (auto& [id, ch] : channels_) {
    munmap(ch.map, ch.bytes);
    close(ch.fd);
  }
  if (redis_wake_ >= 0) close(redis_wake_);
  for (auto& [pid, fd] : redis_pidfds_) close(fd);
  for (auto& [id, c] : clients_) {
    if (c->sock >= 0) retire_socket(c->sock);
    if (c->pidfd >= 0) close(c->pidfd);
  }
  for (auto& [id, m] : metrics_conns_) close(m.fd);
  for (auto& [id, b] : buffers_)
    if (b.fd >= 0) closer_->put(b.fd);
  closer_->stop();
  if (filler_) filler_->stop();
  for (auto& [job, f] : fills_) close(f.fd);
  if (filled_ >= 0) close(filled_);
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

// Nothing lent, no client, no named buffer (a name outlives its clients: the daemon stays for it).
bool server::idle() const {
  return clients_.empty() && buffers_.empty() && channels_.empty() && region_.figures().lent_bytes == 0;
}

int server::run() {
  auto idle_since = std::chrono::steady_clock::now();
  epoll_event events[32];
  for (;;) {
    // A short wait: idle connections, metrics deadlines and a paused listener are looked at after it.
    const int n = epoll_wait(epoll_, events, 32, 250);
    if (n < 0 && errno != EINTR) throw std::runtime_error(std::string("epoll_wait: ") + std::strerror(errno));
    for (int i = 0; i < n; ++i) {
      const std::uint64_t t = events[i].data.u64;
      switch (kind_of(t)) {
        case k_listen:
          accept_clients();
          break;
        case k_wake:
          flush_refusals(clock::now(), true);
          log::info("poolshimd: stopping");
          return 0;
        case k_metrics:
          serve_metrics();
          break;
        case k_metrics_conn:
          on_metrics_event(id_of(t), events[i].events);
          break;
        case k_filled:
          on_filled();
          break;
        case k_redis:
          on_redis();
          break;
        case k_redis_pid:
          on_redis_pid_exited(static_cast<long>(id_of(t)));
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
    sweep(now());
    if (redis_ && mirror_dirty_) sync_mirror();
    if (!idle()) {
      idle_since = std::chrono::steady_clock::now();
    } else if (options_.idle_exit.count() > 0 && std::chrono::steady_clock::now() - idle_since >= options_.idle_exit) {
      log::info("poolshimd: idle for {} s, exiting", options_.idle_exit.count());
      return 0;
    }
  }
}

void server::accept_clients() {
  // A bounded batch: a flood of connects cannot keep the loop here.
  for (int batch = 0; batch < 64; ++batch) {
    const int s = accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    const unsigned long long accepted_at = boot_ticks();
    if (s < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: the pending connection stays in the backlog (it would wake the loop
        // at once, again and again): stop listening for a moment.
        refused("out of descriptors");
        modify(epoll_, listen_, tag(k_listen), 0);
        listen_paused_ = true;
        listen_paused_until_ = clock::now() + std::chrono::milliseconds(100);
      }
      return;  // EAGAIN: all taken; anything else: the next event retries
    }
    proto::peer p{};
    if (!proto::peer_of(s, &p)) {
      refused("no peer credentials");
      retire_socket(s);
      continue;
    }
    if (options_.uid_connections != 0 && uid_connections(p.uid) >= options_.uid_connections) {
      refused("the uid's connection limit");
      retire_socket(s);
      continue;
    }
    const int pidfd = peer_pidfd(s, p.pid, accepted_at);
    if (pidfd < 0) {
      refused(errno == EMFILE || errno == ENFILE ? "out of descriptors" : "the process cannot be watched");
      retire_socket(s);
      continue;
    }
    auto c = std::make_unique<client>();
    c->id = next_client_++;
    c->sock = s;
    c->pidfd = pidfd;
    c->pid = p.pid;
    c->uid = p.uid;
    c->last_active = now();
    add(epoll_, s, tag(k_sock, c->id));
    add(epoll_, pidfd, tag(k_pidfd, c->id));
    log::debug("poolshimd: client {} pid {} uid {}", c->id, c->pid, c->uid);
    clients_.emplace(c->id, std::move(c));
  }
}

std::size_t server::uid_connections(uid_t uid) const {
  std::size_t n = 0;
  for (const auto& [id, c] : clients_) n += c->uid == uid && c->sock >= 0;
  return n;
}

void server::refused(const char* why) {
  ++refused_connections_;
  ++refusals_unlogged_;
  last_refusal_ = why;
  flush_refusals(clock::now(), false);
}

void server::flush_refusals(clock::time_point now, bool force) {
  if (refusals_unlogged_ == 0 || (!force && now - refusal_logged_ < k_refusal_log_interval)) return;
  log::warn(
      "poolshimd: refused {} connection(s) since the last report (the last: {}); {} in all; reported at most "
      "once per {} s",
      refusals_unlogged_, last_refusal_, refused_connections_,
      std::chrono::duration_cast<std::chrono::seconds>(k_refusal_log_interval).count());
  refusals_unlogged_ = 0;
  refusal_logged_ = now;
}

void server::dispose(int fd) noexcept {
  if (fd < 0) return;
  if (closes_quickly(fd)) {
    close(fd);
    return;
  }
  proto::disarm_linger(fd);  // a close that does not wait for the peer to read
  try {
    closer_->put(fd);
  } catch (...) {
    proto::close_received(fd);  // no memory for the queue: close here, its linger cleared
  }
}

// A client's socket may still hold records with descriptors attached: closing it would release
// them here (the last close of a socket the client sent runs its linger). Shut down first (the
// client cannot queue more: its sends fail with EPIPE), take what is queued, then close.
void server::retire_socket(int s) {
  (void)shutdown(s, SHUT_RDWR);
  const proto::fd_sink sink{[](void* self, int fd) noexcept { static_cast<server*>(self)->dispose(fd); }, this};
  for (int i = 0; i < 4096; ++i) {
    alignas(8) unsigned char buf[proto::k_record_size];
    std::size_t len = 0;
    int fd = -1;
    if (proto::recv_record(s, buf, sizeof buf, &len, &fd, sink) != proto::recv_status::ok) break;
    dispose(fd);
  }
  close(s);
}

void server::drop_socket(client& c) {
  if (c.sock < 0) return;
  epoll_ctl(epoll_, EPOLL_CTL_DEL, c.sock, nullptr);
  retire_socket(c.sock);
  c.sock = -1;
  // Nothing to keep for the process: no lease, no named buffer's reference, and no returned slab it
  // may still hold (those count against its quotas until it exits: a goodbye and a new connection
  // do not wipe them).
  if (c.leases.empty() && c.refs.empty() && c.retained.empty() && c.channel_refs.empty()) on_client_exited(c.id);
}

bool server::holds_nothing(const client& c) const {
  if (!c.leases.empty() || !c.refs.empty() || !c.channel_refs.empty()) return false;
  for (const auto& [t, e] : exports_)
    if (e.client == c.id) return false;
  return true;
}

void server::sweep(clock::time_point now) {
  if (listen_paused_ && now >= listen_paused_until_) {
    modify(epoll_, listen_, tag(k_listen), EPOLLIN);
    listen_paused_ = false;
  }
  flush_refusals(now, false);
  for (auto it = metrics_conns_.begin(); it != metrics_conns_.end();) {
    const auto next = std::next(it);
    if (now >= it->second.deadline) end_metrics(it->first, true);
    it = next;
  }
  if (options_.idle_timeout.count() <= 0) return;
  std::vector<std::uint64_t> idle;
  for (const auto& [id, c] : clients_)
    if (c->sock >= 0 && now - c->last_active >= options_.idle_timeout && holds_nothing(*c)) idle.push_back(id);
  for (std::uint64_t id : idle) {
    auto it = clients_.find(id);
    if (it == clients_.end()) continue;
    ++idle_closed_;
    log::debug("poolshimd: client {} (pid {} uid {}) idle for {} s with nothing held: closed", id, it->second->pid,
               it->second->uid, options_.idle_timeout.count());
    drop_socket(*it->second);
  }
}

void server::on_client_readable(client& c) {
  if (c.filling != 0) return;  // its create's reply comes first (on_filled), then its next records
  for (;;) {
    alignas(8) unsigned char buf[proto::k_record_size];
    std::size_t len = 0;
    int fd_in = -1;
    const proto::fd_sink sink{[](void* self, int fd) noexcept { static_cast<server*>(self)->dispose(fd); }, this};
    const proto::recv_status st = proto::recv_record(c.sock, buf, sizeof buf, &len, &fd_in, sink);
    if (st == proto::recv_status::error) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      drop_socket(c);
      return;
    }
    if (st == proto::recv_status::closed) {
      drop_socket(c);
      return;
    }
    int fd_out = -1;
    bool goodbye = false;
    const proto::reply r = serve(c, buf, len, fd_in, &fd_out, &goodbye);
    if (c.filling != 0) {
      // A create whose buffer is being filled: no reply yet, and no more records read from this
      // client until it comes (the loop serves everyone else meanwhile).
      modify(epoll_, c.sock, tag(k_sock, c.id), 0);
      return;
    }
    const bool sent = proto::send_record(c.sock, &r, sizeof r, fd_out);
    if (fd_out >= 0) close(fd_out);
    if (!sent) {
      drop_socket(c);
      return;
    }
    if (goodbye) {
      drop_socket(c);
      return;
    }
  }
}

// One record, as received: validated, then handled; the reply (with the pressure), the descriptor
// it carries (*fd_out), and whether it was an accepted goodbye. fd_in is consumed.
proto::reply server::serve(client& c, const unsigned char* buf, std::size_t len, int fd_in, int* fd_out,
                           bool* goodbye) {
  c.last_active = now();
  proto::request q{};
  proto::status v = proto::validate_request(buf, len, region_.slab_bytes(), &q);
  if (v == proto::status::ok && fd_in == -2) v = proto::status::missing_fd;
  if (v == proto::status::ok && proto::op_takes_fd(static_cast<proto::op>(q.op)) != (fd_in >= 0))
    v = proto::status::missing_fd;
  // The one descriptor a request carries is a slab: a memfd (a regular file on tmpfs or
  // hugetlbfs). Anything else (a socket, a FIFO, a file on FUSE) is refused before it is used.
  if (v == proto::status::ok && fd_in >= 0 && !is_memfd(fd_in)) v = proto::status::bad_argument;
  proto::reply r;
  if (v != proto::status::ok) {
    dispose(fd_in);
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
    r = handle(c, q, fd_in, fd_out);
  }
  r.pressure_mib = pressure_mib();
  *goodbye = q.op == static_cast<std::uint16_t>(proto::op::goodbye) && v == proto::status::ok;
  return r;
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
      if (!within_quota(c, slab)) return proto::make_reply(q, status::quota);
      int fd = -1;
      const int i = region_.lend(c.id, &fd);
      if (i < 0) {
        pressure_until_ = now() + k_pressure_hold;
        return proto::make_reply(q, status::no_memory);
      }
      // Bound to this uid (slab_identity.h): re-declared by another, it is refused.
      (void)tag_owner(region_.key(), fd, region_.serial_of(i), c.uid);
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
      end_lease(c, l, true);  // the process may keep the memfd: it counts until it is let go
      return proto::make_reply(q, status::ok);
    }
    case proto::op::lease_device: {
      unsigned char uuid[proto::k_uuid_size];
      std::memcpy(uuid, q.payload, sizeof uuid);
      lease l{next_lease_, -1};
      int fd = -1;
      std::string why;
      if (devices_.enabled() && !within_quota(c, q.arg[0])) return proto::make_reply(q, status::quota);
      if (!devices_.lend(uuid, q.arg[0], &l.handle, &l.device, &fd, &why)) {
        if (!devices_.enabled()) return proto::make_reply(q, status::not_permitted);
        // Pressure: the limit or the device is spent; idle memory of other clients flows back to
        // the daemon (their next report, within the shim's report period) and the asker retries.
        const std::uint64_t asked = ask_device_back(&c, q.arg[0]);
        if (asked == 0 && c.bad_records++ < 3)
          log::info("poolshimd: client {} (pid {}): no device memory: {}", c.id, c.pid, why);
        proto::reply r = proto::make_reply(q, status::no_memory);
        r.val[0] = asked;
        return r;
      }
      ++next_lease_;
      l.bytes = q.arg[0];
      c.leases.push_back(l);
      c.device_bytes += l.bytes;
      *fd_out = fd;
      keep_node_idle_bound();
      proto::reply r = proto::make_reply(q, status::ok);
      r.val[0] = l.id;
      r.val[1] = l.bytes;
      return r;
    }
    case proto::op::redeclare_slab: {
      // A slab this daemon lent already: the same process reconnecting takes its lease over.
      if (const int known = region_.find_lent(fd_in); known >= 0) {
        dispose(fd_in);
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
      // Not one of ours: only a slab a daemon with this key lent (its name), not lent now, not
      // returned here, sealed, of slab size, and within the quotas.
      std::uint64_t serial = 0;
      if (q.arg[0] != slab) {
        dispose(fd_in);
        return proto::make_reply(q, status::bad_argument);
      }
      if (!slab_serial(region_.key(), fd_in, &serial)) {
        dispose(fd_in);
        return proto::make_reply(q, status::not_permitted);
      }
      if (region_.serial_lent(serial) || retired_.count(serial) != 0) {
        dispose(fd_in);
        return proto::make_reply(q, status::not_permitted);
      }
      // Lent to this uid: its tag says so (where memfds keep tags, a slab without one is refused).
      const owner_tag tag = check_owner(region_.key(), fd_in, serial, c.uid);
      if (tag == owner_tag::other || (tag == owner_tag::none && owner_tags_supported())) {
        dispose(fd_in);
        return proto::make_reply(q, status::not_permitted);
      }
      if (!within_quota(c, slab)) {
        dispose(fd_in);
        return proto::make_reply(q, status::quota);
      }
      const int i = region_.adopt(c.id, fd_in, q.arg[0], serial);
      dispose(fd_in);
      if (i < 0) return proto::make_reply(q, status::no_memory);
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
      // The N-th client this uid may see: every one for root, its own uid's for anyone else.
      std::uint64_t n = q.arg[0];
      for (const auto& [id, other] : clients_) {
        if (c.uid != 0 && other->uid != c.uid) continue;
        if (n-- != 0) continue;
        proto::reply r = proto::make_reply(q, status::ok);
        proto::encode_client_status(client_figures(*other), &r);
        return r;
      }
      return proto::make_reply(q, status::not_found);
    }
    case proto::op::return_idle: {
      proto::reply r = proto::make_reply(q, status::ok);
      r.val[0] = std::uint64_t{pressure_mib()} << 20;
      if (q.arg[2] == proto::k_idle_report) {
        // Believed up to what it was lent. What it takes an ask for now is on its way back (its
        // leases return within the round): counted as asked until they do, so that neither the
        // next lease asks for the same bytes again nor a waiting asker is told nothing is coming.
        // What a client took an ask for and had not given back by its next report, it kept: from
        // then on its reports are believed only up to what it holds beyond all it kept, until it
        // returns leases of as much. A client that calls memory in use idle would otherwise take
        // every ask from the real holders and make askers wait in vain, and one that gives back a
        // small lease for each large ask would still be believed (the earlier rule, "three asks in
        // a row of which it gave nothing", let that through). An honest client that lost a race
        // (its idle segments were reused before the ask came) is held to it only until its idle
        // memory goes back unasked.
        if (c.taken_device != 0) c.kept_device = std::min(c.device_bytes, c.kept_device + c.giving_device);
        c.idle_device = trusted_idle(q.arg[0], c.device_bytes - c.kept_device);
        c.idle_pinned = trusted_idle(q.arg[1], c.lent_bytes);
        r.val[1] = std::exchange(c.asked_device, 0);
        r.val[2] = std::exchange(c.asked_pinned, 0);
        c.giving_device = c.taken_device = std::min(r.val[1], c.idle_device);
        c.giving_since = clock::now();
      }
      return r;
    }
    case proto::op::trim_clients: {
      // Every client this uid may see (root: all), as client_stats: asked at its next report.
      const std::uint64_t each = q.arg[0] == 0 ? ~std::uint64_t{0} : q.arg[0];
      proto::reply r = proto::make_reply(q, status::ok);
      for (auto& [id, other] : clients_) {
        if ((c.uid != 0 && other->uid != c.uid) || other.get() == &c) continue;
        if (other->asked_device == 0) other->asked_since = clock::now();
        other->asked_device = each;
        other->asked_pinned = each;
        ++r.val[0];
        r.val[1] += other->idle_device;
        r.val[2] += other->idle_pinned;
      }
      log::info("poolshimd: client {} (pid {}) asked {} client(s) to trim", c.id, c.pid, r.val[0]);
      return r;
    }
    case proto::op::goodbye:
      release_all(c);
      leave_channels(c, /*died=*/false);
      drop_references(c);
      return proto::make_reply(q, status::ok);
    case proto::op::channel_list: {
      std::uint64_t n = q.arg[0];
      for (const auto& [id, ch] : channels_) {
        if (c.uid != 0 && !ch.shared && ch.uid != c.uid) continue;
        if (n-- != 0) continue;
        proto::reply r = proto::make_reply(q, status::ok);
        proto::encode_channel_entry(listing_of(ch), &r);
        return r;
      }
      return proto::make_reply(q, status::not_found);
    }
    case proto::op::channel_create:
      return create_channel(c, q, fd_out);
    case proto::op::channel_open:
      return open_channel(c, q, fd_out);
    case proto::op::channel_close: {
      auto it = std::find_if(c.channel_refs.begin(), c.channel_refs.end(),
                             [&](const channel_ref& r) { return r.id == q.arg[0]; });
      if (it == c.channel_refs.end()) return proto::make_reply(q, status::not_found);
      const channel_ref r = *it;
      c.channel_refs.erase(it);
      leave_channel(c, r, /*died=*/false);
      return proto::make_reply(q, status::ok);
    }
    case proto::op::ipc_register: {
      if (c.exports >= k_max_exports) return proto::make_reply(q, status::quota);
      token t{};
      if (getrandom(t.data(), t.size(), 0) != static_cast<ssize_t>(t.size()))
        return proto::make_reply(q, status::internal);
      ipc_export e{c.id, c.uid, {}, q.arg[0], q.arg[1]};
      std::memcpy(e.handle.data(), q.payload, e.handle.size());
      exports_[t] = e;
      ++c.exports;
      proto::reply r = proto::make_reply(q, status::ok);
      std::memcpy(r.payload, t.data(), t.size());
      return r;
    }
    case proto::op::buffer_create:
      return create_buffer(c, q, fd_out);
    case proto::op::buffer_open:
      return open_buffer(c, q, fd_out);
    case proto::op::buffer_close: {
      auto it = std::find_if(c.refs.begin(), c.refs.end(), [&](const buffer_ref& r) { return r.id == q.arg[0]; });
      if (it == c.refs.end()) return proto::make_reply(q, status::not_found);
      const buffer_ref r = *it;
      c.refs.erase(it);
      end_buffer_ref(r);
      return proto::make_reply(q, status::ok);
    }
    case proto::op::buffer_handles: {
      auto it = std::find_if(c.refs.begin(), c.refs.end(), [&](const buffer_ref& r) { return r.id == q.arg[0]; });
      if (it == c.refs.end()) return proto::make_reply(q, status::not_found);
      const named_buffer& b = buffers_.at(it->buffer);
      if (b.fd >= 0) return proto::make_reply(q, status::bad_argument);  // a host buffer has no handles
      proto::reply r = proto::make_reply(q, status::ok);
      std::memcpy(r.payload, b.device.mem_handle, sizeof b.device.mem_handle);
      std::memcpy(r.payload + proto::k_ipc_handle_size, b.device.event_handle, sizeof b.device.event_handle);
      return r;
    }
    case proto::op::buffer_unlink: {
      const auto key = name_key(c, q);
      auto it = names_.find(key);
      if (it == names_.end()) return proto::make_reply(q, status::not_found);
      named_buffer& b = buffers_.at(it->second);
      if (c.uid != 0 && c.uid != b.uid) return proto::make_reply(q, status::not_permitted);
      const std::uint64_t id = it->second;
      names_.erase(it);
      b.unlinked = true;
      mirror_dirty_ = true;
      if (b.refs == 0) free_buffer(id);
      return proto::make_reply(q, status::ok);
    }
    case proto::op::buffer_list: {
      std::uint64_t n = q.arg[0];
      for (const auto& [id, b] : buffers_) {
        if (b.unlinked || b.filling || (c.uid != 0 && !b.shared && b.uid != c.uid)) continue;
        if (n-- != 0) continue;
        proto::reply r = proto::make_reply(q, status::ok);
        proto::buffer_entry e;
        std::memcpy(e.name, b.name.data(), std::min(b.name.size(), proto::k_name_size));
        e.bytes = b.bytes;
        e.kind_flags = b.kind_flags;
        e.device = b.fd < 0 ? b.device.device : -1;
        std::memcpy(e.device_uuid, b.device_uuid, sizeof e.device_uuid);
        e.references = b.refs;
        e.creator_pid = static_cast<std::uint64_t>(b.creator_pid);
        e.owner_uid = b.uid;
        e.created_ns = b.ctime_ns;
        proto::encode_buffer_entry(e, &r);
        return r;
      }
      return proto::make_reply(q, status::not_found);
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
        if (c.exports > 0) --c.exports;
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

void server::end_lease(client& c, const lease& l, bool retain) {
  if (l.slab >= 0) {
    const slab_id id = region_.give_back(l.slab);
    c.lent_bytes -= region_.slab_bytes();
    retire(id.serial);
    // Tracked only where a quota can refuse: without one, nothing would be decided by it.
    if (retain && id.ino != 0 && (options_.client_quota != 0 || options_.uid_quota != 0)) {
      c.retained.push_back({id, region_.slab_bytes()});
      c.retained_bytes += region_.slab_bytes();
    }
  } else {
    devices_.give_back(l.handle, l.bytes, l.device);
    c.device_bytes -= l.bytes;
    // A segment goes back only when idle (or with the process): it was part of what it reported.
    c.idle_device -= std::min(c.idle_device, l.bytes);
    // It pays the ask it is giving for first; what is beyond pays off what it kept before.
    const std::uint64_t toward_ask = std::min(c.giving_device, l.bytes);
    c.giving_device -= toward_ask;
    c.kept_device -= std::min(c.kept_device, l.bytes - toward_ask);
  }
}

void server::release_all(client& c) {
  const bool alive = c.pidfd >= 0 && !process_exited(c.pidfd);
  for (const lease& l : c.leases) end_lease(c, l, alive);
  c.leases.clear();
}

void server::retire(std::uint64_t serial) {
  if (serial == 0 || !retired_.insert(serial).second) return;
  retired_order_.push_back(serial);
  if (retired_order_.size() > k_max_retired) {
    retired_.erase(retired_order_.front());
    retired_order_.pop_front();
  }
}

// What one process (all its connections) and one uid hold, with `more`, against the quotas.
bool server::fits_quota(const client& c, std::uint64_t more) const {
  std::uint64_t process = 0, uid = 0;
  // A retained memfd counts once for the uid and once for the process, however many of their
  // connections were handed it.
  std::set<std::pair<dev_t, ino_t>> uid_files, process_files;
  for (const auto& [id, other] : clients_) {
    if (other->uid != c.uid) continue;
    const std::uint64_t lent = other->lent_bytes + other->device_bytes;
    uid += lent;
    if (other->pid == c.pid) process += lent;
    for (const retained_file& f : other->retained) {
      if (uid_files.insert({f.id.dev, f.id.ino}).second) uid += f.bytes;
      if (other->pid == c.pid && process_files.insert({f.id.dev, f.id.ino}).second) process += f.bytes;
    }
  }
  // Named buffers count for the uid that owns them while they exist, and for the process that
  // made them while it lives (it may be gone: the name outlives it).
  for (const auto& [id, b] : buffers_) {
    if (b.uid != c.uid) continue;
    uid += b.reserved;
    if (b.creator_pid == c.pid && clients_.count(b.creator_client) != 0) process += b.reserved;
  }
  return (options_.client_quota == 0 || process + more <= options_.client_quota) &&
         (options_.uid_quota == 0 || uid + more <= options_.uid_quota);
}

bool server::within_quota(client& c, std::uint64_t more) {
  if (fits_quota(c, more)) return true;
  return forget_unheld(c.uid) && fits_quota(c, more);
}

// The returned slabs of `uid`'s clients that no process of that uid holds any more (no descriptor,
// no mapping) stop counting. /proc is read at most once per proc_scan_interval (a second) per uid,
// so a client asking again and again costs the loop nothing more.
bool server::forget_unheld(uid_t uid) {
  std::set<std::pair<dev_t, ino_t>> wanted;
  for (const auto& [id, c] : clients_)
    if (c->uid == uid)
      for (const retained_file& s : c->retained) wanted.insert({s.id.dev, s.id.ino});
  if (wanted.empty()) return false;
  const clock::time_point now = this->now();
  auto [at, fresh] = scanned_.try_emplace(uid, now);
  if (!fresh && now - at->second < options_.proc_scan_interval) return false;
  at->second = now;
  std::vector<int> own_closing = region_.closing_fds();  // the daemon's own, still being closed
  for (const int fd : closer_->pending()) own_closing.push_back(fd);
  const std::set<std::pair<dev_t, ino_t>> held_now = files_held_by(uid, wanted, own_closing);
  bool forgot = false;
  for (auto& entry : clients_) {
    auto& c = entry.second;  // not a structured binding: clang 14 cannot capture one
    if (c->uid != uid) continue;
    std::erase_if(c->retained, [&](const retained_file& s) {
      if (held_now.count({s.id.dev, s.id.ino}) != 0) return false;
      c->retained_bytes -= s.bytes;
      forgot = true;
      return true;
    });
  }
  return forgot;
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
  // Its slots freed, or its channels' writer marked dead (what it held for their readers stays with
  // them), at once; then its named buffers' references: the last one frees an unlinked buffer.
  leave_channels(c, /*died=*/true);
  drop_references(c);
  c.retained.clear();  // the process is gone: what it kept is let go (by it, at least)
  c.retained_bytes = 0;
  std::erase_if(exports_, [&](const auto& kv) { return kv.second.client == c.id; });  // its blocks are gone
  if (c.sock >= 0) {
    epoll_ctl(epoll_, EPOLL_CTL_DEL, c.sock, nullptr);
    retire_socket(c.sock);
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
  if (now() >= pressure_until_) return 0;
  return static_cast<std::uint32_t>(region_.slab_bytes() >> 20);
}

std::uint64_t server::ask_device_back(const client* needy, std::uint64_t bytes) {
  const auto now = clock::now();
  // A client asked earlier that has not reported since (stopped, hung, or it stopped reporting)
  // gives nothing back: its ask is not memory on its way, and it is asked for nothing more, or
  // one such process would make every later refusal wait for memory that never comes.
  auto responsive = [&](const client& o) {
    return o.sock >= 0 && (o.asked_device == 0 || now - o.asked_since < k_ask_expiry);
  };
  // Asked, or taken at its last report and not given back yet (for as long as an ask counts).
  auto pending = [&](const client& o) {
    return o.asked_device + (now - o.giving_since < k_ask_expiry ? o.giving_device : 0);
  };
  std::vector<client*> holders;
  for (auto& [id, other] : clients_)
    if (other.get() != needy && responsive(*other) && other->idle_device > pending(*other))
      holders.push_back(other.get());
  std::sort(holders.begin(), holders.end(), [&](const client* a, const client* b) {
    return a->idle_device - pending(*a) > b->idle_device - pending(*b);
  });
  // What earlier refusals asked already counts: a retry does not ask twice for one need.
  std::uint64_t asked = 0;
  for (const auto& [id, other] : clients_)
    if (other.get() != needy && responsive(*other)) asked += std::min(pending(*other), other->idle_device);
  for (client* h : holders) {
    if (asked >= bytes) break;
    const std::uint64_t more = std::min(h->idle_device - pending(*h), bytes - asked);
    if (h->asked_device == 0) h->asked_since = now;
    h->asked_device += more;
    asked += more;
  }
  return asked;
}

void server::keep_node_idle_bound() {
  if (options_.idle_percent >= server_options::k_no_idle_bound) return;
  std::uint64_t lent = 0, idle = 0;
  for (const auto& [id, c] : clients_) {
    lent += c->device_bytes;
    idle += c->idle_device;  // at most its device_bytes (trusted_idle)
  }
  // Reserved memory only grows at a lease, so bounding it here bounds the node's peak (give or
  // take what is still on its way back: asks are taken at the holders' next report).
  const std::uint64_t in_use = lent - std::min(lent, idle);
  const std::uint64_t allowed = in_use + in_use / 100 * options_.idle_percent;
  if (lent > allowed) (void)ask_device_back(nullptr, lent - allowed);
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
  s.named_bytes = f.named_bytes;
  return s;
}

proto::client_status server::client_figures(const client& c) {
  proto::client_status s;
  s.pid = static_cast<std::uint64_t>(c.pid);
  s.uid = c.uid;
  s.lent_bytes = c.lent_bytes;
  s.leases = c.leases.size();
  s.device_bytes = c.device_bytes;
  s.idle_device_bytes = c.idle_device;
  s.idle_pinned_bytes = c.idle_pinned;
  return s;
}

// The figures of the stats reply (their metric names from the protocol's list), then the daemon's
// own that are not on the wire. Prometheus' conventions (promtool check metrics, ctest
// deploy.prometheus_metrics): a name ending in _total is a counter and nothing else is; units are
// base units (bytes, seconds) named in the suffix.
std::string server::metrics_text() const {
  std::string t;
  auto line = [&](const char* name, const char* help, std::uint64_t v) {
    const std::string_view n = name;
    const bool counter = n.size() > 6 && n.substr(n.size() - 6) == "_total";
    t += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + (counter ? " counter\n" : " gauge\n") +
         name + " " + std::to_string(v) + "\n";
  };
  t += "# HELP poolshimd_build_info The daemon's version; always 1.\n# TYPE poolshimd_build_info gauge\n"
       "poolshimd_build_info{version=\"" POOLSHIM_VERSION "\"} 1\n";
  const proto::daemon_status s = status_figures();
  for (const proto::status_figure& f : proto::k_status_figures)
    if (f.metric != nullptr) line(f.metric, f.help, s.*f.member);
  line("poolshimd_ready_slabs", "Free slabs already filled.", region_.figures().ready_slabs);
  line("poolshimd_refused_records_total", "Records refused as malformed.", refused_records_);
  line("poolshimd_refused_connections_total", "Connections refused (a uid's limit, out of descriptors).",
       refused_connections_);
  line("poolshimd_idle_closed_total", "Connections closed for holding nothing past the idle timeout.", idle_closed_);
  std::uint64_t retained = 0;
  for (const auto& [id, c] : clients_) retained += c->retained_bytes;
  line("poolshimd_named_buffers", "Named buffers (issue #14), unlinked ones still referenced included.",
       buffers_.size());
  line("poolshimd_retained_bytes",
       "Returned slabs and freed named buffers their processes may still hold (counted against their quotas).",
       retained);
  // Each named buffer: its bytes and references, labelled with its name, kind, device, owner and
  // namespace. Anyone on the node can read this page: the shared namespace's buffers always (any
  // uid may open them), a uid's own only with --metrics-clients.
  auto label = [](const std::string& v) {
    std::string o;
    for (const char c : v) {
      if (c == '"' || c == '\\') o.push_back('\\');
      o.push_back(c);
    }
    return o;
  };
  std::string bytes_lines, refs_lines;
  for (const auto& [id, b] : buffers_) {
    if (b.unlinked || b.filling || (!b.shared && !options_.metrics_clients)) continue;
    const std::string labels = "{name=\"" + label(b.name) + "\",kind=\"" + (b.fd < 0 ? "device" : "host") +
                               "\",device=\"" + (b.fd < 0 ? std::to_string(b.device.device) : "cpu") +
                               "\",owner_uid=\"" + std::to_string(b.uid) + "\",namespace=\"" +
                               (b.shared ? "shared" : "uid") + "\"} ";
    bytes_lines += "poolshimd_named_buffer_bytes" + labels + std::to_string(b.bytes) + "\n";
    refs_lines += "poolshimd_named_buffer_references" + labels + std::to_string(b.refs) + "\n";
  }
  t += "# HELP poolshimd_named_buffer_bytes A named buffer's size (shared ones; every one with --metrics-clients).\n"
       "# TYPE poolshimd_named_buffer_bytes gauge\n" +
       bytes_lines +
       "# HELP poolshimd_named_buffer_references A named buffer's references.\n"
       "# TYPE poolshimd_named_buffer_references gauge\n" +
       refs_lines;
  // Channels alike: readers attached, backlog, messages sent, capacity and bytes held by reference,
  // labelled by name; each family's lines together (Prometheus text).
  constexpr int k_channel_families = 5;
  static const char* const k_channel_metrics[k_channel_families][2] = {
      {"poolshimd_channel_readers", "A channel's readers attached (shared ones; every one with --metrics-clients)."},
      {"poolshimd_channel_backlog_bytes", "Bytes a channel's writer sent that its slowest reader has not read."},
      {"poolshimd_channel_messages_total", "Messages sent on a channel."},
      {"poolshimd_channel_capacity_bytes", "A channel's ring size."},
      {"poolshimd_channel_held_bytes",
       "Bytes of buffers sent by reference that a channel's writer holds for readers."}};
  std::string ch_lines[k_channel_families];
  for (const auto& [id, ch] : channels_) {
    if (!ch.shared && !options_.metrics_clients) continue;
    const proto::channel_entry e = listing_of(ch);
    const std::uint64_t values[k_channel_families] = {e.readers, e.backlog, e.messages, e.capacity, e.held_bytes};
    const std::string labels = "{name=\"" + label(ch.name) + "\",owner_uid=\"" + std::to_string(ch.uid) +
                               "\",namespace=\"" + (ch.shared ? "shared" : "uid") + "\"} ";
    for (int k = 0; k < k_channel_families; ++k)
      ch_lines[k] += k_channel_metrics[k][0] + labels + std::to_string(values[k]) + "\n";
  }
  for (int k = 0; k < k_channel_families; ++k)
    t += std::string("# HELP ") + k_channel_metrics[k][0] + " " + k_channel_metrics[k][1] + "\n# TYPE " +
         k_channel_metrics[k][0] + (k == 2 ? " counter\n" : " gauge\n") + ch_lines[k];
  // Which process holds what only when asked for (--metrics-clients).
  if (!options_.metrics_clients) return t;
  // Per client: the client_stats reply's figures (one typed description), each its own family.
  for (const proto::client_figure& f : proto::k_client_figures) {
    if (f.member == &proto::client_status::pid || f.member == &proto::client_status::uid) continue;
    const std::string name = std::string("poolshimd_client_") + f.name;
    t += "# HELP " + name + " Per client process (client_stats' " + f.name + ").\n# TYPE " + name + " gauge\n";
    for (const auto& [id, c] : clients_) {
      const proto::client_status cs = client_figures(*c);
      t += name + "{pid=\"" + std::to_string(c->pid) + "\",uid=\"" + std::to_string(c->uid) + "\"} " +
           std::to_string(cs.*f.member) + "\n";
    }
  }
  return t;
}

// The metrics listener: connections are taken in a bounded batch, non-blocking, each with its state
// and deadline in the poll set; past k_max_metrics at once, a new one is reset at once.
void server::serve_metrics() {
  for (int batch = 0; batch < 64; ++batch) {
    const int s = accept4(metrics_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (s < 0) {
      if (errno == EMFILE || errno == ENFILE) refused("out of descriptors (metrics)");
      return;
    }
    if (metrics_conns_.size() >= static_cast<std::size_t>(k_max_metrics)) {
      close_with_reset(s);  // nothing kept for it
      refused("the metrics connection limit");
      continue;
    }
    const std::uint64_t id = next_metrics_++;
    try {
      add(epoll_, s, tag(k_metrics_conn, id), EPOLLIN | EPOLLRDHUP);
    } catch (const std::exception&) {
      close(s);
      continue;
    }
    metrics_conn& m = metrics_conns_[id];
    m.fd = s;
    m.deadline = clock::now() + k_metrics_deadline;
  }
}

void server::on_metrics_event(std::uint64_t id, std::uint32_t events) {
  auto it = metrics_conns_.find(id);
  if (it == metrics_conns_.end()) return;
  metrics_conn& m = it->second;
  if (m.out.empty()) {
    // The request: whatever came (every path gets the figures); only its arrival matters.
    char ignored[1024];
    const ssize_t n = recv(m.fd, ignored, sizeof ignored, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n < 0 || (n == 0 && (events & (EPOLLERR | EPOLLHUP)) != 0)) {
      end_metrics(id, true);
      return;
    }
    const std::string body = metrics_text();
    m.out =
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\nConnection: close\r\n\r\n" + body;
    modify(epoll_, m.fd, tag(k_metrics_conn, id), EPOLLOUT);
  } else if ((events & (EPOLLERR | EPOLLHUP)) != 0) {
    end_metrics(id, true);
    return;
  }
  while (m.sent < m.out.size()) {
    const ssize_t n = send(m.fd, m.out.data() + m.sent, m.out.size() - m.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // EPOLLOUT brings it back
    if (n <= 0) {
      end_metrics(id, true);
      return;
    }
    m.sent += static_cast<std::size_t>(n);
  }
  end_metrics(id, false);
}

// Our own socket, no linger set: close() returns at once either way; abort resets the connection
// (a reader too slow for its deadline leaves no queue behind).
void server::end_metrics(std::uint64_t id, bool abort) {
  auto it = metrics_conns_.find(id);
  if (it == metrics_conns_.end()) return;
  const int fd = it->second.fd;
  epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
  if (abort) {
    close_with_reset(fd);
  } else {
    close(fd);
  }
  metrics_conns_.erase(it);
}

// ---- named buffers (issue #14) ----

std::pair<std::uint64_t, std::string> server::name_key(const client& c, const proto::request& q) {
  const auto* p = reinterpret_cast<const char*>(q.payload);
  const std::string name(p, strnlen(p, proto::k_name_size));
  const bool shared = (q.arg[1] & proto::k_buffer_shared) != 0;
  return {shared ? k_shared_namespace : std::uint64_t{c.uid}, name};
}

// A new named buffer of a create request `q` under `key`, one reference (its creator's), the name
// taken: what every kind has in common (the caller adds its memory).
std::uint64_t server::add_buffer(const std::pair<std::uint64_t, std::string>& key, uid_t uid, pid_t pid,
                                 std::uint64_t client, const proto::request& q, std::uint64_t reserved) {
  const std::uint64_t id = next_buffer_++;
  named_buffer& b = buffers_[id];
  b.name = key.second;
  b.shared = key.first == k_shared_namespace;
  b.uid = uid;
  b.creator_pid = pid;
  b.creator_client = client;
  b.bytes = q.arg[0];
  b.mapped = reserved;
  b.reserved = reserved;
  b.kind_flags = q.arg[1];
  b.dtype_ndim = q.arg[2];
  std::memcpy(b.shape.data(), q.payload + proto::k_name_size, sizeof b.shape);
  b.refs = 1;
  b.ctime_ns = now_ns();
  names_[key] = id;
  mirror_dirty_ = true;
  return id;
}

proto::reply server::create_buffer(client& c, const proto::request& q, int* fd_out) {
  using proto::status;
  if ((q.arg[1] & proto::k_buffer_kind_mask) == static_cast<std::uint64_t>(proto::buffer_kind::device))
    return create_device_buffer(c, q);
  const auto key = name_key(c, q);
  if (names_.count(key) != 0) return proto::make_reply(q, status::exists);
  if (c.refs.size() >= k_max_references) return proto::make_reply(q, status::quota);
  // Its own memfd of the buffer's size (pages rounded). All named buffers together take whole
  // slabs out of the region's budget (their total rounded up to slabs), so small ones share a slab.
  const std::uint64_t mapped = (q.arg[0] + 4095) & ~std::uint64_t{4095};
  if (!within_quota(c, mapped)) return proto::make_reply(q, status::quota);
  if (!resize_named(named_total_ + mapped)) {
    pressure_until_ = now() + k_pressure_hold;
    return proto::make_reply(q, status::no_memory);
  }
  // Sealed against shrinking and growing, and filled (fallocate: the memory exists when the reply
  // comes) on the fill thread, so that a large buffer never holds the loop; the creator's reply
  // waits for it (on_filled). The test clock's harness fills here.
  const int fd = memfd_create(("poolshim-buffer:" + key.second).c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  const bool now_filled = test_clock_;
  const int dup = fd < 0 || ftruncate(fd, static_cast<off_t>(mapped)) != 0 ||
                          (now_filled && fallocate(fd, 0, 0, static_cast<off_t>(mapped)) != 0) ||
                          fcntl(fd, F_ADD_SEALS, slab_region::k_seals) != 0
                      ? -1
                      : fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) {
    if (fd >= 0) closer_->put(fd);
    resize_named(named_total_);
    return proto::make_reply(q, status::no_memory);
  }
  named_total_ += mapped;
  const std::uint64_t id = add_buffer(key, c.uid, c.pid, c.id, q, mapped);
  named_buffer& b = buffers_.at(id);
  b.fd = fd;
  b.fd_clients.insert(c.id);
  if (struct stat st{}; fstat(fd, &st) == 0) {
    b.dev = st.st_dev;
    b.ino = st.st_ino;
  }
  const buffer_ref ref{next_ref_++, id};
  c.refs.push_back(ref);
  if (!now_filled) {
    b.filling = true;
    const std::uint64_t job = next_fill_++;
    fills_[job] = pending_fill{c.id, id, q, ref.id, dup};
    c.filling = job;
    filler_->put(fill_job{job, fcntl(fd, F_DUPFD_CLOEXEC, 0), mapped});
    return proto::make_reply(q, status::ok);  // not sent: on_filled answers
  }
  *fd_out = dup;
  log::debug("poolshimd: client {} (pid {} uid {}) created buffer '{}' of {} bytes", c.id, c.pid, c.uid, b.name,
             b.bytes);
  proto::reply r = proto::make_reply(q, status::ok);
  r.val[0] = ref.id;
  r.val[1] = mapped;
  r.val[3] = id;
  return r;
}

// A device buffer: the daemon allocates it (the driver loaded on first need) and holds it; its
// creator and every opener get its IPC handles (buffer_handles) and open them in their own context.
proto::reply server::create_device_buffer(client& c, const proto::request& q) {
  using proto::status;
  const auto key = name_key(c, q);
  if (names_.count(key) != 0) return proto::make_reply(q, status::exists);
  if (c.refs.size() >= k_max_references) return proto::make_reply(q, status::quota);
  if (!within_quota(c, q.arg[0])) return proto::make_reply(q, status::quota);
  unsigned char uuid[16];
  std::memcpy(uuid, q.device_uuid, sizeof uuid);
  device_lender::named_allocation a;
  std::string why;
  switch (devices_.allocate_named(uuid, q.arg[0], &a, &why)) {
    case device_lender::result::ok:
      break;
    case device_lender::result::no_device:
      log::info("poolshimd: device buffer '{}' for client {} (pid {}): {}", key.second, c.id, c.pid, why);
      return proto::make_reply(q, status::no_device);
    case device_lender::result::no_memory:
      log::info("poolshimd: device buffer '{}' for client {} (pid {}): {}", key.second, c.id, c.pid, why);
      return proto::make_reply(q, status::no_memory);
    case device_lender::result::failed:
      log::warn("poolshimd: device buffer '{}' for client {} (pid {}): {}", key.second, c.id, c.pid, why);
      return proto::make_reply(q, status::internal);
  }
  const std::uint64_t id = add_buffer(key, c.uid, c.pid, c.id, q, q.arg[0]);
  named_buffer& b = buffers_.at(id);
  b.device = a;
  std::memcpy(b.device_uuid, uuid, sizeof uuid);
  const buffer_ref ref{next_ref_++, id};
  c.refs.push_back(ref);
  log::debug("poolshimd: client {} (pid {} uid {}) created device buffer '{}' of {} bytes on device {}", c.id, c.pid,
             c.uid, b.name, b.bytes, a.device);
  proto::reply r = proto::make_reply(q, status::ok);
  r.val[0] = ref.id;
  r.val[1] = b.bytes;
  r.val[2] = static_cast<std::uint64_t>(a.device);
  r.val[3] = id;
  return r;
}

proto::reply server::open_buffer(client& c, const proto::request& q, int* fd_out) {
  using proto::status;
  const auto key = name_key(c, q);
  std::uint64_t found = 0;
  if (q.arg[0] == 0) {
    auto it = names_.find(key);
    if (it != names_.end()) found = it->second;
  } else {
    // By the daemon's id (a channel's buffer sent by reference): the buffer may be unlinked
    // already, but it must be the named one of the asker's namespace, and still exist.
    auto bt = buffers_.find(q.arg[0]);
    if (bt != buffers_.end() && bt->second.name == key.second &&
        (bt->second.shared ? k_shared_namespace : std::uint64_t{bt->second.uid}) == key.first)
      found = bt->first;
  }
  // A buffer still being filled is not there yet for others: its memory does not exist yet.
  if (found == 0 || buffers_.at(found).filling) return proto::make_reply(q, status::not_found);
  if (c.refs.size() >= k_max_references) return proto::make_reply(q, status::quota);
  // A channel writer's hold names its channel (by its own writer reference): counted as held there.
  std::uint64_t channel = 0;
  if (q.arg[3] != 0) {
    auto ct = std::find_if(c.channel_refs.begin(), c.channel_refs.end(),
                           [&](const channel_ref& r) { return r.id == q.arg[3] && r.slot < 0; });
    if (ct == c.channel_refs.end()) return proto::make_reply(q, status::bad_argument);
    channel = ct->channel;
  }
  named_buffer& b = buffers_.at(found);
  const bool device = b.fd < 0;
  const bool memory = !device && (q.arg[2] & proto::k_open_reference_only) == 0;
  const int dup = memory ? fcntl(b.fd, F_DUPFD_CLOEXEC, 0) : -1;
  if (memory && dup < 0) return proto::make_reply(q, status::internal);
  ++b.refs;
  mirror_dirty_ = true;
  const buffer_ref ref{next_ref_++, found, channel};
  c.refs.push_back(ref);
  if (channel != 0) channels_.at(channel).held_bytes += b.bytes;
  *fd_out = dup;  // a device buffer's reply carries none, nor a reference-only open's
  if (memory) b.fd_clients.insert(c.id);
  proto::reply r = proto::make_reply(q, status::ok);
  r.val[0] = ref.id;
  r.val[1] = b.bytes;
  r.val[2] = b.kind_flags;
  r.val[3] = b.dtype_ndim;
  r.val[4] = device ? static_cast<std::uint64_t>(b.device.device) : 0;
  r.val[5] = static_cast<std::uint64_t>(b.creator_pid);
  std::memcpy(r.payload, b.shape.data(), sizeof b.shape);
  std::memcpy(r.payload + proto::k_name_size, b.device_uuid, sizeof b.device_uuid);
  std::memcpy(r.payload + proto::k_open_reply_id, &found, sizeof found);
  const std::uint64_t refs = b.refs;
  std::memcpy(r.payload + proto::k_open_reply_refs, &refs, sizeof refs);
  return r;
}

void server::drop_reference(std::uint64_t buffer) {
  auto it = buffers_.find(buffer);
  if (it == buffers_.end()) return;
  mirror_dirty_ = true;
  named_buffer& b = it->second;
  if (b.refs > 0) --b.refs;
  if (b.refs == 0 && b.from_redis && !b.unlinked) {  // Redis's rule: freed at a refcount of zero
    names_.erase({k_shared_namespace, b.name});
    b.unlinked = true;
  }
  if (b.refs == 0 && b.unlinked) free_buffer(buffer);
}

proto::channel_entry server::listing_of(const channel_entry& ch) {
  const auto* h = static_cast<const channel::header*>(ch.map);
  proto::channel_entry e;
  std::memcpy(e.name, ch.name.data(), std::min(ch.name.size(), proto::k_name_size));
  e.capacity = ch.capacity;
  e.max_readers = ch.max_readers;
  e.shared = ch.shared;
  e.writer_state = h->writer.load(std::memory_order_acquire);
  e.readers = channel::attached_readers(h, ch.max_readers);
  e.backlog = channel::backlog(h, ch.max_readers);
  e.writer_pid = h->writer_pid;
  e.messages = h->messages.load(std::memory_order_relaxed);
  e.held_bytes = ch.held_bytes;
  return e;
}

void server::end_buffer_ref(const buffer_ref& r) {
  if (r.channel != 0) {
    auto ct = channels_.find(r.channel);
    auto bt = buffers_.find(r.buffer);
    if (ct != channels_.end() && bt != buffers_.end())
      ct->second.held_bytes -= std::min(ct->second.held_bytes, bt->second.bytes);
  }
  drop_reference(r.buffer);
}

void server::drop_references(client& c) {
  const std::vector<buffer_ref> refs = std::move(c.refs);
  c.refs.clear();
  for (const buffer_ref& r : refs) end_buffer_ref(r);
}

// The memory goes: the daemon's descriptor closed on the helper thread (the last close of a large
// memfd frees its pages there and then), its slabs back to the region.
void server::free_buffer(std::uint64_t id) {
  auto it = buffers_.find(id);
  if (it == buffers_.end()) return;
  log::debug("poolshimd: buffer '{}' of {} bytes freed", it->second.name, it->second.bytes);
  mirror_dirty_ = true;
  std::erase_if(redis_refs_, [&](const redis_ref& r) { return r.buffer == id; });
  if (it->second.fd < 0) {  // device memory: no process holds a mapping any more
    devices_.free_named(it->second.device);
    buffers_.erase(it);
    return;
  }
  // A process it was handed to may keep its memfd or a mapping past its reference: the bytes count
  // for it until a look at /proc finds it let go (as for returned slabs; only where a quota can
  // refuse).
  if (it->second.ino != 0 && (options_.client_quota != 0 || options_.uid_quota != 0))
    for (const std::uint64_t cid : it->second.fd_clients)
      if (auto ct = clients_.find(cid); ct != clients_.end()) {
        ct->second->retained.push_back({slab_id{it->second.dev, it->second.ino, 0}, it->second.mapped});
        ct->second->retained_bytes += it->second.mapped;
      }
  closer_->put(it->second.fd);
  named_total_ -= it->second.mapped;
  buffers_.erase(it);
  resize_named(named_total_);
}

// Fills that finished: each creator gets its reply (the buffer, or no_memory and the buffer gone),
// then its socket is read again.
void server::on_filled() {
  std::uint64_t n = 0;
  (void)!read(filled_, &n, sizeof n);
  std::vector<std::pair<std::uint64_t, bool>> done;
  {
    std::lock_guard lock(fill_results_->mutex);
    done.swap(fill_results_->done);
  }
  for (const auto& [job, ok] : done) {
    auto pf = fills_.find(job);
    if (pf == fills_.end()) continue;
    const pending_fill f = pf->second;
    fills_.erase(pf);
    auto bt = buffers_.find(f.buffer);
    if (bt != buffers_.end()) bt->second.filling = false;
    mirror_dirty_ = true;
    proto::reply r = proto::make_reply(f.request, proto::status::ok);
    int fd_out = f.fd;
    if (!ok) {
      // No memory for it after all: the name and the creator's reference go.
      r = proto::make_reply(f.request, proto::status::no_memory);
      close(fd_out);
      fd_out = -1;
      if (bt != buffers_.end()) {
        // The name is this buffer's unless it was unlinked meanwhile (and perhaps taken again).
        if (!bt->second.unlinked)
          names_.erase({bt->second.shared ? k_shared_namespace : std::uint64_t{bt->second.uid}, bt->second.name});
        bt->second.unlinked = true;
        bt->second.fd_clients.erase(f.client);  // its creator never got the memfd
      }
      auto ct = clients_.find(f.client);
      if (ct != clients_.end()) std::erase_if(ct->second->refs, [&](const buffer_ref& x) { return x.id == f.ref; });
      if (bt != buffers_.end()) {
        bt->second.refs = 0;
        free_buffer(f.buffer);
      }
    } else {
      r.val[0] = f.ref;
      r.val[1] = bt != buffers_.end() ? bt->second.mapped : 0;
      r.val[3] = f.buffer;
    }
    auto ct = clients_.find(f.client);
    if (ct == clients_.end() || ct->second->sock < 0 || ct->second->filling != job) {
      if (fd_out >= 0) close(fd_out);  // its process is gone (its references with it)
      continue;
    }
    client& c = *ct->second;
    c.filling = 0;
    r.pressure_mib = pressure_mib();
    const bool sent = proto::send_record(c.sock, &r, sizeof r, fd_out);
    if (fd_out >= 0) close(fd_out);
    if (!sent) {
      drop_socket(c);
      continue;
    }
    modify(epoll_, c.sock, tag(k_sock, c.id), EPOLLIN);
    on_client_readable(c);  // what it sent meanwhile
  }
}

// The region's slabs taken for named buffers: their total, rounded up to whole slabs. False (and
// nothing changed) when the region has no room for more.
bool server::resize_named(std::uint64_t total) {
  const std::uint64_t slab = region_.slab_bytes();
  const auto need = static_cast<std::size_t>((total + slab - 1) / slab);
  if (need > named_slabs_) {
    if (!region_.reserve(need - named_slabs_)) return false;
  } else if (need < named_slabs_) {
    region_.release(named_slabs_ - need);
  }
  named_slabs_ = need;
  return true;
}

// The harness's entry points (server.h).
server::test_client server::test_connect(pid_t pid, uid_t uid) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0)
    throw std::runtime_error(std::string("socketpair: ") + std::strerror(errno));
  if (!test_clock_) {
    test_clock_ = true;
    test_now_ = clock::now();
  }
  auto c = std::make_unique<client>();
  c->id = next_client_++;
  c->sock = sv[0];
  c->pid = pid;
  c->uid = uid;
  c->last_active = now();
  const std::uint64_t id = c->id;
  clients_[id] = std::move(c);
  return {id, sv[1]};
}

proto::reply server::test_record(std::uint64_t id, const void* rec, std::size_t len, int fd_in, int* fd_out) {
  auto it = clients_.find(id);
  if (it == clients_.end() || it->second->sock < 0) {
    dispose(fd_in);
    return proto::make_reply(proto::make_request(proto::op::hello, 0), proto::status::internal);
  }
  bool goodbye = false;
  const proto::reply r = serve(*it->second, static_cast<const unsigned char*>(rec), len, fd_in, fd_out, &goodbye);
  if (goodbye) drop_socket(*it->second);
  return r;
}

void server::test_advance(std::chrono::milliseconds d) {
  test_now_ += d;
  sweep(now());
}

void server::test_exit(std::uint64_t id) { on_client_exited(id); }

std::uint64_t server::test_lent_by_clients() const {
  std::uint64_t n = 0;
  for (const auto& [id, c] : clients_)
    for (const lease& l : c->leases) n += l.slab >= 0 ? region_.slab_bytes() : 0;
  return n;
}

// ---- the Redis control plane (redis_plane.h) ----

void server::on_redis() {
  std::uint64_t n = 0;
  (void)!read(redis_wake_, &n, sizeof n);
  if (redis_->snapshot_wanted()) {
    mirrored_.clear();
    sync_mirror(/*whole=*/true);  // with nothing mirrored, every entry is new: the whole set
  }
  for (const std::string& json : redis_->take_commands()) {
    const redis_command c = parse_redis_command(json);
    std::string reply;
    if (!c.error.empty()) {
      log::info("poolshimd: redis command refused: {}", c.error);
      reply = "{\"ok\":false,\"error\":" + json_string(c.error) + "}";
    } else {
      reply = run_redis_command(c);
    }
    sync_mirror();  // the hash is written before the reply, so a reader of the reply finds it
    if (!c.reply_to.empty()) redis_->reply(c.reply_to, reply);
  }
}

// A pid a Redis command named, watched from its first reference (or name) to its last. False when
// it cannot be (it exited; no descriptor or poll slot left): the caller treats it as exited.
bool server::watch_redis_pid(long pid) {
  if (pid == 0 || redis_pidfds_.count(pid) != 0) return true;
  const int fd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
  if (fd < 0) return false;
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.u64 = tag(k_redis_pid, static_cast<std::uint64_t>(pid));
  if (epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &e) != 0) {
    close(fd);
    return false;
  }
  redis_pidfds_[pid] = fd;
  return true;
}

void server::unwatch_redis_pid_if_unused(long pid) {
  auto it = redis_pidfds_.find(pid);
  if (it == redis_pidfds_.end()) return;
  if (std::any_of(redis_refs_.begin(), redis_refs_.end(), [&](const redis_ref& r) { return r.pid == pid; })) return;
  for (const auto& [id, b] : buffers_)
    if (b.redis_owner == pid && !b.unlinked) return;
  epoll_ctl(epoll_, EPOLL_CTL_DEL, it->second, nullptr);
  close(it->second);
  redis_pidfds_.erase(it);
}

// A pid named by Redis commands exited: its references go, and the names it created.
void server::on_redis_pid_exited(long pid) {
  if (auto it = redis_pidfds_.find(pid); it != redis_pidfds_.end()) {
    epoll_ctl(epoll_, EPOLL_CTL_DEL, it->second, nullptr);
    close(it->second);
    redis_pidfds_.erase(it);
  }
  std::vector<std::uint64_t> dropped;
  std::erase_if(redis_refs_, [&](const redis_ref& r) {
    if (r.pid != pid) return false;
    dropped.push_back(r.buffer);
    return true;
  });
  for (auto& [id, b] : buffers_) {
    if (b.redis_owner != pid || b.unlinked) continue;
    names_.erase({k_shared_namespace, b.name});
    b.unlinked = true;
    log::info("poolshimd: buffer '{}': its creating pid {} exited; the name is gone", b.name, pid);
  }
  for (const std::uint64_t id : dropped) drop_reference(id);
  for (auto it2 = buffers_.begin(); it2 != buffers_.end();) {
    const auto next = std::next(it2);
    if (it2->second.refs == 0 && it2->second.unlinked) free_buffer(it2->first);
    it2 = next;
  }
  mirror_dirty_ = true;
}

std::string server::run_redis_command(const redis_command& c) {
  auto error = [&](const std::string& why) {
    log::info("poolshimd: redis {} '{}' refused: {}", c.op, c.name, why);
    return "{\"ok\":false,\"op\":" + json_string(c.op) + ",\"name\":" + json_string(c.name) +
           ",\"error\":" + json_string(why) + "}";
  };
  proto::request q = proto::make_request(proto::op::buffer_create, 0);
  if (c.name.size() > proto::k_name_size) return error("the name is longer than 63 bytes");
  std::memcpy(q.payload, c.name.data(), c.name.size());
  if (const char* p = proto::buffer_name_problem(q.payload)) return error(p);
  if (c.name == "cmd") return error("the name 'cmd' is the command list's");
  const std::pair<std::uint64_t, std::string> key{k_shared_namespace, c.name};
  // The pid is watched only once the command has done something for it (below).
  if (c.pid != 0 && kill(static_cast<pid_t>(c.pid), 0) != 0 && errno == ESRCH)
    return error("pid " + std::to_string(c.pid) + " is not running");
  if (c.pid != 0 && c.op != "delete" && redis_pidfds_.count(c.pid) == 0 && redis_pidfds_.size() >= k_max_redis_pids)
    return error("the control plane already watches " + std::to_string(k_max_redis_pids) + " pids");
  std::uint64_t id = 0;
  if (c.op == "create") {
    if (c.device < 0)
      return error(
          "a create through Redis makes a device buffer: give \"device\": N (host buffers are made "
          "through libpoolshim_buffers or the Python package, in the shared namespace)");
    const std::uint32_t code = proto::dtype_code(c.dtype.c_str());
    if (code == 0) return error("unknown dtype '" + c.dtype + "'");
    std::uint64_t elements = 1;
    for (std::size_t d = 0; d < c.shape.size(); ++d) {
      if (c.shape[d] != 0 && elements > proto::k_max_lease_bytes / c.shape[d])
        return error("the shape's product overflows");
      elements *= c.shape[d];
      std::memcpy(q.payload + proto::k_name_size + d * sizeof(std::uint64_t), &c.shape[d], sizeof(std::uint64_t));
    }
    if (elements > proto::k_max_lease_bytes / proto::dtype_size(code)) return error("the buffer is larger than 1 TiB");
    q.arg[0] = elements * proto::dtype_size(code);
    q.arg[1] = static_cast<std::uint64_t>(proto::buffer_kind::device) | proto::k_buffer_shared;
    q.arg[2] = code | (static_cast<std::uint64_t>(c.shape.size()) << 16);
    std::string why;
    unsigned char uuid[16];
    if (!devices_.device_uuid(c.device, uuid, &why)) return error(why);
    std::memcpy(q.device_uuid, uuid, sizeof uuid);
    if (const char* p = proto::buffer_create_problem(q)) return error(p);
    if (names_.count(key) != 0) return error("the name exists");
    device_lender::named_allocation a;
    if (devices_.allocate_named(uuid, q.arg[0], &a, &why) != device_lender::result::ok) return error(why);
    id = add_buffer(key, geteuid(), static_cast<pid_t>(c.pid), 0, q, q.arg[0]);
    named_buffer& b = buffers_.at(id);
    b.device = a;
    std::memcpy(b.device_uuid, uuid, sizeof uuid);
    b.redis_owner = c.pid;
    b.from_redis = true;
    redis_refs_.push_back({id, c.pid});
  } else {
    auto it = names_.find(key);
    if (it == names_.end() || buffers_.at(it->second).filling) return error("no such name");
    id = it->second;
    named_buffer& b = buffers_.at(id);
    if (c.op == "get") {
      ++b.refs;
      redis_refs_.push_back({id, c.pid});
    } else {  // delete: the pid's reference, else one that names no pid, else any of the plane's
      auto pick = redis_refs_.end();
      for (auto r = redis_refs_.begin(); r != redis_refs_.end(); ++r) {
        if (r->buffer != id) continue;
        if (c.pid != 0 && r->pid == c.pid) {
          pick = r;
          break;
        }
        if (pick == redis_refs_.end() || (r->pid == 0 && pick->pid != 0)) pick = r;
      }
      if (pick == redis_refs_.end()) return error("the control plane holds no reference to drop");
      const long dropped_pid = pick->pid;
      redis_refs_.erase(pick);
      if (b.refs > 0) --b.refs;
      // Redis's rule for what Redis made: at a refcount of zero the name and the memory go. A
      // buffer a client made keeps its name (only its owner or root unlinks it, through the socket).
      if (b.refs == 0 && b.from_redis) {
        names_.erase(it);
        b.unlinked = true;
      }
      if (dropped_pid != 0) unwatch_redis_pid_if_unused(dropped_pid);
    }
  }
  mirror_dirty_ = true;
  if (c.pid != 0 && c.op != "delete" && !watch_redis_pid(c.pid)) {
    on_redis_pid_exited(c.pid);  // it exited meanwhile (or cannot be watched): as if at once
    return error("pid " + std::to_string(c.pid) + " exited or cannot be watched: its reference was dropped");
  }
  named_buffer& b = buffers_.at(id);
  // The reply: the buffer as the mirror describes it (numbers and the shape as JSON, text quoted).
  std::string out = "{\"ok\":true,\"op\":" + json_string(c.op);
  for (const auto& [field, value] : redis_entry_of(b).fields) {
    const bool number = field == "bytes" || field == "owner_pid" || field == "refcount" || field == "shape" ||
                        (field == "device" && value != "cpu");
    if (field != "ctime") out += ",\"" + field + "\":" + (number ? value : json_string(value));
  }
  out += "}";
  if (b.refs == 0 && b.unlinked) free_buffer(id);
  return out;
}

// A buffer's hash in the mirror, without its mtime (the fields in the documented order; shape as
// JSON; a host buffer's device "cpu" and its ipc_handle empty).
redis_entry server::redis_entry_of(const named_buffer& b) {
  redis_entry e;
  e.name = b.name;
  const char* dtype = proto::dtype_name(static_cast<std::uint32_t>(b.dtype_ndim & 0xffff));
  std::string shape = "[";
  const std::size_t ndim = (b.dtype_ndim >> 16) & 0xffff;
  for (std::size_t d = 0; d < ndim && d < proto::k_max_dims; ++d) shape += (d ? ", " : "") + std::to_string(b.shape[d]);
  shape += "]";
  e.fields = {{"name", b.name},
              {"dtype", dtype != nullptr ? dtype : "u8"},
              {"shape", shape},
              {"device", b.fd < 0 ? std::to_string(b.device.device) : "cpu"},
              {"bytes", std::to_string(b.bytes)},
              {"ipc_handle", b.fd < 0 ? base64(b.device.mem_handle, sizeof b.device.mem_handle) : ""},
              {"owner_pid", std::to_string(b.redis_owner != 0 ? b.redis_owner : b.creator_pid)},
              {"refcount", std::to_string(b.refs)},
              {"ctime", seconds_text(b.ctime_ns)}};
  return e;
}

// The mirror brought up to date: each shared, named, filled buffer's hash written when it changed,
// each gone one's deleted. The first call after (re)connecting sends them all as one snapshot.
void server::sync_mirror(bool whole) {
  mirror_dirty_ = false;
  std::map<std::string, redis_entry> now;
  for (const auto& [id, b] : buffers_) {
    if (!b.shared || b.unlinked || b.filling || b.name == "cmd") continue;
    now.emplace(b.name, redis_entry_of(b));
  }
  std::vector<redis_entry> snapshot;
  for (auto& [name, e] : now) {
    auto it = mirrored_.find(name);
    if (it != mirrored_.end() && it->second.entry == e) continue;
    mirrored m{e, seconds_text(now_ns())};
    redis_entry out = e;
    out.fields.emplace_back("mtime", m.mtime);
    mirrored_[name] = std::move(m);
    if (whole)
      snapshot.push_back(std::move(out));
    else
      redis_->put(std::move(out));
  }
  for (auto it = mirrored_.begin(); it != mirrored_.end();) {
    if (now.count(it->first) != 0) {
      ++it;
      continue;
    }
    if (!whole) redis_->remove(it->first);
    it = mirrored_.erase(it);
  }
  if (whole) redis_->snapshot(std::move(snapshot));
}

// ---- channels (issue #15; channel_ring.h) ----

proto::reply server::create_channel(client& c, const proto::request& q, int* fd_out) {
  using proto::status;
  const auto key = name_key(c, q);
  if (channel_names_.count(key) != 0) return proto::make_reply(q, status::exists);
  const std::uint64_t capacity = q.arg[0];
  const auto readers = static_cast<std::uint32_t>(q.arg[1] & 0xff);
  const std::size_t bytes = channel::mapping_bytes(capacity);
  if (!within_quota(c, bytes)) return proto::make_reply(q, status::quota);
  const int fd = memfd_create(("poolshim-channel:" + key.second).c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  void* map = MAP_FAILED;
  if (fd >= 0 && ftruncate(fd, static_cast<off_t>(bytes)) == 0 &&
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0)
    map = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int dup = map != MAP_FAILED ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
  if (dup < 0) {
    if (map != MAP_FAILED) munmap(map, bytes);
    if (fd >= 0) close(fd);
    return proto::make_reply(q, status::no_memory);
  }
  auto* h = static_cast<channel::header*>(map);
  channel::init(h, capacity, readers);
  h->writer_pid = static_cast<std::uint32_t>(c.pid);
  h->writer.store(channel::writer_attached, std::memory_order_release);
  const std::uint64_t id = next_channel_++;
  channel_entry& e = channels_[id];
  e.name = key.second;
  e.shared = key.first == k_shared_namespace;
  e.uid = c.uid;
  e.fd = fd;
  e.map = map;
  e.bytes = bytes;
  e.refs = 1;
  e.capacity = capacity;
  e.max_readers = readers;
  channel_names_[key] = id;
  const channel_ref ref{next_ref_++, id, -1};
  c.channel_refs.push_back(ref);
  *fd_out = dup;
  log::debug("poolshimd: client {} (pid {}) created channel '{}' ({} bytes, {} readers at most)", c.id, c.pid, e.name,
             capacity, readers);
  proto::reply r = proto::make_reply(q, status::ok);
  r.val[0] = ref.id;
  return r;
}

proto::reply server::open_channel(client& c, const proto::request& q, int* fd_out) {
  using proto::status;
  auto it = channel_names_.find(name_key(c, q));
  if (it == channel_names_.end()) return proto::make_reply(q, status::not_found);
  channel_entry& e = channels_.at(it->second);
  auto* h = static_cast<channel::header*>(e.map);
  const std::uint32_t n = e.max_readers;
  std::uint32_t slot = n;
  for (std::uint32_t i = 0; i < n && slot == n; ++i)
    if (h->readers[i].state.load(std::memory_order_acquire) == channel::slot_free) slot = i;
  if (slot == n) return proto::make_reply(q, status::busy);
  const int dup = fcntl(e.fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return proto::make_reply(q, status::internal);
  channel::attach(h, slot, static_cast<std::uint32_t>(c.pid));
  ++e.refs;
  const channel_ref ref{next_ref_++, it->second, static_cast<int>(slot)};
  c.channel_refs.push_back(ref);
  *fd_out = dup;
  proto::reply r = proto::make_reply(q, status::ok);
  r.val[0] = ref.id;
  r.val[1] = slot;
  return r;
}

// A participant leaves (a close, or its process died): a reader's slot is freed (a writer waiting
// for it goes on), a writer marks the channel closed or dead (readers drain it, then are told) and
// takes the name with it; the buffers it held for its readers (sent by reference) stay with the
// channel, so that they can drain those too. The last one to leave frees the ring, and them.
void server::leave_channel(client& c, const channel_ref& r, bool died) {
  auto it = channels_.find(r.channel);
  if (it == channels_.end()) return;
  channel_entry& e = it->second;
  auto* h = static_cast<channel::header*>(e.map);
  if (r.slot < 0) {
    std::erase_if(c.refs, [&](const buffer_ref& b) {
      if (b.channel != r.channel) return false;
      e.kept.push_back(b.buffer);
      return true;
    });
    h->writer.store(died ? channel::writer_dead : channel::writer_closed, std::memory_order_release);
    channel::wake_readers(h);
    if (e.named) {
      channel_names_.erase({e.shared ? k_shared_namespace : std::uint64_t{e.uid}, e.name});
      e.named = false;
    }
  } else {
    channel::detach(h, static_cast<std::uint32_t>(r.slot));
  }
  if (died)
    log::info("poolshimd: a {} of channel '{}' died; the others were told", r.slot < 0 ? "writer" : "reader", e.name);
  if (--e.refs > 0) return;
  if (e.named) channel_names_.erase({e.shared ? k_shared_namespace : std::uint64_t{e.uid}, e.name});
  munmap(e.map, e.bytes);
  closer_->put(e.fd);
  const std::vector<std::uint64_t> kept = std::move(e.kept);
  channels_.erase(it);
  for (const std::uint64_t b : kept) drop_reference(b);
}

void server::leave_channels(client& c, bool died) {
  const std::vector<channel_ref> refs = std::move(c.channel_refs);
  c.channel_refs.clear();
  for (const channel_ref& r : refs) leave_channel(c, r, died);
}

}  // namespace poolshim::daemon

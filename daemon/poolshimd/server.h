// poolshimd's event loop: one thread, epoll over the listening socket, every client's socket and
// pidfd, and the metrics listener and its connections. A request is validated (protocol.h) before
// it is acted on; a bad one gets an error reply and one log line, and the client stays connected.
// A client's leases are its until its process has exited (its pidfd becomes readable) — a closed
// socket alone does not end them, since the process may still use what it mapped — or until it
// returns them.
//
// No client can hold the loop (issue #13): nothing on it blocks on a client's descriptor. A
// descriptor a client sends and the daemon does not keep is closed by a helper thread when closing
// it could block (a socket: its linger cleared first; anything but a memfd, a pipe or /dev/null);
// a client's socket is shut down and drained before it is closed; the metrics connections are
// non-blocking, each with its state in the poll set and a deadline, at most k_max_metrics at once.
// Connections are capped per uid, and one that holds nothing (no lease, no IPC registration) is
// closed after idle_timeout; refusals are logged once per interval with a count.
//
// Quotas (client_quota per process, uid_quota per uid) count what is held: pinned slabs, device
// memory, named buffers (for their owner uid, and their creating process while it lives), and
// returned slabs and freed named buffers the process may still hold (a memfd outlives the return
// or the free in any process that kept a descriptor or a mapping of it). A returned slab stops counting
// when its process exits, or when a look at /proc (that uid's processes' descriptors and mappings,
// at most once a second per uid, and only when a request would be refused) finds no one holding
// it. A re-declared slab must be one a daemon with this key lent (slab_identity.h) to this uid (its
// owner tag), not lent now and not returned here, and it counts like a lease. Per-client detail (client_stats, the
// metrics page's client lines) is for root and the client's own uid.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "poolshim/protocol.h"
#include "poolshimd/device_lender.h"
#include "poolshimd/job_thread.h"
#include "poolshimd/redis_plane.h"
#include "poolshimd/region.h"

namespace poolshim::daemon {

struct server_options {
  std::string socket_path;
  region_options region;
  std::uint64_t client_quota = 0;  // bytes lent to one client at most (0: no limit)
  std::uint64_t uid_quota = 0;     // bytes lent to one uid at most (0: no limit)
  std::uint64_t device_limit = 0;  // device bytes lent per device at most (0: no device lending)
  // The node's footprint bound on lent device memory: when a lease leaves more lent than this
  // percentage above what the clients hold in use (lent less what they report idle), the largest
  // idle holders are asked for the excess (at their next report). k_no_idle_bound or more: off.
  unsigned idle_percent = 5;
  static constexpr unsigned k_no_idle_bound = 1000;
  std::chrono::seconds idle_exit{0};      // exit after this long with no client and no lease (0: never)
  int metrics_port = 0;                   // Prometheus text on metrics_address:port (0: off)
  unsigned uid_connections = 64;          // open connections per uid at most (0: no limit)
  std::chrono::seconds idle_timeout{30};  // close a connection holding nothing after this (0: never)
  bool metrics_clients = false;           // per-client lines (pid, uid, bytes) on the metrics page
  std::string redis_url;                  // the Redis control plane (redis_plane.h); empty: off
  std::string redis_prefix = "tensor:";   // its keys: PREFIX<name> hashes, the PREFIX"cmd" list
  // The metrics port's IPv4 address (0.0.0.0: every interface, as in a pod; the default: this node).
  std::string metrics_address = "127.0.0.1";
  // How often, per uid, /proc is read at most to find returned slabs that no process holds any more
  // (only when a request would be refused): a client asking again and again costs the loop nothing.
  std::chrono::milliseconds proc_scan_interval{1000};
};

struct fill_results;

class server {
 public:
  explicit server(server_options o);  // throws std::runtime_error when it cannot listen
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Runs until stop() (from a signal handler: async-signal-safe) or the idle exit. Returns 0.
  int run();
  void stop() noexcept;

  // At most this many metrics connections are served at once; each gets this long in all.
  static constexpr int k_max_metrics = 16;
  static constexpr std::chrono::milliseconds k_metrics_deadline{2000};
  // A refused connection is logged at most once per this interval, with the count since the last.
  static constexpr std::chrono::seconds k_refusal_log_interval{10};

  // The handler without the event loop, for the handler fuzz harness
  // (tests/unit/daemon/poolshimd/handler_fuzz_test.cpp): a client of any pid and uid whose socket
  // is one end of a socketpair (the other end is returned), records fed straight to serve(), the
  // clock the harness's own. Not for production use.
  struct test_client {
    std::uint64_t id;
    int peer;  // the client's end of the socketpair (the caller closes it)
  };
  test_client test_connect(pid_t pid, uid_t uid);
  // One record from client `id` (gone: status internal, fd_in closed); a goodbye drops its socket.
  proto::reply test_record(std::uint64_t id, const void* rec, std::size_t len, int fd_in, int* fd_out);
  void test_advance(std::chrono::milliseconds d);  // the test clock moves on; the sweep runs
  void test_exit(std::uint64_t id);                // the client's process has exited
  proto::daemon_status test_status() const { return status_figures(); }
  std::uint64_t test_lent_by_clients() const;  // the pinned bytes every client's leases add up to

 private:
  struct lease {
    std::uint64_t id;
    int slab;                  // -1: device memory
    std::uint64_t handle = 0;  // device memory: the daemon's allocation handle
    std::uint64_t bytes = 0;   // device memory: its size
    int device = -1;           // device memory: the lender's device index
  };
  struct buffer_ref {
    std::uint64_t id;           // what the client names it by (buffer_close)
    std::uint64_t buffer;       // buffers_' key
    std::uint64_t channel = 0;  // a channel writer's hold on what it sent by reference: channels_' key
  };
  // A named buffer (issue #14): its memory a memfd of its own; all of them together take whole
  // slabs out of the region's budget.
  struct named_buffer {
    std::string name;
    bool shared = false;  // the shared namespace (any uid opens it), else its uid's
    uid_t uid = 0;        // the owner: its creator's uid (quotas, unlink)
    pid_t creator_pid = 0;
    std::uint64_t creator_client = 0;
    std::uint64_t bytes = 0, mapped = 0;  // asked; the memfd's size (a page multiple)
    std::uint64_t reserved = 0;           // bytes it counts against quotas (mapped)
    std::uint64_t kind_flags = 0, dtype_ndim = 0;
    std::array<std::uint64_t, proto::k_max_dims> shape{};
    int fd = -1;
    std::uint32_t refs = 0;
    bool unlinked = false;  // its name is gone; it goes with its last reference
    bool filling = false;   // the fill thread is on it: not open-able nor listed yet
    std::uint64_t ctime_ns = 0;
    device_lender::named_allocation device;  // a device buffer's memory and event (fd is -1)
    unsigned char device_uuid[16] = {};
    long redis_owner = 0;     // created by a Redis command naming this pid: its exit takes the name
    bool from_redis = false;  // created by a Redis command: freed when its refcount reaches zero
    dev_t dev = 0;            // a host buffer's memfd, as /proc shows it
    ino_t ino = 0;
    std::set<std::uint64_t> fd_clients;  // the clients it was handed to (they may keep it when it is freed)
  };
  struct retained_file {
    slab_id id;  // dev and ino: what /proc shows of it
    std::uint64_t bytes;
  };
  struct channel_ref {
    std::uint64_t id;       // what the client names it by (channel_close)
    std::uint64_t channel;  // channels_' key
    int slot;               // its reader slot; -1: the writer
  };
  // A channel (issue #15): a ring in a memfd of its own (channel_ring.h), mapped here too, so that
  // a participant's death is marked in it at once (its slot freed, or the writer dead).
  struct channel_entry {
    std::string name;
    bool shared = false;
    uid_t uid = 0;
    int fd = -1;
    void* map = nullptr;
    std::size_t bytes = 0;
    std::uint32_t refs = 0;
    bool named = true;             // the name goes with the writer
    std::uint64_t held_bytes = 0;  // buffers its writer holds for it (sent by reference, not yet passed)
    std::uint64_t capacity = 0;    // as created: the shared header's copy is every participant's to write
    std::uint32_t max_readers = 0;
    std::vector<std::uint64_t> kept;  // buffers a closed or dead writer held for readers: dropped with the ring
  };
  struct client {
    std::uint64_t id;
    int sock = -1;   // -1 once the socket closed (the process may still hold its leases)
    int pidfd = -1;  // readable when the process has exited
    pid_t pid = 0;
    uid_t uid = 0;
    std::vector<lease> leases;
    std::uint64_t lent_bytes = 0;    // pinned slabs
    std::uint64_t device_bytes = 0;  // device memory
    std::uint64_t bad_records = 0;
    std::chrono::steady_clock::time_point last_active{};  // the last record received
    std::uint64_t filling = 0;              // a create waiting for its fill (the job): its socket is not read
    std::vector<buffer_ref> refs;           // its references to named buffers
    std::vector<channel_ref> channel_refs;  // the channels it writes or reads
    std::vector<retained_file> retained;    // slabs it returned, named buffers freed, that it may still hold
    std::uint64_t retained_bytes = 0;       // their bytes
    std::uint64_t exports = 0;              // its IPC registrations
    // What it holds idle, as it last reported (return_idle with k_idle_report; at most what it was
    // lent, less what it took an ask for since), and what the daemon asks it to give back at its
    // next report (a refused lease_device, the node's idle bound, trim_clients).
    std::uint64_t idle_device = 0, idle_pinned = 0;
    std::uint64_t asked_device = 0, asked_pinned = 0;
    // When asked_device last went from 0 to more: an ask its report has not taken within
    // k_ask_expiry (a stopped or hung process, one that stopped reporting) no longer counts.
    std::chrono::steady_clock::time_point asked_since{};
    // What its last report took an ask for and it has not given back yet (its returns lower it).
    std::uint64_t giving_device = 0;
    std::chrono::steady_clock::time_point giving_since{};
    std::uint64_t taken_device = 0;  // what its last report took (giving_device before any return)
    // What it kept of the asks it took: memory it called idle and did not give back by its next
    // report. Its idle reports are believed only up to what it holds beyond this; a returned device
    // lease lowers both (so what it kept stays unbelieved until it has given back as much).
    std::uint64_t kept_device = 0;
  };
  struct metrics_conn {
    int fd = -1;
    std::chrono::steady_clock::time_point deadline{};
    std::string out;       // the response, once the request came
    std::size_t sent = 0;  // bytes of `out` sent
  };
  using clock = std::chrono::steady_clock;

  void accept_clients();
  void on_client_readable(client& c);
  void on_client_exited(std::uint64_t id);
  void drop_socket(client& c);
  void retire_socket(int s);      // shut down, drain (disposing of what was queued), close
  void dispose(int fd) noexcept;  // a received descriptor the daemon does not keep
  void refused(const char* why);  // counts a refused connection; logs once per interval
  void flush_refusals(clock::time_point now, bool force);
  void sweep(clock::time_point now);  // idle connections, metrics deadlines, a paused listener
  bool holds_nothing(const client& c) const;
  std::size_t uid_connections(uid_t uid) const;
  proto::reply serve(client& c, const unsigned char* buf, std::size_t len, int fd_in, int* fd_out, bool* goodbye);
  proto::reply handle(client& c, const proto::request& q, int fd_in, int* fd_out);
  clock::time_point now() const { return test_clock_ ? test_now_ : clock::now(); }
  void release_all(client& c);
  std::uint64_t uid_lent(uid_t uid) const;
  bool fits_quota(const client& c, std::uint64_t more) const;
  bool within_quota(client& c, std::uint64_t more);  // fits_quota, after letting go of what no one holds
  bool forget_unheld(uid_t uid);                     // true when a retained slab or named buffer stopped counting
  void retire(std::uint64_t serial);
  std::uint32_t pressure_mib() const;
  // A device lease of `bytes` was refused for want of memory: the idle device memory other clients
  // reported is asked back from them (every client's when needy is null), the largest holders
  // first, until `bytes` are covered, asks not yet taken included. Returns the bytes asked (0: no
  // one holds enough idle, waiting will not help).
  std::uint64_t ask_device_back(const client* needy, std::uint64_t bytes);
  // After a device lease: the node's footprint bound (server_options::idle_percent).
  void keep_node_idle_bound();
  // What a client's report of idle bytes is believed up to: what the daemon lent it (a client that
  // says more, by mistake or to make others wait for memory that never comes, is held to that).
  static std::uint64_t trusted_idle(std::uint64_t reported, std::uint64_t lent) noexcept {
    return reported < lent ? reported : lent;
  }
  // A healthy client takes an ask at its next report (POOLSHIM_IDLE_REPORT_MS, 100 ms): one that
  // has not after this long is not counted on, neither as memory on its way nor as a holder.
  static constexpr std::chrono::milliseconds k_ask_expiry{1000};
  void serve_metrics();
  void on_metrics_event(std::uint64_t id, std::uint32_t events);
  void end_metrics(std::uint64_t id, bool abort);
  proto::daemon_status status_figures() const;  // the stats reply's figures, also the metrics page's
  static proto::client_status client_figures(const client& c);
  std::string metrics_text() const;
  bool idle() const;

  // A small pooled block exported with cudaIpcGetMemHandle: the token the importer presents maps
  // to the real handle of the block's segment and the block's place in it, for the same uid only.
  // Dropped when the exporter frees the block (ipc_unregister) or exits.
  using token = std::array<std::uint8_t, proto::k_token_size>;
  struct ipc_export {
    std::uint64_t client;
    uid_t uid;
    std::array<std::uint8_t, proto::k_ipc_handle_size> handle;
    std::uint64_t offset, bytes;
  };

  void end_lease(client& c, const lease& l, bool retain);
  static constexpr std::uint64_t k_shared_namespace = ~std::uint64_t{0};
  static std::pair<std::uint64_t, std::string> name_key(const client& c, const proto::request& q);
  proto::reply create_buffer(client& c, const proto::request& q, int* fd_out);
  proto::reply create_device_buffer(client& c, const proto::request& q);
  std::uint64_t add_buffer(const std::pair<std::uint64_t, std::string>& key, uid_t uid, pid_t pid, std::uint64_t client,
                           const proto::request& q, std::uint64_t reserved);
  proto::reply open_buffer(client& c, const proto::request& q, int* fd_out);
  void drop_reference(std::uint64_t buffer);
  void end_buffer_ref(const buffer_ref& r);  // a channel's held bytes, then drop_reference
  void drop_references(client& c);
  void free_buffer(std::uint64_t id);
  bool resize_named(std::uint64_t total);
  void on_filled();
  // The Redis control plane (redis_plane.h): commands in, the mirror out.
  void on_redis();
  std::string run_redis_command(const redis_command& c);
  void sync_mirror(bool whole = false);
  static redis_entry redis_entry_of(const named_buffer& b);
  // A channel's figures as channel_list sends them (its shape the daemon's own; the rest read now).
  static proto::channel_entry listing_of(const channel_entry& ch);
  void on_redis_pid_exited(long pid);
  bool watch_redis_pid(long pid);
  void unwatch_redis_pid_if_unused(long pid);
  static constexpr std::size_t k_max_redis_pids = 4096;  // pids the Redis plane watches at most
  struct pending_fill {
    std::uint64_t client, buffer;
    proto::request request;
    std::uint64_t ref;
    int fd;  // the creator's descriptor, sent with the reply
  };

  server_options options_;
  slab_region region_;
  device_lender devices_;
  std::map<token, ipc_export> exports_;
  int listen_ = -1;
  int epoll_ = -1;
  int wake_ = -1;  // eventfd that stop() writes
  int metrics_ = -1;
  std::uint64_t next_client_ = 1;
  std::uint64_t next_lease_ = 1;
  std::map<std::uint64_t, std::unique_ptr<client>> clients_;
  std::chrono::steady_clock::time_point pressure_until_{};
  std::uint64_t refused_records_ = 0;
  std::uint64_t reclaimed_clients_ = 0;
  std::map<std::uint64_t, metrics_conn> metrics_conns_;
  std::uint64_t next_metrics_ = 1;
  std::uint64_t refused_connections_ = 0;  // in all (the metrics page)
  std::uint64_t refusals_unlogged_ = 0;    // since the last log line
  const char* last_refusal_ = "";
  clock::time_point refusal_logged_{};
  clock::time_point listen_paused_until_{};  // out of descriptors: accept again after this
  bool listen_paused_ = false;
  std::uint64_t idle_closed_ = 0;
  std::shared_ptr<job_thread<int>> closer_;  // closes descriptors whose close might block
  std::set<std::uint64_t> retired_;          // serials of slabs returned here: never re-declared
  std::deque<std::uint64_t> retired_order_;  // the oldest forgotten past k_max_retired
  std::map<uid_t, clock::time_point> scanned_;
  std::map<std::uint64_t, named_buffer> buffers_;
  std::map<std::pair<std::uint64_t, std::string>, std::uint64_t> names_;  // (uid or shared, name) -> buffer
  std::uint64_t next_buffer_ = 1;
  std::map<std::uint64_t, channel_entry> channels_;
  std::map<std::pair<std::uint64_t, std::string>, std::uint64_t> channel_names_;
  std::uint64_t next_channel_ = 1;
  proto::reply create_channel(client& c, const proto::request& q, int* fd_out);
  proto::reply open_channel(client& c, const proto::request& q, int* fd_out);
  void leave_channel(client& c, const channel_ref& r, bool died);
  void leave_channels(client& c, bool died);
  std::unique_ptr<redis_bridge> redis_;
  int redis_wake_ = -1;
  bool mirror_dirty_ = false;  // a named buffer changed since the mirror was last brought up to date
  struct mirrored {
    redis_entry entry;  // as last written, without its mtime
    std::string mtime;
  };
  std::map<std::string, mirrored> mirrored_;
  struct redis_ref {
    std::uint64_t buffer;
    long pid;  // 0: none named (only a delete drops it)
  };
  std::vector<redis_ref> redis_refs_;            // references the Redis plane holds
  std::map<long, int> redis_pidfds_;             // the pids they name, watched
  std::map<std::uint64_t, pending_fill> fills_;  // by fill job
  std::uint64_t next_fill_ = 1;
  int filled_ = -1;  // eventfd: the fill thread finished a job
  struct fill_job {
    std::uint64_t id;
    int fd;  // a duplicate, closed by the fill thread
    std::uint64_t bytes;
  };
  std::shared_ptr<job_thread<fill_job>> filler_;
  std::shared_ptr<fill_results> fill_results_;
  std::uint64_t named_total_ = 0;  // every named buffer\'s mapped bytes
  std::size_t named_slabs_ = 0;    // slabs reserved for them: named_total_ rounded up
  std::uint64_t next_ref_ = 1;
  bool test_clock_ = false;
  clock::time_point test_now_{};

 public:
  static constexpr std::size_t k_max_retired = std::size_t{1} << 18;
  static constexpr std::uint64_t k_max_exports = 65536;   // IPC registrations per client
  static constexpr std::size_t k_max_references = 65536;  // named buffers' references per client
};

}  // namespace poolshim::daemon

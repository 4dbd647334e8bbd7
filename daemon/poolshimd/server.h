// poolshimd's event loop: one thread, epoll over the listening socket, every client's socket and
// pidfd, and the metrics listener. A request is validated (protocol.h) before it is acted on; a
// bad one gets an error reply and one log line, and the client stays connected. A client's leases
// are its until its process has exited (its pidfd becomes readable) — a closed socket alone does
// not end them, since the process may still use what it mapped — or until it returns them.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "poolshim/protocol.h"
#include "poolshimd/device_lender.h"
#include "poolshimd/region.h"

namespace poolshim::daemon {

struct server_options {
  std::string socket_path;
  region_options region;
  std::uint64_t client_quota = 0;     // bytes lent to one client at most (0: no limit)
  std::uint64_t uid_quota = 0;        // bytes lent to one uid at most (0: no limit)
  std::uint64_t device_limit = 0;     // device bytes lent per device at most (0: no device lending)
  std::chrono::seconds idle_exit{0};  // exit after this long with no client and no lease (0: never)
  int metrics_port = 0;               // Prometheus text on 127.0.0.1:port (0: off)
};

class server {
 public:
  explicit server(server_options o);  // throws std::runtime_error when it cannot listen
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Runs until stop() (from a signal handler: async-signal-safe) or the idle exit. Returns 0.
  int run();
  void stop() noexcept;

 private:
  struct lease {
    std::uint64_t id;
    int slab;                  // -1: device memory
    std::uint64_t handle = 0;  // device memory: the daemon's allocation handle
    std::uint64_t bytes = 0;   // device memory: its size
    int device = -1;           // device memory: the lender's device index
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
  };

  void accept_clients();
  void on_client_readable(client& c);
  void on_client_exited(std::uint64_t id);
  void drop_socket(client& c);
  proto::reply handle(client& c, const proto::request& q, int fd_in, int* fd_out);
  void release_all(client& c);
  std::uint64_t uid_lent(uid_t uid) const;
  std::uint32_t pressure_mib() const;
  void serve_metrics();
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

  void end_lease(client& c, const lease& l);

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
};

}  // namespace poolshim::daemon

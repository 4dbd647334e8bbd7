// The daemon's figures for poolshim-stats, asked the way `poolshimd --status` asks them (the same
// protocol library, the client's trust checks first: the socket's directory, then the peer). It
// never fails the caller: when no trusted daemon answers, `answered` is false and `why` says why.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace poolshim::stats_tool {

struct daemon_client_figures {
  std::uint64_t pid = 0, uid = 0, lent_bytes = 0, leases = 0, device_bytes = 0;
};

struct daemon_figures {
  bool answered = false;
  std::string socket;  // the path asked
  std::string why;     // when not answered
  std::uint64_t region_bytes = 0, lent_bytes = 0, free_bytes = 0, clients = 0, leases = 0, reclaimed_slabs = 0,
                device_lent_bytes = 0;
  std::vector<daemon_client_figures> per_client;  // this query's own connection left out
};

// SOCKET: empty for the default path (POOLSHIM_SOCKET, else the standard places). Waits at most
// about two seconds for a daemon that accepts but does not answer.
daemon_figures query_daemon(const std::string& socket);

}  // namespace poolshim::stats_tool

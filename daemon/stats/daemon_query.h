// The daemon's figures for poolshim-stats, asked the way `poolshimd --status` asks them (the same
// protocol library, the client's trust checks first: the socket's directory, then the peer). It
// never fails the caller: when no trusted daemon answers, `answered` is false and `why` says why.
#pragma once

#include <string>
#include <vector>

#include "poolshim/protocol.h"

namespace poolshim::stats_tool {

using daemon_client_figures = proto::client_status;

struct daemon_figures {
  bool answered = false;
  std::string socket;           // the path asked
  std::string why;              // when not answered
  proto::daemon_status status;  // decoded from the stats reply; clients: this query's connection left out
  std::vector<daemon_client_figures> per_client;  // this query's own connection left out
  std::vector<proto::buffer_entry> buffers;       // the named buffers this uid may see
  std::vector<proto::channel_entry> channels;     // the channels this uid may see
};

// SOCKET: empty for the default path (POOLSHIM_SOCKET, read from the shim's option table, else the
// standard places). Waits at most about two seconds for a daemon that accepts but does not answer.
daemon_figures query_daemon(const std::string& socket);

}  // namespace poolshim::stats_tool

// The daemon's figures (daemon_query.h), as poolshimd --status asks them.
#include "stats/daemon_query.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "poolshim/config.h"
#include "poolshim/protocol.h"
#include "poolshim/transport.h"

namespace poolshim::stats_tool {

daemon_figures query_daemon(const std::string& socket) {
  namespace proto = poolshim::proto;
  daemon_figures d;
  d.socket = socket.empty() ? proto::socket_path(opt::read_one(&config::socket)) : socket;
  std::string why;
  if (!proto::trusted_directory(d.socket, getuid(), &why)) {
    d.why = "not trusting " + d.socket + ": " + why;
    return d;
  }
  const int s = proto::connect_seqpacket(d.socket, &why);
  if (s < 0) {
    d.why = why;
    return d;
  }
  if (!proto::trusted_peer(s, getuid(), &why)) {
    d.why = why;
    close(s);
    return d;
  }
  // A daemon that accepts and then hangs must not hang the tool.
  timeval limit{2, 0};
  (void)setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  (void)setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  std::uint32_t seq = 0;
  auto ask = [&](proto::op o, std::uint64_t arg0, proto::reply* r) {
    proto::request q = proto::make_request(o, ++seq);
    q.arg[0] = arg0;
    return proto::exchange(s, q, -1, r, nullptr) == proto::exchange_status::ok &&
           r->status == static_cast<std::int32_t>(proto::status::ok);
  };
  proto::reply r{};
  if (!ask(proto::op::stats, 0, &r)) {
    d.why = "the daemon on " + d.socket + " did not answer";
    close(s);
    return d;
  }
  d.answered = true;
  d.status = proto::decode_status(r);
  if (d.status.clients > 0) --d.status.clients;  // this query is a client too
  for (std::uint64_t i = 0; i < 4096 && ask(proto::op::client_stats, i, &r); ++i) {
    const proto::client_status c = proto::decode_client_status(r);
    if (c.pid != static_cast<std::uint64_t>(getpid())) d.per_client.push_back(c);
  }
  for (std::uint64_t i = 0; i < 65536 && ask(proto::op::buffer_list, i, &r); ++i)
    d.buffers.push_back(proto::decode_buffer_entry(r));
  for (std::uint64_t i = 0; i < 65536 && ask(proto::op::channel_list, i, &r); ++i)
    d.channels.push_back(proto::decode_channel_entry(r));
  close(s);
  return d;
}

}  // namespace poolshim::stats_tool

// The shim's connection to poolshimd: lazy (the first slab asks), checked before a byte is sent
// (transport.h: the socket directory, then the peer's uid), failing open (no trusted daemon, or a
// daemon that died: the callers use local sources; what was mapped stays valid), reconnecting after
// a pause and then re-declaring every slab still held, so a restarted daemon accounts for it. While
// slabs are held, a small watcher thread (started at the first connection, all signals blocked)
// notices a daemon that hung up and reconnects and re-declares within about a second, even when
// the program makes no further request; it only takes the mutex when it is free. A fork child
// drops the inherited connection and starts afresh; the parent's leases stay the parent's. One
// connection per process, one request at a time (a mutex; never on the hit path).
#pragma once

#include <cstddef>
#include <cstdint>

#include "poolshim/poolshim.h"

namespace poolshim::daemon_client {

struct slab_lease {
  int fd;               // the slab's memfd, owned by the caller until return_slab
  std::size_t bytes;    // the daemon's slab size (>= what was asked)
  std::uint64_t token;  // stable for the life of the slab in this process, across daemon restarts
};

// A slab of at least `bytes`: true with *out filled, or false (no trusted daemon, too big, quota,
// region full): then the caller makes a local slab.
bool lease_slab(std::size_t bytes, slab_lease* out) noexcept;
// The slab goes back (the caller has unmapped it); closes the fd.
void return_slab(const slab_lease& lease) noexcept;
// MiB the daemon asked its clients to give back from idle caches in its last reply (0: none).
std::uint32_t pressure_mib() noexcept;
// Asks the daemon whether it wants idle memory back, at most once a second (a time check
// otherwise); true when it does. Called where pinned memory becomes idle (a pooled free).
bool daemon_wants_memory() noexcept;

// poolshim IPC (small pooled blocks): the daemon maps a random token to the real handle of the
// block's segment and the block's place in it, for processes of the same uid. False when no
// trusted daemon answers or it refuses.
bool ipc_register(const unsigned char (&real_handle)[64], std::uint64_t offset, std::uint64_t bytes,
                  unsigned char (&token)[16]) noexcept;
bool ipc_resolve(const unsigned char (&token)[16], unsigned char (&real_handle)[64], std::uint64_t* offset,
                 std::uint64_t* bytes) noexcept;
void ipc_unregister(const unsigned char (&token)[16]) noexcept;

// Device memory from the daemon (VMM): a POSIX-fd allocation handle of `bytes` on the device with
// this UUID. False when there is no daemon, device lending is off there, or it refuses.
struct device_lease {
  int fd;  // the caller imports and closes it
  std::size_t bytes;
  std::uint64_t id;
};
// *reclaiming (when given): on a refusal for want of memory, the idle bytes the daemon asked other
// clients to give back for this request (0: none; retrying will not help).
bool lease_device(const unsigned char (&uuid)[16], std::size_t bytes, device_lease* out,
                  std::uint64_t* reclaiming = nullptr) noexcept;
void return_device(std::uint64_t id) noexcept;

// Idle memory flowing back (issue #17): tells a connected daemon what this process holds idle
// and takes what it asks back, device and pinned bytes (UINT64_MAX: everything idle). Never
// connects (a process the daemon never served has nothing of it to give back) and never waits
// for a request in flight (false then, as without a connection).
struct idle_request {
  std::uint64_t device = 0;
  std::uint64_t pinned = 0;
};
bool report_idle(std::uint64_t idle_device, std::uint64_t idle_pinned, idle_request* asked) noexcept;

// What the client did since process start: the DAEMON rows of POOLSHIM_COUNTER_TABLE
// (include/poolshim/poolshim.h), by their `from` names (what each counts is said there).
#define POOLSHIM_DAEMON_FIGURES(X)                                                                                   \
  POOLSHIM_COUNTER_TABLE(POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_SKIP, \
                         POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_SKIP, X)
struct figures {
#define POOLSHIM_DAEMON_FIGURE(field, from, ...) std::uint64_t from = 0;
  POOLSHIM_DAEMON_FIGURES(POOLSHIM_DAEMON_FIGURE)
#undef POOLSHIM_DAEMON_FIGURE
};
figures get_figures() noexcept;

}  // namespace poolshim::daemon_client

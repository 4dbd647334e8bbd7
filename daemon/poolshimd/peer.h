// The process behind a client's connection, as a pidfd (issue #13, finding 16): between reading
// the peer's pid (SO_PEERCRED) and opening a pidfd for it, the process may exit and its pid be
// given to another, whose exit would then end the first one's leases, or whose life would keep
// them. SO_PEERPIDFD (Linux 6.5) gives the pidfd of the very process that connected, no window.
// Older kernels: pidfd_open(pid), kept only when the process with that pid started no later than
// the connection was accepted and is the same before and after the open (its start time); a pid
// reused between the connect and the accept is not caught there (the window is narrowed, not
// closed).
#pragma once

#include <sys/types.h>

namespace poolshim::daemon {

// Clock ticks (sysconf(_SC_CLK_TCK)) since boot: what /proc/PID/stat's start time counts.
unsigned long long boot_ticks() noexcept;
// The start time of process `pid` in those ticks, or 0 when there is none.
unsigned long long start_ticks(pid_t pid) noexcept;

// A pidfd for the peer of `sock` (pid from SO_PEERCRED), or -1 with errno (ESRCH: gone, or its pid
// was reused). accepted_at: boot_ticks() when the connection was accepted. use_peerpidfd false:
// the older kernels' way only (tests).
int peer_pidfd(int sock, pid_t pid, unsigned long long accepted_at, bool use_peerpidfd = true) noexcept;

}  // namespace poolshim::daemon

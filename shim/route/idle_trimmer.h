// Idle memory flows back (issue #17): one small thread per process gives pool memory nobody needs
// back to the driver or to poolshimd — unasked, what stayed idle through a whole
// POOLSHIM_IDLE_RELEASE_MS window; asked, what the daemon wants back for another process (reported
// and answered every POOLSHIM_IDLE_REPORT_MS while connected) — and only whole free segments and
// slabs, never one with a block in use or a block whose fence has not passed.
#pragma once

#include <cstddef>

namespace poolshim::idle_trimmer {

// Starts the thread once per process (a fork child starts its own at its next pool); cheap after
// the first call. Nothing starts when neither the idle release nor a daemon can need it.
void start() noexcept;

}  // namespace poolshim::idle_trimmer

// Process-wide state every layer may read: the mode and the configuration (read once), and the
// once-only notes about other interposers. Leaky by design: nothing here is ever destroyed, so
// static destructors of the host program may still call CUDA. What happens at load, first CUDA
// call, fork and exit is the top layer's (dispatch/lifecycle.h); this file knows no layer above.
#pragma once

#include "poolshim/config.h"

namespace poolshim::base {

// POOLSHIM_MODE, read on first use (getenv only: safe inside dlsym and before our constructor).
run_mode mode() noexcept;
inline bool tracking() noexcept { return mode() != run_mode::off; }

// The whole configuration, read once; a bad value is reported once (write(2), so even from a
// static constructor that runs before ours).
const config& current_config() noexcept;
// POOLSHIM_STATS asks for call-site statistics (native or python frames).
bool stats_requested() noexcept;

// Another library hooks what we hook. Noting is safe inside dlsym (one atomic or); reporting logs
// each kind once and must not run inside dlsym.
enum class interposer : unsigned {
  dlsym = 1u << 0,             // the process resolves `dlsym` to someone else's
  get_proc_address = 1u << 1,  // cuGetProcAddress[_v2] is not the driver's (already wrapped)
  driver_symbol = 1u << 2,     // a hooked cu* name found outside libcuda
};
void note_interposer(interposer kind) noexcept;
void report_interposers() noexcept;
const char* interposer_text(interposer kind) noexcept;

}  // namespace poolshim::base

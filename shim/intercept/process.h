// The shim's process-wide life: the mode, what happens at load, on the first CUDA call, in a fork
// child and at exit, and the once-only reports about other interposers. Leaky by design: nothing
// here is ever destroyed, so static destructors of the host program may still call CUDA.
#pragma once

#include "poolshim/config.h"

namespace poolshim {
struct real_driver;
}

namespace poolshim::intercept {

// POOLSHIM_MODE, read on first use (getenv only: safe inside dlsym and before our constructor).
run_mode mode() noexcept;
inline bool tracking() noexcept { return mode() != run_mode::off; }

// The whole configuration, read once; a bad value is reported once (write(2), so even from a
// static constructor that runs before ours).
const config& current_config() noexcept;

// libpoolshim.so's constructor: finds the real dlsym and reads the configuration. Nothing else:
// the shim stays inert (no socket, no file, no thread) until the first CUDA call.
void on_load() noexcept;

// libpoolshim.so's destructor: the POOLSHIM_SUMMARY line if CUDA was used (write(2) only).
void on_unload() noexcept;

// The first CUDA call resolved the real driver: registers the fork handler and looks for other
// interposers.
void on_driver_resolved(const real_driver& driver) noexcept;

// Another library hooks what we hook. Noting is safe inside dlsym (one atomic or); reporting logs
// each kind once and must not run inside dlsym.
enum class interposer : unsigned {
  dlsym = 1u << 0,             // the process resolves `dlsym` to someone else's
  get_proc_address = 1u << 1,  // cuGetProcAddress[_v2] is not the driver's (already wrapped)
  driver_symbol = 1u << 2,     // a hooked cu* name found outside libcuda
};
void note_interposer(interposer kind) noexcept;
void report_interposers() noexcept;

// Fork child: counters, re-entry depth and logger start afresh (pthread_atfork).
void after_fork_in_child() noexcept;

}  // namespace poolshim::intercept

// The shim's life in the process: what happens at load, on the first CUDA call, in a fork child and
// at exit. The top layer: it reaches every part (pools, stats, counters) to start, reset or report.
#pragma once

namespace poolshim {
struct real_driver;
}

namespace poolshim::dispatch {

// libpoolshim.so's constructor: finds the real dlsym and reads the configuration. Nothing else:
// the shim stays inert (no socket, no file, no thread) until the first CUDA call.
void on_load() noexcept;

// libpoolshim.so's destructor: the stats file's final figures and the POOLSHIM_SUMMARY line if CUDA
// was used (write(2) only).
void on_unload() noexcept;

// Fork child: counters, re-entry depth and logger start afresh (pthread_atfork).
void after_fork_in_child() noexcept;

}  // namespace poolshim::dispatch

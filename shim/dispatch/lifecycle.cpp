// The shim's life in the process (lifecycle.h). Code here runs in static constructors, in a fork
// child and at exit: write(2) for anything that must print there, spdlog only from the
// first-CUDA-call path (on_driver_resolved).
#include "dispatch/lifecycle.h"

#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

#include <cstdio>

#include "base/log.h"
#include "base/process.h"
#include "base/real_driver.h"
#include "base/reentry_guard.h"
#include "dispatch/summary.h"
#include "intercept/counters.h"
#include "intercept/hook_list.h"
#include "route/device_router.h"
#include "stats/recorder.h"

namespace poolshim::dispatch {
namespace {

// A device pool took a segment from its source or gave one back: the statistics' segment events.
void note_segment(int device, std::uintptr_t base, std::size_t bytes, bool taken) noexcept {
  stats::record_segment(device, base, bytes, taken);
}

// At exit, for a process that loaded the CUDA driver although no CUDA call ever reached the shim:
// if another library's dlsym stands ahead of ours, that is why, and the user should hear it rather
// than get an empty summary. write(2) only (exit path); POOLSHIM_LOG_LEVEL above warn silences it.
void explain_silence() noexcept {
  if (!base::tracking() || base::current_config().log_level > 3) return;
  void* cuda = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
  if (cuda == nullptr) return;  // not a CUDA program: say nothing (shells, tools)
  dlclose(cuda);
  void* resolved = real_dlsym()(RTLD_DEFAULT, "dlsym");
  if (resolved == nullptr || resolved == reinterpret_cast<void*>(&::dlsym)) return;
  char line[96];
  int n = std::snprintf(line, sizeof line, "poolshim[%d] warning: ", static_cast<int>(getpid()));
  if (n <= 0) return;
  log::write_raw(line);
  log::write_raw(base::interposer_text(base::interposer::dlsym));
  log::write_raw("; no CUDA call reached poolshim\n");
}

}  // namespace

void on_load() noexcept {
  (void)real_dlsym();
  (void)base::current_config();
}

void on_unload() noexcept {
  if (real_driver::peek() == nullptr) {  // no CUDA call reached the shim
    explain_silence();
    return;
  }
  mirror_pool_figures();
  stats::record_exit();
  if (!base::current_config().summary) return;
  char line[512];
  std::size_t n = format_summary(line, sizeof line);
  if (n) log::write_raw(line);
}

void after_fork_in_child() noexcept {
  intercept::reset_counters();
  base::reset_reentry_guard_after_fork();
  log::reset_after_fork();
}

}  // namespace poolshim::dispatch

namespace poolshim {

// The first CUDA call resolved the real driver (base/real_driver.cpp calls this weak-bound hook):
// registers the fork handler and looks for other interposers.
void on_driver_resolved(const real_driver& driver) noexcept {
  (void)base::current_config();
  if (!base::tracking()) return;  // off: pure passthrough, nothing registered, nothing logged
  pthread_atfork(nullptr, nullptr, [] { dispatch::after_fork_in_child(); });
  // With call-site statistics on, the pools made from now on report their segments (memory_viz).
  if (base::stats_requested()) device_router::set_segment_listener(&dispatch::note_segment);
  // The process's `dlsym` must be ours, or runtime lookups bypass us.
  void* resolved = real_dlsym()(RTLD_DEFAULT, "dlsym");
  if (resolved != nullptr && resolved != reinterpret_cast<void*>(&::dlsym))
    base::note_interposer(base::interposer::dlsym);
  // So must an exported cuGetProcAddress_v2 that -lcuda programs bind to.
  void* gpa = real_dlsym()(RTLD_DEFAULT, "cuGetProcAddress_v2");
  void* ours = intercept::k_hook_wrappers[static_cast<unsigned>(intercept::hook_id::get_proc_address_v2)];
  if (gpa != nullptr && ours != nullptr && gpa != ours && gpa != reinterpret_cast<void*>(driver.cuGetProcAddress_v2))
    base::note_interposer(base::interposer::get_proc_address);
  POOLSHIM_LOG_DEBUG("driver resolved: libcuda.so.1 {}, mode {}", driver.loaded ? "loaded" : "not found",
                     base::mode() == run_mode::pool ? "pool" : "observe");
  base::report_interposers();
}

}  // namespace poolshim

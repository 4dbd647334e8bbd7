// The shim's process-wide life (process.h): mode and configuration, load, first CUDA call, fork,
// exit, and other interposers. Code here may run inside dlsym, in static constructors of other
// libraries before our own constructor, in a fork child and at exit: write(2) for anything that
// must print there, spdlog only from the first-CUDA-call path.
#include "intercept/process.h"
#include "stats/recorder.h"

#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>

#include "intercept/counters.h"
#include "intercept/hook_list.h"
#include "intercept/real_driver.h"
#include "intercept/reentry_guard.h"
#include "log.h"

namespace poolshim::intercept {

constinit thread_local int t_hook_depth __attribute__((tls_model("initial-exec"))) = 0;

namespace {

constexpr int k_mode_unread = -1;
std::atomic<int> g_mode{k_mode_unread};
std::atomic<unsigned> g_interposers_noted{0};
std::atomic<unsigned> g_interposers_reported{0};

void write_text(const char* s) noexcept { log::write_raw(s); }

void report_config_issue(const config_issue& issue) noexcept {
  write_text("poolshim: warning: ignoring ");
  write_text(issue.env);
  write_text("='");
  write_text(issue.value);
  write_text("' (not a valid value); using the default\n");
}

const char* interposer_text(interposer kind) noexcept {
  switch (kind) {
    case interposer::dlsym:
      return "another library interposes dlsym ahead of poolshim: lookups it answers itself are not "
             "seen by poolshim";
    case interposer::get_proc_address:
      return "cuGetProcAddress is already wrapped by another library: poolshim wraps what that "
             "wrapper hands out only where it recognises the driver's own entry points";
    case interposer::driver_symbol:
      return "a hooked CUDA driver symbol is provided by a library other than libcuda; calls "
             "through it are not intercepted";
  }
  return "another interposer is present";
}

}  // namespace

run_mode mode() noexcept {
  int m = g_mode.load(std::memory_order_relaxed);
  if (m == k_mode_unread) [[unlikely]] {
    // Before our constructor ran (another library's constructor, or dlsym): getenv only, and
    // idempotent, so a race stores the same value twice.
    m = static_cast<int>(read_config(nullptr).mode);
    g_mode.store(m, std::memory_order_relaxed);
  }
  return static_cast<run_mode>(m);
}

const config& current_config() noexcept {
  static const config c = [] {
    config read = read_config(report_config_issue);
    g_mode.store(static_cast<int>(read.mode), std::memory_order_relaxed);
    return read;
  }();
  return c;
}

void on_load() noexcept {
  (void)real_dlsym();
  (void)current_config();
}

// At exit, for a process that loaded the CUDA driver although no CUDA call ever reached the shim:
// if another library's dlsym stands ahead of ours, that is why, and the user should hear it rather
// than get an empty summary. write(2) only (exit path); POOLSHIM_LOG_LEVEL above warn silences it.
void explain_silence() noexcept {
  if (!tracking() || current_config().log_level > 3) return;
  void* cuda = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
  if (cuda == nullptr) return;  // not a CUDA program: say nothing (shells, tools)
  dlclose(cuda);
  void* resolved = real_dlsym()(RTLD_DEFAULT, "dlsym");
  if (resolved == nullptr || resolved == reinterpret_cast<void*>(&::dlsym)) return;
  char line[96];
  int n = std::snprintf(line, sizeof line, "poolshim[%d] warning: ", static_cast<int>(getpid()));
  if (n <= 0) return;
  write_text(line);
  write_text(interposer_text(interposer::dlsym));
  write_text("; no CUDA call reached poolshim\n");
}

void on_unload() noexcept {
  if (real_driver::peek() == nullptr) {  // no CUDA call reached the shim
    explain_silence();
    return;
  }
  mirror_pool_figures();
  stats::record_exit();
  if (!current_config().summary) return;
  char line[512];
  std::size_t n = format_summary(line, sizeof line);
  if (n) log::write_raw(line);
}

void after_fork_in_child() noexcept {
  reset_counters();
  reset_reentry_guard_after_fork();
  log::reset_after_fork();
}

void on_driver_resolved(const real_driver& driver) noexcept {
  (void)current_config();
  if (!tracking()) return;  // off: pure passthrough, nothing registered, nothing logged
  pthread_atfork(nullptr, nullptr, [] { after_fork_in_child(); });
  // The process's `dlsym` must be ours, or runtime lookups bypass us.
  void* resolved = real_dlsym()(RTLD_DEFAULT, "dlsym");
  if (resolved != nullptr && resolved != reinterpret_cast<void*>(&::dlsym)) note_interposer(interposer::dlsym);
  // So must an exported cuGetProcAddress_v2 that -lcuda programs bind to.
  void* gpa = real_dlsym()(RTLD_DEFAULT, "cuGetProcAddress_v2");
  void* ours = k_hook_wrappers[static_cast<unsigned>(hook_id::get_proc_address_v2)];
  if (gpa != nullptr && ours != nullptr && gpa != ours && gpa != reinterpret_cast<void*>(driver.cuGetProcAddress_v2))
    note_interposer(interposer::get_proc_address);
  POOLSHIM_LOG_DEBUG("driver resolved: libcuda.so.1 {}, mode {}", driver.loaded ? "loaded" : "not found",
                     mode() == run_mode::pool ? "pool" : "observe");
  report_interposers();
}

void note_interposer(interposer kind) noexcept {
  g_interposers_noted.fetch_or(static_cast<unsigned>(kind), std::memory_order_relaxed);
}

void report_interposers() noexcept {
  unsigned noted = g_interposers_noted.load(std::memory_order_relaxed);
  unsigned fresh = noted & ~g_interposers_reported.fetch_or(noted, std::memory_order_relaxed);
  for (unsigned bit = 1; fresh != 0; bit <<= 1) {
    if ((fresh & bit) == 0) continue;
    fresh &= ~bit;
    POOLSHIM_LOG_WARN("{}", interposer_text(static_cast<interposer>(bit)));
  }
}

}  // namespace poolshim::intercept

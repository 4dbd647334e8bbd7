// Process-wide state (process.h): mode and configuration, and other interposers. Code here may run
// inside dlsym and in static constructors of other libraries before our own constructor: write(2)
// for the configuration warnings (opt::warn_raw), spdlog only for the interposer report
// (first-CUDA-call path).
#include "base/process.h"

#include <atomic>
#include <cstring>

#include "base/log.h"
#include "base/reentry_guard.h"

namespace poolshim::base {

constinit thread_local int t_hook_depth __attribute__((tls_model("initial-exec"))) = 0;

namespace {

constexpr int k_mode_unread = -1;
std::atomic<int> g_mode{k_mode_unread};
std::atomic<unsigned> g_interposers_noted{0};
std::atomic<unsigned> g_interposers_reported{0};

}  // namespace

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

bool stats_requested() noexcept {
  const char* s = current_config().stats;
  return s != nullptr && (std::strcmp(s, "native") == 0 || std::strcmp(s, "python") == 0);
}

const config& current_config() noexcept {
  static const config c = [] {
    // The one warning of every option table (options.h): write(2), so even from a static
    // constructor that runs before ours.
    config read = read_config(opt::warn_raw);
    g_mode.store(static_cast<int>(read.mode), std::memory_order_relaxed);
    return read;
  }();
  return c;
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

}  // namespace poolshim::base

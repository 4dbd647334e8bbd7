// The shim's logger (log.h): a spdlog logger (poolshim/log_sink.h, where spdlog is compiled, once
// for the shim and poolshimd) whose sink writes each line with one write(2), so a line is never
// split between threads or processes and no FILE lock is taken. Messages are formatted from log.h's
// type-erased arguments into a fixed buffer (poolshim/log_format.h): no allocation before spdlog's.
#include "base/log.h"

#include <atomic>
#include <cstring>

#include "base/process.h"
#include "poolshim/log_sink.h"
#include "poolshim/options.h"

namespace poolshim::log {
namespace {

std::atomic<log_sink::logger*> g_logger{nullptr};

[[gnu::noinline]] log_sink::logger* make_logger() noexcept {
  int lv = base::current_config().log_level;  // 0 trace ... 6 off, as spdlog counts
  log_sink::logger* fresh = log_sink::create("poolshim", "poolshim[%P] %l: %v", lv, log_sink::output::stderr_write);
  if (fresh == nullptr) return nullptr;
  log_sink::logger* expected = nullptr;
  if (g_logger.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)) return fresh;
  log_sink::destroy(fresh);  // another thread's won
  return expected;
}

log_sink::logger* logger() noexcept {
  log_sink::logger* l = g_logger.load(std::memory_order_acquire);
  if (l == nullptr) [[unlikely]]
    l = make_logger();
  return l;
}

}  // namespace

bool enabled(level lv) noexcept { return static_cast<int>(lv) >= base::current_config().log_level && lv != level::off; }

void emit(level lv, const char* text, const arg* args, std::size_t n) noexcept {
  char line[1024];
  const std::size_t len = log_format::format(line, sizeof line, text, args, n);
  log_sink::log(logger(), static_cast<int>(lv), line, len);  // never throws
}

void write_raw(const char* text) noexcept { opt::write_fd(2, text, std::strlen(text)); }

void reset_after_fork() noexcept {
  // The old logger is leaked on purpose: its mutex may be held by a thread the child lacks.
  g_logger.store(nullptr, std::memory_order_release);
}

}  // namespace poolshim::log

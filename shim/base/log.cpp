// The shim's logger (log.h): the only file that compiles spdlog. A spdlog logger over a sink that
// formats into spdlog's buffer and writes it with one write(2), so a line is never split between
// threads or processes and no FILE lock is taken. Messages are formatted from log.h's type-erased
// arguments into a fixed buffer (poolshim/log_format.h): no allocation before spdlog's own.
#include "base/log.h"

#include <spdlog/details/log_msg.h>
#include <spdlog/logger.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>

#include <cstring>
#include <memory>
#include <mutex>

#include "base/process.h"
#include "poolshim/options.h"

namespace poolshim::log {
namespace {

class stderr_write_sink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    opt::write_fd(2, buf.data(), buf.size());
  }
  void flush_() override {}
};

std::atomic<spdlog::logger*> g_logger{nullptr};

[[gnu::noinline]] spdlog::logger* make_logger() noexcept {
  try {
    auto* fresh = new spdlog::logger("poolshim", std::make_shared<stderr_write_sink>());
    fresh->set_pattern("poolshim[%P] %l: %v");
    int lv = base::current_config().log_level;  // 0 trace ... 6 off, as spdlog counts
    fresh->set_level(static_cast<spdlog::level::level_enum>(lv));
    spdlog::logger* expected = nullptr;
    if (g_logger.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)) return fresh;
    delete fresh;
    return expected;
  } catch (...) {
    return nullptr;
  }
}

spdlog::logger* logger() noexcept {
  spdlog::logger* l = g_logger.load(std::memory_order_acquire);
  if (l == nullptr) [[unlikely]]
    l = make_logger();
  return l;
}

}  // namespace

bool enabled(level lv) noexcept { return static_cast<int>(lv) >= base::current_config().log_level && lv != level::off; }

void emit(level lv, const char* text, const arg* args, std::size_t n) noexcept {
  char line[1024];
  const std::size_t len = log_format::format(line, sizeof line, text, args, n);
  // spdlog does not throw from a log call with a valid format string, but a sink could; the shim
  // never lets an exception out of a hook.
  try {
    if (spdlog::logger* l = logger())
      l->log(static_cast<spdlog::level::level_enum>(lv), spdlog::string_view_t(line, len));
  } catch (...) {
  }
}

void write_raw(const char* text) noexcept { opt::write_fd(2, text, std::strlen(text)); }

void reset_after_fork() noexcept {
  // The old logger is leaked on purpose: its mutex may be held by a thread the child lacks.
  g_logger.store(nullptr, std::memory_order_release);
}

}  // namespace poolshim::log

// spdlog, compiled once (header-only, with fmt; the definitions are set on this file alone in
// daemon/CMakeLists.txt) for the shim and poolshimd: include/poolshim/log_sink.h.
#include "poolshim/log_sink.h"

#include <spdlog/details/log_msg.h>
#include <spdlog/logger.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <mutex>

#include "poolshim/options.h"

namespace poolshim::log_sink {
namespace {

// log_sink::logger stays an incomplete type: a handle is a spdlog::logger's address, converted
// there and back (never dereferenced as a log_sink::logger).
spdlog::logger* sp(logger* l) { return reinterpret_cast<spdlog::logger*>(l); }
const spdlog::logger* sp(const logger* l) { return reinterpret_cast<const spdlog::logger*>(l); }
logger* handle(spdlog::logger* l) { return reinterpret_cast<logger*>(l); }

class stderr_write_sink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    opt::write_fd(2, buf.data(), buf.size());
  }
  void flush_() override {}
};

spdlog::level::level_enum level_of(int lv) { return static_cast<spdlog::level::level_enum>(lv); }

}  // namespace

logger* create(const char* name, const char* pattern, int level, output out) noexcept {
  try {
    spdlog::sink_ptr sink;
    if (out == output::stderr_color)
      sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    else
      sink = std::make_shared<stderr_write_sink>();
    auto* l = new spdlog::logger(name, std::move(sink));
    l->set_pattern(pattern);
    l->set_level(level_of(level));
    return handle(l);
  } catch (...) {
    return nullptr;
  }
}

void destroy(logger* l) noexcept { delete sp(l); }

logger* default_logger() noexcept { return handle(spdlog::default_logger_raw()); }

void set_default(logger* l) noexcept {
  if (l == nullptr) return;
  try {
    spdlog::set_default_logger(std::shared_ptr<spdlog::logger>(sp(l)));
  } catch (...) {
  }
}

bool should_log(const logger* l, int level) noexcept { return l != nullptr && sp(l)->should_log(level_of(level)); }

void log(logger* l, int level, const char* text, std::size_t len) noexcept {
  if (l == nullptr) return;
  // A sink may throw (a full disk); a log line is not worth the process.
  try {
    sp(l)->log(level_of(level), spdlog::string_view_t(text, len));
  } catch (...) {
  }
}

}  // namespace poolshim::log_sink

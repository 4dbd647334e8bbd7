// poolshimd's logger (log.h): spdlog's colour sink on stderr, reached through poolshim/log_sink.h
// (spdlog is compiled once, in daemon/protocol/log_sink.cpp, for the shim and the daemon). Lines
// are formatted by poolshim/log_format.h and handed to spdlog whole.
#include "poolshimd/log.h"

#include "poolshim/log_sink.h"

namespace poolshim::daemon::log {

void start(int lv) {
  log_sink::set_default(
      log_sink::create("poolshimd", "%Y-%m-%dT%H:%M:%S.%e %l %v", lv, log_sink::output::stderr_color));
}

bool enabled(level lv) noexcept { return log_sink::should_log(log_sink::default_logger(), static_cast<int>(lv)); }

void emit(level lv, const char* text, const arg* args, std::size_t n) noexcept {
  char line[1024];
  const std::size_t len = log_format::format(line, sizeof line, text, args, n);
  log_sink::log(log_sink::default_logger(), static_cast<int>(lv), line, len);  // never throws
}

}  // namespace poolshim::daemon::log

// poolshimd's logger (log.h): the only daemon file that compiles spdlog (header-only, set on this
// file alone in daemon/CMakeLists.txt). Lines are formatted by poolshim/log_format.h and handed to
// spdlog whole.
#include "poolshimd/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace poolshim::daemon::log {

void start(int lv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("poolshimd"));
  spdlog::set_level(static_cast<spdlog::level::level_enum>(lv));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
}

bool enabled(level lv) noexcept {
  return spdlog::default_logger_raw()->should_log(static_cast<spdlog::level::level_enum>(lv));
}

void emit(level lv, const char* text, const arg* args, std::size_t n) noexcept {
  char line[1024];
  const std::size_t len = log_format::format(line, sizeof line, text, args, n);
  // A sink may throw (a full disk); a log line is not worth the daemon.
  try {
    spdlog::default_logger_raw()->log(static_cast<spdlog::level::level_enum>(lv), spdlog::string_view_t(line, len));
  } catch (...) {
  }
}

}  // namespace poolshim::daemon::log

// The one place spdlog is compiled (daemon/protocol/log_sink.cpp, linked by the shim and by
// poolshimd alike): both loggers (shim/base/log.cpp, daemon/poolshimd/log.cpp) reach spdlog through
// these few functions, so neither includes a spdlog or fmt header. Lines arrive formatted
// (poolshim/log_format.h); spdlog adds the pattern's prefix and writes them. Nothing here throws.
#pragma once

#include <cstddef>

namespace poolshim::log_sink {

class logger;  // a spdlog logger

enum class output {
  stderr_write,  // one write(2) to fd 2 per line: never split between threads or processes, no FILE lock
  stderr_color,  // spdlog's colour sink on stderr (colours on a terminal only)
};

// A new logger at `level` (0 trace ... 6 off, as spdlog numbers them), its lines prefixed per
// `pattern` (spdlog's pattern flags); null if it cannot be made. Never registered by name.
logger* create(const char* name, const char* pattern, int level, output out) noexcept;
void destroy(logger* l) noexcept;  // one from create() that was never made the default
// spdlog's default logger (before set_default: a colour one on stdout, at info), or null.
logger* default_logger() noexcept;
void set_default(logger* l) noexcept;  // it becomes spdlog's default logger (owned by spdlog from then on)
bool should_log(const logger* l, int level) noexcept;
void log(logger* l, int level, const char* text, std::size_t len) noexcept;

}  // namespace poolshim::log_sink

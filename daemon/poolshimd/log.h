// poolshimd's logging, narrow on purpose: no spdlog or fmt header here, so that spdlog is compiled
// once (daemon/protocol/log_sink.cpp, for the shim and poolshimd), and not again in every daemon
// file that logs. Messages take "{}" placeholders counted against the arguments at compile time
// (poolshim/log_format.h, the shim's logger's core).
#pragma once

#include <cstddef>
#include <type_traits>

#include "poolshim/log_format.h"

namespace poolshim::daemon::log {

using level = log_format::level;
using log_format::arg;
using log_format::format_string;

// The daemon's logger from here on: stderr, "<time> <level> <message>", at `lv` (0 trace ... 6
// off) and above. Before it (unit tests run the server without it) spdlog's default logger writes.
void start(int lv);

bool enabled(level lv) noexcept;
// Formats into a fixed buffer (a long message is cut) and writes one line through spdlog.
void emit(level lv, const char* text, const arg* args, std::size_t n) noexcept;

template <class... A>
void write(level lv, std::type_identity_t<format_string<A...>> text, const A&... a) noexcept {
  log_format::write_via<enabled, emit>(lv, text.text, a...);
}

template <class... A>
void debug(std::type_identity_t<format_string<A...>> text, const A&... a) noexcept {
  write<A...>(level::debug, text, a...);
}
template <class... A>
void info(std::type_identity_t<format_string<A...>> text, const A&... a) noexcept {
  write<A...>(level::info, text, a...);
}
template <class... A>
void warn(std::type_identity_t<format_string<A...>> text, const A&... a) noexcept {
  write<A...>(level::warn, text, a...);
}
template <class... A>
void error(std::type_identity_t<format_string<A...>> text, const A&... a) noexcept {
  write<A...>(level::error, text, a...);
}

}  // namespace poolshim::daemon::log

// The shim's logging, narrow on purpose: no spdlog or fmt header here (spdlog is compiled once, in
// daemon/protocol/log_sink.cpp, for the shim and poolshimd). Messages take "{}" placeholders,
// counted against the arguments at compile time; an argument is an integer, a pointer, a C string
// or a floating-point number (poolshim/log_format.h, shared with poolshimd). Off the hit path only;
// a warning that may repeat goes through POOLSHIM_LOG_WARN_ONCE. Code that may run inside dlsym, in
// a signal handler or at exit uses write_raw only.
#pragma once

#include <atomic>
#include <cstddef>
#include <type_traits>

#include "poolshim/log_format.h"

namespace poolshim::log {

// The levels of POOLSHIM_LOG_LEVEL, numbered as spdlog numbers them.
using level = log_format::level;

// One message straight to fd 2: no allocation, no lock, no stdio.
void write_raw(const char* text) noexcept;

// A fork child's logger starts afresh (the parent's lock may be held by a thread it lacks).
void reset_after_fork() noexcept;

// True when messages of this level are written (POOLSHIM_LOG_LEVEL, read once).
bool enabled(level lv) noexcept;

// A format argument and a checked message text (log_format.h, shared with poolshimd's logger).
using log_format::arg;
using log_format::format_string;

// Formats into a fixed buffer (long messages are cut) and writes one line through spdlog.
void emit(level lv, const char* text, const arg* args, std::size_t n) noexcept;

template <class... A>
void write(level lv, std::type_identity_t<format_string<A...>> text, const A&... a) noexcept {
  log_format::write_via<enabled, emit>(lv, text.text, a...);
}

// True the first time only: the gate of a warning that would otherwise repeat.
class once {
 public:
  bool first() noexcept { return !said_.exchange(true, std::memory_order_relaxed); }

 private:
  std::atomic<bool> said_{false};
};

}  // namespace poolshim::log

#define POOLSHIM_LOG_DEBUG(...) ::poolshim::log::write(::poolshim::log::level::debug, __VA_ARGS__)
#define POOLSHIM_LOG_INFO(...) ::poolshim::log::write(::poolshim::log::level::info, __VA_ARGS__)
#define POOLSHIM_LOG_WARN(...) ::poolshim::log::write(::poolshim::log::level::warn, __VA_ARGS__)
// Said once per call site for the life of the process.
#define POOLSHIM_LOG_WARN_ONCE(...)                             \
  do {                                                          \
    static constinit ::poolshim::log::once poolshim_once_;      \
    if (poolshim_once_.first()) POOLSHIM_LOG_WARN(__VA_ARGS__); \
  } while (0)

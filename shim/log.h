// The shim's logging: spdlog (compiled in, hidden) through one leaky logger that writes to stderr
// with write(2), level from POOLSHIM_LOG_LEVEL. Only off the hit path; warnings that may repeat go
// through POOLSHIM_LOG_WARN_LIMITED. Code that may run inside dlsym, in a signal handler or at exit
// uses write_raw only.
#pragma once

#include <spdlog/logger.h>

#include <atomic>
#include <cstdint>

namespace poolshim::log {

// The logger, created on first use (never destroyed; recreated in a fork child, whose copy of the
// parent's lock may be held by a thread that no longer exists).
spdlog::logger& get() noexcept;

// One message straight to fd 2: no allocation, no lock, no stdio.
void write_raw(const char* text) noexcept;

void reset_after_fork() noexcept;

// Lets a call site through 10 times, then once per second at most; says how many it held back.
class rate_limiter {
 public:
  // True when the message may be logged; *suppressed is set to how many were dropped before it.
  bool allow(std::uint64_t* suppressed) noexcept;

 private:
  std::atomic<std::uint64_t> seen_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::int64_t> last_ns_{0};
};

}  // namespace poolshim::log

// spdlog does not throw from log calls with a valid format string (checked at compile time), but a
// formatter or a sink could; the shim never lets an exception out of a hook.
#define POOLSHIM_LOG_AT(lvl, ...)                                                   \
  do {                                                                              \
    try {                                                                           \
      ::spdlog::logger& poolshim_logger_ = ::poolshim::log::get();                  \
      if (poolshim_logger_.should_log(lvl)) poolshim_logger_.log(lvl, __VA_ARGS__); \
    } catch (...) {                                                                 \
    }                                                                               \
  } while (0)
#define POOLSHIM_LOG_DEBUG(...) POOLSHIM_LOG_AT(::spdlog::level::debug, __VA_ARGS__)
#define POOLSHIM_LOG_INFO(...) POOLSHIM_LOG_AT(::spdlog::level::info, __VA_ARGS__)
#define POOLSHIM_LOG_WARN(...) POOLSHIM_LOG_AT(::spdlog::level::warn, __VA_ARGS__)
#define POOLSHIM_LOG_WARN_LIMITED(...)                                                                 \
  do {                                                                                                 \
    static constinit ::poolshim::log::rate_limiter poolshim_limiter_;                                  \
    std::uint64_t poolshim_dropped_ = 0;                                                               \
    if (poolshim_limiter_.allow(&poolshim_dropped_)) {                                                 \
      POOLSHIM_LOG_WARN(__VA_ARGS__);                                                                  \
      if (poolshim_dropped_) POOLSHIM_LOG_WARN("({} similar warnings suppressed)", poolshim_dropped_); \
    }                                                                                                  \
  } while (0)

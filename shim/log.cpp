// The shim's logger (log.h): a spdlog logger over a sink that formats into spdlog's buffer and
// writes it with one write(2), so a line is never split between threads or processes and no FILE
// lock is taken.
#include "log.h"

#include <spdlog/details/log_msg.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>

#include "intercept/process.h"

namespace poolshim::log {
namespace {

void write_all(int fd, const char* p, std::size_t n) noexcept {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

class stderr_write_sink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    write_all(2, buf.data(), buf.size());
  }
  void flush_() override {}
};

std::atomic<spdlog::logger*> g_logger{nullptr};

[[gnu::noinline]] spdlog::logger* make_logger() noexcept {
  try {
    auto* fresh = new spdlog::logger("poolshim", std::make_shared<stderr_write_sink>());
    fresh->set_pattern("poolshim[%P] %l: %v");
    int level = intercept::current_config().log_level;  // 0 trace ... 6 off, as spdlog counts
    fresh->set_level(static_cast<spdlog::level::level_enum>(level));
    spdlog::logger* expected = nullptr;
    if (g_logger.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)) return fresh;
    delete fresh;
    return expected;
  } catch (...) {
    return nullptr;
  }
}

// Used when even the logger cannot be built (out of memory): logs nothing.
spdlog::logger& null_logger() noexcept {
  static spdlog::logger* silent = [] {
    auto* l = new (std::nothrow) spdlog::logger("poolshim-null");
    if (l) l->set_level(spdlog::level::off);
    return l;
  }();
  return *silent;
}

std::int64_t now_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

spdlog::logger& get() noexcept {
  spdlog::logger* l = g_logger.load(std::memory_order_acquire);
  if (l == nullptr) [[unlikely]]
    l = make_logger();
  return l ? *l : null_logger();
}

void write_raw(const char* text) noexcept { write_all(2, text, std::strlen(text)); }

void reset_after_fork() noexcept {
  // The old logger is leaked on purpose: its mutex may be held by a thread the child lacks.
  g_logger.store(nullptr, std::memory_order_release);
}

bool rate_limiter::allow(std::uint64_t* suppressed) noexcept {
  *suppressed = 0;
  if (seen_.fetch_add(1, std::memory_order_relaxed) < 10) return true;
  std::int64_t now = now_ns();
  std::int64_t last = last_ns_.load(std::memory_order_relaxed);
  if (now - last < 1000000000 || !last_ns_.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  *suppressed = dropped_.exchange(0, std::memory_order_relaxed);
  return true;
}

}  // namespace poolshim::log

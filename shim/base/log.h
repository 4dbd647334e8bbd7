// The shim's logging, narrow on purpose: no spdlog or fmt header here (spdlog is compiled once, in
// log.cpp). Messages take "{}" placeholders, counted against the arguments at compile time; an
// argument is an integer, a pointer, a C string or a floating-point number. Off the hit path only;
// a warning that may repeat goes through POOLSHIM_LOG_WARN_ONCE. Code that may run inside dlsym,
// in a signal handler or at exit uses write_raw only.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace poolshim::log {

// The levels of POOLSHIM_LOG_LEVEL, numbered as spdlog numbers them.
enum class level : int { trace = 0, debug, info, warn, error, critical, off };

// One message straight to fd 2: no allocation, no lock, no stdio.
void write_raw(const char* text) noexcept;

// A fork child's logger starts afresh (the parent's lock may be held by a thread it lacks).
void reset_after_fork() noexcept;

// True when messages of this level are written (POOLSHIM_LOG_LEVEL, read once).
bool enabled(level lv) noexcept;

// A format argument, type-erased so that the formatting lives in log.cpp.
class arg {
 public:
  enum class kind : std::uint8_t { i64, u64, f64, ptr, str };

  template <class T>
  arg(const T& v) noexcept {  // NOLINT(google-explicit-constructor): built from each argument
    using D = std::decay_t<T>;
    if constexpr (std::is_array_v<T>) {
      static_assert(std::is_same_v<std::remove_cv_t<std::remove_extent_t<T>>, char>, "only char arrays are text");
      kind_ = kind::str, s_ = v;
    } else if constexpr (requires { v.c_str(); }) {
      kind_ = kind::str, s_ = v.c_str();  // std::string: valid for the call, which copies it
    } else if constexpr (std::is_same_v<D, bool>) {
      kind_ = kind::str, s_ = v ? "true" : "false";
    } else if constexpr (std::is_pointer_v<D> && std::is_same_v<std::remove_cv_t<std::remove_pointer_t<D>>, char>) {
      kind_ = kind::str, s_ = v ? v : "(null)";
    } else if constexpr (std::is_pointer_v<D>) {
      kind_ = kind::ptr, p_ = reinterpret_cast<const void*>(v);
    } else if constexpr (std::is_enum_v<D>) {
      kind_ = kind::i64, i_ = static_cast<long long>(v);
    } else if constexpr (std::is_integral_v<D> && std::is_signed_v<D>) {
      kind_ = kind::i64, i_ = v;
    } else if constexpr (std::is_integral_v<D>) {
      kind_ = kind::u64, u_ = v;
    } else {
      static_assert(std::is_floating_point_v<D>, "log arguments are integers, pointers, C strings or numbers");
      kind_ = kind::f64, f_ = static_cast<double>(v);
    }
  }

  kind type() const noexcept { return kind_; }
  long long as_i64() const noexcept { return i_; }
  unsigned long long as_u64() const noexcept { return u_; }
  double as_f64() const noexcept { return f_; }
  const void* as_ptr() const noexcept { return p_; }
  const char* as_str() const noexcept { return s_; }

 private:
  kind kind_;
  union {
    long long i_;
    unsigned long long u_;
    double f_;
    const void* p_;
    const char* s_;
  };
};

consteval std::size_t count_placeholders(const char* s) noexcept {
  std::size_t n = 0;
  for (; *s; ++s)
    if (s[0] == '{' && s[1] == '}') ++n;
  return n;
}

// A message text whose "{}" count matches the arguments' (a mismatch does not compile).
template <class... A>
struct format_string {
  template <std::size_t N>
  consteval format_string(const char (&s)[N]) noexcept : text(s) {  // NOLINT(google-explicit-constructor)
    if (count_placeholders(s) != sizeof...(A)) throw "poolshim log: the {} count differs from the argument count";
  }
  const char* text;
};

// Formats into a fixed buffer (long messages are cut) and writes one line through spdlog.
void emit(level lv, const char* text, const arg* args, std::size_t n) noexcept;

template <class... A>
void write(level lv, std::type_identity_t<format_string<A...>> text, const A&... a) noexcept {
  if (!enabled(lv)) return;
  if constexpr (sizeof...(A) == 0) {
    emit(lv, text.text, nullptr, 0);
  } else {
    const arg args[] = {arg(a)...};
    emit(lv, text.text, args, sizeof...(A));
  }
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
#define POOLSHIM_LOG_WARN_ONCE(...)                                       \
  do {                                                                    \
    static constinit ::poolshim::log::once poolshim_once_;                \
    if (poolshim_once_.first()) POOLSHIM_LOG_WARN(__VA_ARGS__);           \
  } while (0)

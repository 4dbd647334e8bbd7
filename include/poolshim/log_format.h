// The formatting core of poolshim's two narrow loggers (shim/base/log.h and daemon/poolshimd/log.h):
// "{}" placeholders counted against the arguments at compile time, each argument type-erased (an
// integer, a pointer, a C string or std::string, a floating-point number) and formatted into a
// fixed buffer, with no allocation. Neither logger's header includes spdlog or fmt: each compiles
// spdlog once, in its own log.cpp, and hands it the finished line.
#pragma once

#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <type_traits>

namespace poolshim::log_format {

// Log levels, numbered as spdlog numbers them (and as POOLSHIM_LOG_LEVEL's 0-6 count).
enum class level : int { trace = 0, debug, info, warn, error, critical, off };

// A format argument, type-erased so that the formatting lives in one place.
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
  consteval format_string(const char (&s)[N]) : text(s) {  // NOLINT(google-explicit-constructor)
    if (count_placeholders(s) != sizeof...(A)) throw "poolshim log: the {} count differs from the argument count";
  }
  const char* text;
};

// The front both loggers share: when `enabled(lv)`, the arguments are type-erased on the stack and
// handed to `emit` (each logger's own sink, the only place that formats and writes).
template <bool (*Enabled)(level) noexcept, void (*Emit)(level, const char*, const arg*, std::size_t) noexcept,
          class... A>
void write_via(level lv, const char* text, const A&... a) noexcept {
  if (!Enabled(lv)) return;
  if constexpr (sizeof...(A) == 0) {
    Emit(lv, text, nullptr, 0);
  } else {
    const arg args[] = {arg(a)...};
    Emit(lv, text, args, sizeof...(A));
  }
}

// Formats `text` with `args` into out[0, cap): always terminated, a long message cut. Returns the
// length written. snprintf only for numbers (no FILE, no allocation).
inline std::size_t format(char* out, std::size_t cap, const char* text, const arg* args, std::size_t n) noexcept {
  std::size_t len = 0;
  auto put = [&](const char* s, std::size_t k) {
    if (k > cap - 1 - len) k = cap - 1 - len;
    std::memcpy(out + len, s, k);
    len += k;
  };
  auto put_arg = [&](const arg& a) {
    char num[40];
    int k = 0;
    switch (a.type()) {
      case arg::kind::str:
        put(a.as_str(), std::strlen(a.as_str()));
        return;
      case arg::kind::i64:
        k = std::snprintf(num, sizeof num, "%lld", a.as_i64());
        break;
      case arg::kind::u64:
        k = std::snprintf(num, sizeof num, "%llu", a.as_u64());
        break;
      case arg::kind::f64:
        k = std::snprintf(num, sizeof num, "%g", a.as_f64());
        break;
      case arg::kind::ptr:
        k = std::snprintf(num, sizeof num, "0x%" PRIxPTR, reinterpret_cast<std::uintptr_t>(a.as_ptr()));
        break;
    }
    if (k > 0) put(num, static_cast<std::size_t>(k));
  };
  std::size_t next = 0;
  for (const char* p = text; *p;) {
    const char* brace = std::strstr(p, "{}");
    if (brace == nullptr) {
      put(p, std::strlen(p));
      break;
    }
    put(p, static_cast<std::size_t>(brace - p));
    if (next < n) put_arg(args[next++]);
    p = brace + 2;
  }
  out[len] = '\0';
  return len;
}

}  // namespace poolshim::log_format

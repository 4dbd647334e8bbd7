// The machinery under poolshim's option tables (config.h: the shim's POOLSHIM_* table; poolshimd
// has its own): a table is an X-macro of rows — field, environment variable, type, default,
// meaning — expanded here into a struct, a reader of the environment, a command-line parser and help
// text, so every option is parsed, validated and described the same way. The shim reads its table
// before main and inside dlsym: nothing here allocates, locks or uses stdio (write(2) only).
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

namespace poolshim::opt {

// The type column of a row, written in a table as one of:
//   size                       bytes: digits with an optional k, m, g or t suffix (powers of 1024;
//                              "KiB", "MB" and "64m" read the same)
//   count(lo, hi)              a whole number from lo to hi, no suffix
//   flag                       1, true, yes, on / 0, false, no, off
//   level                      trace, debug, info, warn(ing), error (err), critical, off, or 0-6
//   string                     any text
//   path                       any text, a file or folder (PATH in the help)
//   choice(T, "a", "b", ...)   one of the listed words. T is an enum whose values are 0, 1, ... in
//                              the listed order, or const char* (then the field points at the
//                              listed spelling, so it is always one of them)
enum class kind : std::uint8_t { size, count, flag, level, string, path, choice };

// A row as data, for the reader, the command line and the help text (the typed value is the
// struct's member).
struct row {
  const char* field;  // the member's name; its command-line flag is --field, '_' written '-'
  const char* env;
  kind type;
  std::uint64_t lo, hi;       // count: the accepted range
  const char* const* values;  // choice: the allowed spellings, then nullptr; others: {nullptr}
  const char* help;
};

// A rejected value: the reader keeps the default and reports it once, through the table's caller.
struct issue {
  const char* env;       // the variable
  const char* value;     // the rejected text
  const row* option;     // what it accepts
  const char* fallback;  // the default kept, as text
  const char* program;   // "poolshim", "poolshimd": who says so
};
using issue_fn = void (*)(const issue&);

// ---- the parsers: each writes *out only when it accepts the whole text ----

// The leading decimal digits of `t` into *v, *end past them. False for no digit (strtoull would
// also take a sign or blanks) and for a number beyond 64 bits. errno is left as the host program
// had it: the shim may read its table inside a hook.
inline bool parse_digits(const char* t, unsigned long long* v, char** end) noexcept {
  if (*t < '0' || *t > '9') return false;
  const int saved = errno;
  errno = 0;
  *v = std::strtoull(t, end, 10);
  const bool too_big = errno == ERANGE;
  errno = saved;
  return !too_big;
}

inline bool parse_size(const char* t, std::size_t* out) noexcept {
  char* end = nullptr;
  unsigned long long v = 0;
  if (!parse_digits(t, &v, &end)) return false;
  unsigned shift = 0;
  switch (*end) {
    case 'k':
    case 'K':
      shift = 10;
      ++end;
      break;
    case 'm':
    case 'M':
      shift = 20;
      ++end;
      break;
    case 'g':
    case 'G':
      shift = 30;
      ++end;
      break;
    case 't':
    case 'T':
      shift = 40;
      ++end;
      break;
    default:
      break;
  }
  if ((*end == 'i' || *end == 'I') && shift != 0) ++end;  // KiB, MiB, ...
  if (*end == 'b' || *end == 'B') ++end;
  if (*end != '\0') return false;
  if (shift != 0 && v > (~0ull >> shift)) return false;  // would overflow
  *out = static_cast<std::size_t>(v << shift);
  return true;
}

inline bool parse_count(const char* t, std::uint64_t lo, std::uint64_t hi, std::uint64_t* out) noexcept {
  char* end = nullptr;
  unsigned long long v = 0;
  if (!parse_digits(t, &v, &end) || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

inline bool parse_flag(const char* t, bool* out) noexcept {
  static constexpr const char* k_spellings[] = {"0", "1", "false", "true", "no", "yes", "off", "on"};
  for (int i = 0; i < 8; ++i) {
    if (std::strcmp(t, k_spellings[i]) == 0) {
      *out = (i & 1) != 0;
      return true;
    }
  }
  return false;
}

// The levels as spdlog numbers them (0 trace ... 6 off).
inline constexpr const char* k_level_names[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};

inline bool parse_level(const char* t, int* out) noexcept {
  for (int i = 0; i < 7; ++i) {
    if (std::strcmp(t, k_level_names[i]) == 0) {
      *out = i;
      return true;
    }
  }
  // spdlog's own spellings (poolshimd took them before it read its table through this).
  if (std::strcmp(t, "warning") == 0 || std::strcmp(t, "err") == 0) {
    *out = t[0] == 'w' ? 3 : 4;
    return true;
  }
  if (t[0] >= '0' && t[0] <= '6' && t[1] == '\0') {
    *out = t[0] - '0';
    return true;
  }
  return false;
}

// The index of `t` among a choice row's values, or -1.
inline int find_choice(const char* const* values, const char* t) noexcept {
  for (int i = 0; values[i] != nullptr; ++i)
    if (std::strcmp(values[i], t) == 0) return i;
  return -1;
}

static_assert(std::is_same_v<std::size_t, std::uint64_t>, "size and count rows share one member type");

// Parses `t` into a member of the row's type. False (and *out untouched) when it is not accepted.
template <class T>
bool parse_value(const row& r, const char* t, T* out) noexcept {
  if constexpr (std::is_enum_v<T>) {
    const int i = find_choice(r.values, t);
    if (i < 0) return false;
    *out = static_cast<T>(i);
    return true;
  } else if constexpr (std::is_same_v<T, const char*>) {
    if (r.type != kind::choice) {
      *out = t;
      return true;
    }
    const int i = find_choice(r.values, t);
    if (i < 0) return false;
    *out = r.values[i];
    return true;
  } else if constexpr (std::is_same_v<T, bool>) {
    return parse_flag(t, out);
  } else if constexpr (std::is_same_v<T, int>) {
    return parse_level(t, out);
  } else {
    static_assert(std::is_same_v<T, std::uint64_t>, "option members are enums, const char*, bool, int or sizes");
    return r.type == kind::size ? parse_size(t, out) : parse_count(t, r.lo, r.hi, out);
  }
}

// ---- text, into caller buffers (no allocation) ----

// A bounded, always terminated string builder over a caller's buffer; text past its end is cut.
class text {
 public:
  text(char* buf, std::size_t cap) noexcept : buf_(buf), cap_(cap) { buf_[0] = '\0'; }
  text& put(const char* s, std::size_t n) noexcept {
    if (n > cap_ - 1 - len_) n = cap_ - 1 - len_;
    std::memcpy(buf_ + len_, s, n);
    len_ += n;
    buf_[len_] = '\0';
    return *this;
  }
  text& put(const char* s) noexcept { return put(s, std::strlen(s)); }
  text& put(std::uint64_t v) noexcept {
    char digits[24];
    std::size_t n = 0;
    do {
      digits[sizeof digits - 1 - n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    return put(digits + sizeof digits - n, n);
  }
  const char* c_str() const noexcept { return buf_; }
  std::size_t size() const noexcept { return len_; }

 private:
  char* buf_;
  std::size_t cap_;
  std::size_t len_ = 0;
};

// A member's value as its row spells it (sizes in the largest exact binary unit: "64MiB").
template <class T>
void put_value(text& out, const row& r, const T& v) noexcept {
  if constexpr (std::is_enum_v<T>) {
    out.put(r.values[static_cast<int>(v)]);
  } else if constexpr (std::is_same_v<T, const char*>) {
    out.put(v == nullptr || *v == '\0' ? "(none)" : v);
  } else if constexpr (std::is_same_v<T, bool>) {
    out.put(v ? "1" : "0");
  } else if constexpr (std::is_same_v<T, int>) {
    out.put(v >= 0 && v <= 6 ? k_level_names[v] : "?");
  } else if (r.type == kind::size && v != 0) {
    static constexpr const char* units[] = {"TiB", "GiB", "MiB", "KiB"};
    for (unsigned i = 0, shift = 40; i < 4; ++i, shift -= 10) {
      if (v % (std::uint64_t{1} << shift) == 0) {
        out.put(v >> shift).put(units[i]);
        return;
      }
    }
    out.put(v);
  } else {
    out.put(v);
  }
}

// What a row accepts, in words ("a size: ...", "one of: off, native, python").
inline void put_accepted(text& out, const row& r) noexcept {
  switch (r.type) {
    case kind::size:
      out.put("a size: bytes with an optional k, m, g or t suffix");
      return;
    case kind::count:
      out.put("a whole number from ").put(r.lo).put(" to ").put(r.hi);
      return;
    case kind::flag:
      out.put("1, true, yes, on, 0, false, no or off");
      return;
    case kind::level:
      out.put("trace, debug, info, warn, error, critical, off or 0-6");
      return;
    case kind::string:
    case kind::path:
      out.put("any text");
      return;
    case kind::choice:
      out.put("one of: ");
      for (int i = 0; r.values[i] != nullptr; ++i) out.put(i == 0 ? "" : ", ").put(r.values[i]);
      return;
  }
}

// The value placeholder of a row in the help text: SIZE, N, 0|1, LEVEL, TEXT, off|native|python.
inline void put_placeholder(text& out, const row& r) noexcept {
  switch (r.type) {
    case kind::size:
      out.put("SIZE");
      return;
    case kind::count:
      out.put("N");
      return;
    case kind::flag:
      out.put("0|1");
      return;
    case kind::level:
      out.put("LEVEL");
      return;
    case kind::string:
      out.put("TEXT");
      return;
    case kind::path:
      out.put("PATH");
      return;
    case kind::choice:
      for (int i = 0; r.values[i] != nullptr; ++i) out.put(i == 0 ? "" : "|").put(r.values[i]);
      return;
  }
}

inline void write_fd(int fd, const char* p, std::size_t n) noexcept {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

// The one configuration warning, for every table: one line, one write(2) (so it is never split
// between threads), safe before main and inside dlsym. Reading a table reports each variable once.
inline void warn_raw(const issue& i) noexcept {
  char buf[512];
  text t(buf, sizeof buf);
  t.put(i.program).put(": warning: ignoring ").put(i.env).put("='").put(i.value).put("' (not ");
  // "not a size: ...", "not one of: ..."
  put_accepted(t, *i.option);
  t.put("); using the default, ").put(i.fallback).put("\n");
  if (buf[t.size() - 1] != '\n') buf[t.size() - 1] = '\n';  // cut: still one line
  const int saved = errno;
  write_fd(2, buf, t.size());
  errno = saved;
}

// ---- the table's struct ----

// Reads one member from its variable: unset leaves the default; a rejected value leaves it too and
// is reported.
template <class T>
void read_env(const row& r, T* member, const char* program, issue_fn on_issue) noexcept {
  const char* value = std::getenv(r.env);
  if (value == nullptr || parse_value(r, value, member) || on_issue == nullptr) return;
  char fallback[64];
  text t(fallback, sizeof fallback);
  put_value(t, r, *member);
  on_issue(issue{r.env, value, &r, fallback, program});
}

// A table's struct, read from the environment: defaults where a variable is unset or rejected.
template <class Table>
Table read(issue_fn on_issue = nullptr) noexcept {
  Table t;
  Table::for_each(t, [&](const row& r, auto& member) { read_env(r, &member, Table::program, on_issue); });
  return t;
}

// One member alone (a tool that needs only POOLSHIM_SOCKET), silent about a rejected value.
template <class Table, class T>
T read_one(T Table::*member) noexcept {
  Table t;
  Table::for_each(t, [&](const row& r, auto& m) {
    if constexpr (std::is_same_v<std::remove_reference_t<decltype(m)>, T>)
      if (&m == &(t.*member)) read_env(r, &m, Table::program, nullptr);
  });
  return t.*member;
}

// True when `arg` is the row's flag: "--" and the field with '-' for '_'.
inline bool is_flag_of(const char* arg, const row& r) noexcept {
  if (arg[0] != '-' || arg[1] != '-') return false;
  const char* a = arg + 2;
  const char* f = r.field;
  for (; *f != '\0'; ++a, ++f)
    if (*a != (*f == '_' ? '-' : *f)) return false;
  return *a == '\0';
}

// The command-line form of a table: --field VALUE, or --field alone for a flag row (it sets it).
// argv[*i] is the argument looked at; *i moves past what was taken. *which is its row when it is
// one of the table's.
enum class arg_status { not_an_option, ok, missing_value, bad_value };
template <class Table>
arg_status parse_argument(Table& t, int argc, char** argv, int* i, const row** which) noexcept {
  arg_status s = arg_status::not_an_option;
  Table::for_each(t, [&](const row& r, auto& member) {
    if (s != arg_status::not_an_option || !is_flag_of(argv[*i], r)) return;
    *which = &r;
    if constexpr (std::is_same_v<std::remove_reference_t<decltype(member)>, bool>) {
      member = true;
      s = arg_status::ok;
    } else if (*i + 1 >= argc) {
      s = arg_status::missing_value;
    } else {
      ++*i;
      s = parse_value(r, argv[*i], &member) ? arg_status::ok : arg_status::bad_value;
    }
  });
  return s;
}

// Help text, one entry a row (its flag or variable, the default, the meaning wrapped at 100
// columns), handed to `sink` piece by piece (which may throw: the daemon's appends to a string).
// with_flags: "--field VALUE [ENV]" (poolshimd's table); otherwise "ENV=VALUE" (the shim's, which
// has no command line).
using sink = void (*)(void* context, const char* text, std::size_t len);

inline void put_wrapped(sink out, void* context, const char* help, std::size_t indent, std::size_t width) {
  static constexpr char k_spaces[] = "                ";
  std::size_t column = width;  // forces the first word onto a fresh, indented line
  for (const char* p = help; *p != '\0';) {
    while (*p == ' ') ++p;
    const char* end = p;
    while (*end != '\0' && *end != ' ') ++end;
    const std::size_t n = static_cast<std::size_t>(end - p);
    if (n == 0) break;
    if (column + 1 + n > width) {
      out(context, "\n", 1);
      out(context, k_spaces, indent < sizeof k_spaces ? indent : sizeof k_spaces - 1);
      column = indent;
    } else {
      out(context, " ", 1);
      ++column;
    }
    out(context, p, n);
    column += n;
    p = end;
  }
  out(context, "\n", 1);
}

template <class Table>
void write_help(sink out, void* context, bool with_flags) {
  const Table defaults{};
  Table::for_each(defaults, [&](const row& r, const auto& member) {
    char buf[256];
    text t(buf, sizeof buf);
    t.put("  ");
    if (with_flags) {
      t.put("--");
      for (const char* f = r.field; *f != '\0'; ++f) t.put(*f == '_' ? "-" : f, 1);
      if (r.type != kind::flag) put_placeholder(t.put(" "), r);
      t.put("  [").put(r.env);
      if (r.type == kind::flag) t.put("=0|1");
      t.put("]");
    } else {
      put_placeholder(t.put(r.env).put("="), r);
    }
    bool unset = false;  // text unset by default: its help says what applies then
    if constexpr (std::is_same_v<std::remove_cvref_t<decltype(member)>, const char*>)
      unset = member == nullptr || *member == '\0';
    if (!unset) put_value(t.put("  default "), r, member);
    if (r.type == kind::count) t.put(" (").put(r.lo).put(" to ").put(r.hi).put(")");
    out(context, t.c_str(), t.size());
    put_wrapped(out, context, r.help, 6, 100);
  });
}

}  // namespace poolshim::opt

// ---- expanding a table: POOLSHIM_OPTION_STRUCT(TABLE) inside a struct's body ----
// TABLE(X) calls X(field, ENV, type, default, help) once per row, type as described at the top.

// One line per type and column: a table, kept as one.
// clang-format off
#define POOLSHIM_OPT_MEMBER_TYPE_size std::size_t
#define POOLSHIM_OPT_MEMBER_TYPE_count(lo, hi) std::uint64_t
#define POOLSHIM_OPT_MEMBER_TYPE_flag bool
#define POOLSHIM_OPT_MEMBER_TYPE_level int
#define POOLSHIM_OPT_MEMBER_TYPE_string const char*
#define POOLSHIM_OPT_MEMBER_TYPE_path const char*
#define POOLSHIM_OPT_MEMBER_TYPE_choice(T, ...) T

#define POOLSHIM_OPT_SPEC_size ::poolshim::opt::kind::size, 0, 0
#define POOLSHIM_OPT_SPEC_count(lo, hi) ::poolshim::opt::kind::count, lo, hi
#define POOLSHIM_OPT_SPEC_flag ::poolshim::opt::kind::flag, 0, 0
#define POOLSHIM_OPT_SPEC_level ::poolshim::opt::kind::level, 0, 0
#define POOLSHIM_OPT_SPEC_string ::poolshim::opt::kind::string, 0, 0
#define POOLSHIM_OPT_SPEC_path ::poolshim::opt::kind::path, 0, 0
#define POOLSHIM_OPT_SPEC_choice(T, ...) ::poolshim::opt::kind::choice, 0, 0

#define POOLSHIM_OPT_VALUES_size {nullptr}
#define POOLSHIM_OPT_VALUES_count(lo, hi) {nullptr}
#define POOLSHIM_OPT_VALUES_flag {nullptr}
#define POOLSHIM_OPT_VALUES_level {nullptr}
#define POOLSHIM_OPT_VALUES_string {nullptr}
#define POOLSHIM_OPT_VALUES_path {nullptr}
#define POOLSHIM_OPT_VALUES_choice(T, ...) {__VA_ARGS__, nullptr}
// clang-format on

#define POOLSHIM_OPT_MEMBER(field, env, type, def, help) POOLSHIM_OPT_MEMBER_TYPE_##type field = def;
#define POOLSHIM_OPT_VALUE_LIST(field, env, type, def, help) \
  static constexpr const char* const field[] = POOLSHIM_OPT_VALUES_##type;
#define POOLSHIM_OPT_ROW(field, env, type, def, help) {#field, env, POOLSHIM_OPT_SPEC_##type, row_values::field, help},
#define POOLSHIM_OPT_VISIT(field, env, type, def, help) f(*r++, self.field);

// Members with their defaults, `rows` (constant-initialised: readable before main), and
// for_each(self, f), which calls f(row, member) for every row in table order.
#define POOLSHIM_OPTION_STRUCT(TABLE)                                       \
  TABLE(POOLSHIM_OPT_MEMBER)                                                \
  struct row_values {                                                       \
    TABLE(POOLSHIM_OPT_VALUE_LIST)                                          \
  };                                                                        \
  static constexpr ::poolshim::opt::row rows[] = {TABLE(POOLSHIM_OPT_ROW)}; \
  template <class Self, class F>                                            \
  static void for_each(Self& self, F&& f) {                                 \
    const ::poolshim::opt::row* r = rows;                                   \
    TABLE(POOLSHIM_OPT_VISIT)                                               \
  }

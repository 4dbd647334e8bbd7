// Reads poolshim's configuration table (include/poolshim/config.h) from POOLSHIM_* variables.
// Runs inside other people's processes, possibly before main: no allocation, no stdio, no locale.
#include "poolshim/config.h"

#include <cstdlib>
#include <cstring>

namespace poolshim {
namespace {

bool parse_flag(const char* t, bool* out) noexcept {
  if (!std::strcmp(t, "1") || !std::strcmp(t, "true") || !std::strcmp(t, "yes") || !std::strcmp(t, "on")) {
    *out = true;
    return true;
  }
  if (!std::strcmp(t, "0") || !std::strcmp(t, "false") || !std::strcmp(t, "no") || !std::strcmp(t, "off")) {
    *out = false;
    return true;
  }
  return false;
}

bool parse_mode(const char* t, run_mode* out) noexcept {
  if (!std::strcmp(t, "pool")) *out = run_mode::pool;
  else if (!std::strcmp(t, "observe")) *out = run_mode::observe;
  else if (!std::strcmp(t, "off")) *out = run_mode::off;
  else return false;
  return true;
}

bool parse_free_sync(const char* t, free_sync_mode* out) noexcept {
  if (!std::strcmp(t, "device")) *out = free_sync_mode::device;
  else if (!std::strcmp(t, "fence")) *out = free_sync_mode::fence;
  else if (!std::strcmp(t, "unsafe")) *out = free_sync_mode::unsafe;
  else return false;
  return true;
}

bool parse_level(const char* t, int* out) noexcept {
  static constexpr const char* names[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  for (int i = 0; i < 7; ++i) {
    if (!std::strcmp(t, names[i])) {
      *out = i;
      return true;
    }
  }
  if (t[0] >= '0' && t[0] <= '6' && t[1] == '\0') {
    *out = t[0] - '0';
    return true;
  }
  return false;
}

bool parse_string(const char* t, const char** out) noexcept {
  *out = t;
  return true;
}

bool parse_typed(const char* t, run_mode* out) noexcept { return parse_mode(t, out); }
bool parse_typed(const char* t, free_sync_mode* out) noexcept { return parse_free_sync(t, out); }
bool parse_typed(const char* t, bool* out) noexcept { return parse_flag(t, out); }
bool parse_typed(const char* t, std::size_t* out) noexcept { return parse_size(t, out); }
bool parse_typed(const char* t, int* out) noexcept { return parse_level(t, out); }
bool parse_typed(const char* t, const char** out) noexcept { return parse_string(t, out); }

}  // namespace

bool parse_size(const char* t, std::size_t* out) noexcept {
  if (*t < '0' || *t > '9') return false;
  char* end = nullptr;
  unsigned long long v = std::strtoull(t, &end, 10);
  unsigned shift = 0;
  switch (*end) {
    case 'k': case 'K': shift = 10; ++end; break;
    case 'm': case 'M': shift = 20; ++end; break;
    case 'g': case 'G': shift = 30; ++end; break;
    case 't': case 'T': shift = 40; ++end; break;
    default: break;
  }
  if ((*end == 'i' || *end == 'I') && shift != 0) ++end;  // KiB, MiB, ...
  if (*end == 'b' || *end == 'B') ++end;
  if (*end != '\0') return false;
  if (shift != 0 && v > (~0ull >> shift)) return false;  // would overflow
  *out = static_cast<std::size_t>(v << shift);
  return true;
}

config read_config(void (*on_issue)(const config_issue&)) noexcept {
  config c;
#define POOLSHIM_CONFIG_READ(field, env, type, def, help)      \
  if (const char* text = std::getenv(env)) {                   \
    if (!parse_typed(text, &c.field)) {                        \
      c.field = def;                                           \
      if (on_issue) on_issue(config_issue{env, text});         \
    }                                                          \
  }
  POOLSHIM_CONFIG_OPTIONS(POOLSHIM_CONFIG_READ)
#undef POOLSHIM_CONFIG_READ
  return c;
}

}  // namespace poolshim

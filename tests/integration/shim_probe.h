// What the integration test programs know about the shim: whether it is loaded, and its counters,
// reached the way a user would (dlsym(RTLD_DEFAULT, "poolshim_get_counters")), never by linking it.
// POOLSHIM_TEST_EXPECT says what the runner preloaded: "shim" (tracking on), "off" (loaded with
// POOLSHIM_MODE=off: everything stays zero), "bypassed" (loaded, but another interposer ahead of
// it answers the driver lookups, so what it sees is not checked) or "none" (not loaded). Checks
// print to stderr only,
// so stdout stays comparable between runs with and without the shim.
#pragma once

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "poolshim/poolshim.h"

namespace shim_probe {

enum class expect { none, off, shim, bypassed };

inline expect expected() {
  const char* e = std::getenv("POOLSHIM_TEST_EXPECT");
  if (e == nullptr || std::strcmp(e, "none") == 0) return expect::none;
  if (std::strcmp(e, "off") == 0) return expect::off;
  if (std::strcmp(e, "bypassed") == 0) return expect::bypassed;
  return expect::shim;
}

inline int& failures() {
  static int n = 0;
  return n;
}

inline void check(bool ok, const char* what, long long got, long long want) {
  if (ok) return;
  ++failures();
  std::fprintf(stderr, "shim check failed: %s: got %lld, expected %lld\n", what, got, want);
}

inline poolshim_get_counters_fn counters_fn() {
  return reinterpret_cast<poolshim_get_counters_fn>(dlsym(RTLD_DEFAULT, "poolshim_get_counters"));
}

// The counters now, or all zero when the shim is not loaded.
inline poolshim_counters counters() {
  poolshim_counters c{};
  if (auto fn = counters_fn()) fn(&c, sizeof c);
  return c;
}

inline int hook_index(const char* export_name) {
  auto name = reinterpret_cast<poolshim_hook_name_fn>(dlsym(RTLD_DEFAULT, "poolshim_hook_name"));
  if (name == nullptr) return -1;
  for (unsigned i = 0; i < POOLSHIM_MAX_HOOKS; ++i) {
    const char* n = name(i);
    if (n == nullptr) break;
    if (std::strcmp(n, export_name) == 0) return static_cast<int>(i);
  }
  std::fprintf(stderr, "shim check failed: no hook named %s\n", export_name);
  ++failures();
  return -1;
}

inline unsigned long long hook_calls(const poolshim_counters& c, const char* export_name) {
  int i = hook_index(export_name);
  return i < 0 ? 0 : c.hook_calls[i];
}

// The shim's presence must match what the runner said (so a test cannot pass by not loading it).
inline void check_presence() {
  bool loaded = counters_fn() != nullptr;
  check(loaded == (expected() != expect::none), "shim loaded", loaded, expected() != expect::none);
}

// Compares a counter delta with what the program did: exact under the shim, zero when off/none.
inline void check_delta(const char* what, unsigned long long before, unsigned long long after, unsigned long long did) {
  if (expected() == expect::bypassed) return;
  unsigned long long want = expected() == expect::shim ? did : 0;
  check(after - before == want, what, static_cast<long long>(after - before), static_cast<long long>(want));
}

inline int finish(const char* program) {
  if (failures() != 0) {
    std::fprintf(stderr, "%s: %d shim check(s) failed\n", program, failures());
    return 1;
  }
  return 0;
}

}  // namespace shim_probe

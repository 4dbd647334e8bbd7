// First of two libraries defining the same symbol: its dlsym(RTLD_NEXT, ...) must find the second
// one, as it does without the shim. A dlsym hook that called the real dlsym instead of jumping to
// it would make the loader resolve relative to the shim, and this library would find itself.
#include <dlfcn.h>

extern "C" __attribute__((visibility("default"))) const char* poolshim_test_next_symbol() { return "first"; }

extern "C" __attribute__((visibility("default"))) const char* poolshim_test_call_next() {
  auto next = reinterpret_cast<const char* (*)()>(dlsym(RTLD_NEXT, "poolshim_test_next_symbol"));
  return next ? next() : "(not found)";
}

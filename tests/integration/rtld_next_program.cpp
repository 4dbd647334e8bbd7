// dlsym(RTLD_NEXT, ...) issued by a library (next_first) still resolves relative to that library
// under the shim, and RTLD_DEFAULT still finds the first definition in the global scope.
#include <dlfcn.h>

#include <cstdio>
#include <cstring>

#include "shim_probe.h"

extern "C" const char* poolshim_test_call_next();
extern "C" const char* poolshim_test_second_name();

int main() {
  shim_probe::check_presence();
  const char* from_first = poolshim_test_call_next();
  auto def = reinterpret_cast<const char* (*)()>(dlsym(RTLD_DEFAULT, "poolshim_test_next_symbol"));
  std::printf("RTLD_NEXT from next_first: %s\n", from_first);
  std::printf("RTLD_DEFAULT: %s\n", def ? def() : "(not found)");
  std::printf("second library: %s\n", poolshim_test_second_name());
  shim_probe::check(std::strcmp(from_first, "second") == 0, "RTLD_NEXT from next_first found 'second'", 0, 1);
  shim_probe::check(def && std::strcmp(def(), "first") == 0, "RTLD_DEFAULT found 'first'", 0, 1);
  return shim_probe::finish("rtld_next_program");
}

// libpoolshim.so's public C API (include/poolshim/poolshim.h): thin extern "C" front ends.
#include <cstring>

#include "dispatch/pool_control.h"
#include "dispatch/summary.h"
#include "intercept/hook_list.h"
#include "poolshim/poolshim.h"

#define POOLSHIM_API extern "C" __attribute__((visibility("default")))

POOLSHIM_API size_t poolshim_get_counters(struct poolshim_counters* out, size_t size) {
  if (out != nullptr && size != 0) {
    poolshim_counters now;
    poolshim::dispatch::snapshot_counters(&now);
    std::memcpy(out, &now, size < sizeof now ? size : sizeof now);
  }
  return sizeof(poolshim_counters);
}

POOLSHIM_API const char* poolshim_hook_name(unsigned index) {
  return index < poolshim::intercept::k_hook_count ? poolshim::intercept::k_hooks[index].export_name : nullptr;
}

POOLSHIM_API size_t poolshim_trim(size_t bytes) { return poolshim::dispatch::trim(bytes); }

POOLSHIM_API size_t poolshim_release_all(void) { return poolshim::dispatch::release_all(); }

POOLSHIM_API size_t poolshim_preallocate(int device, size_t bytes) {
  return poolshim::dispatch::preallocate(device, bytes);
}

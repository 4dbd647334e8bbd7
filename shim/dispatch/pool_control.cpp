// The pools' public controls (pool_control.h): a re-entry guard (a call from a driver callback
// goes nowhere), then the routers.
#include "dispatch/pool_control.h"

#include <cstdint>

#include "base/process.h"
#include "base/reentry_guard.h"
#include "route/device_router.h"
#include "route/host_router.h"

namespace poolshim::dispatch {
namespace {

bool usable(const base::reentry_guard& g) noexcept { return !g.nested() && base::mode() == run_mode::pool; }

}  // namespace

std::size_t trim(std::size_t bytes) noexcept {
  base::reentry_guard g;
  if (!usable(g) || bytes == 0) return 0;
  std::size_t released = device_router::trim(bytes, /*keep_preallocated=*/false);
  if (released < bytes) released += host_router::trim(bytes - released);
  return released;
}

std::size_t release_all() noexcept {
  base::reentry_guard g;
  if (!usable(g)) return 0;
  return device_router::trim(SIZE_MAX, /*keep_preallocated=*/false) + host_router::trim(SIZE_MAX);
}

std::size_t preallocate(int device, std::size_t bytes) noexcept {
  base::reentry_guard g;
  if (!usable(g) || device < 0) return 0;
  return device_router::preallocate(device, bytes);
}

}  // namespace poolshim::dispatch

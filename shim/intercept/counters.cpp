// The counters behind poolshim_get_counters: what the interception layer and the hooks saw.
#include "intercept/counters.h"

namespace poolshim::intercept {

constinit counters g_counters;

void reset_counters() noexcept {
#define POOLSHIM_COUNTER_RESET(name) g_counters.name.store(0, std::memory_order_relaxed);
  POOLSHIM_COUNTER_FIELDS(POOLSHIM_COUNTER_RESET)
#undef POOLSHIM_COUNTER_RESET
  for (auto& c : g_counters.hook_calls) c.store(0, std::memory_order_relaxed);
}

}  // namespace poolshim::intercept

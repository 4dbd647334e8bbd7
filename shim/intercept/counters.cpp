// The counters behind poolshim_get_counters: what the interception layer and the hooks saw.
#include "intercept/counters.h"

namespace poolshim::intercept {

constinit counters g_counters;

void reset_counters() noexcept {
#define POOLSHIM_COUNTER_RESET(field, ...) g_counters.field.store(0, std::memory_order_relaxed);
#define POOLSHIM_COUNTER_RESET_HOOKS(field, ...) \
  for (auto& c : g_counters.field) c.store(0, std::memory_order_relaxed);
  POOLSHIM_COUNTER_TABLE(POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_RESET_HOOKS, POOLSHIM_COUNTER_RESET,
                         POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_SKIP)
#undef POOLSHIM_COUNTER_RESET
#undef POOLSHIM_COUNTER_RESET_HOOKS
}

}  // namespace poolshim::intercept

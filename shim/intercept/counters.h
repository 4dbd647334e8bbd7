// What the shim saw, as relaxed atomic counters (one cache line apart from nothing: these are
// observe-mode figures, not on the pool's hit path). The members are the SEEN and HOOKS rows of
// POOLSHIM_COUNTER_TABLE (include/poolshim/poolshim.h), the one list behind the public figures.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "intercept/hook_list.h"
#include "poolshim/poolshim.h"

namespace poolshim::intercept {

static_assert(k_hook_count <= POOLSHIM_MAX_HOOKS, "poolshim_counters.hook_calls is too small");

struct counters {
// NOLINTBEGIN(bugprone-macro-parentheses): the argument is a member name
#define POOLSHIM_COUNTER_MEMBER(field, ...) std::atomic<std::uint64_t> field{0};
#define POOLSHIM_COUNTER_HOOK_MEMBER(field, ...) std::atomic<std::uint64_t> field[k_hook_count] = {};
  // NOLINTEND(bugprone-macro-parentheses)
  POOLSHIM_COUNTER_TABLE(POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_HOOK_MEMBER, POOLSHIM_COUNTER_MEMBER,
                         POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_SKIP)
#undef POOLSHIM_COUNTER_MEMBER
#undef POOLSHIM_COUNTER_HOOK_MEMBER
};

extern constinit counters g_counters;

inline void bump(std::atomic<std::uint64_t>& c, std::uint64_t by = 1) noexcept {
  c.fetch_add(by, std::memory_order_relaxed);
}
inline void count_call(hook_id id) noexcept { bump(g_counters.hook_calls[static_cast<unsigned>(id)]); }

// A fork child starts from zero: the parent's figures are the parent's.
void reset_counters() noexcept;

}  // namespace poolshim::intercept

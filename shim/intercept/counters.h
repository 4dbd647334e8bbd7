// What the shim saw, as relaxed atomic counters (one cache line apart from nothing: these are
// observe-mode figures, not on the pool's hit path). The public layout is poolshim_counters in
// include/poolshim/poolshim.h; the field list below is the single source for both.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "intercept/hook_list.h"
#include "poolshim/poolshim.h"

namespace poolshim::intercept {

#define POOLSHIM_COUNTER_FIELDS(X) \
  X(device_allocs)                 \
  X(device_alloc_bytes)            \
  X(device_frees)                  \
  X(host_allocs)                   \
  X(host_alloc_bytes)              \
  X(host_frees)                    \
  X(managed_allocs)                \
  X(managed_alloc_bytes)           \
  X(async_allocs)                  \
  X(async_alloc_bytes)             \
  X(async_frees)                   \
  X(vmm_creates)                   \
  X(vmm_create_bytes)              \
  X(vmm_releases)                  \
  X(ipc_exports)                   \
  X(ipc_opens)                     \
  X(ipc_closes)                    \
  X(streams_created)               \
  X(streams_destroyed)             \
  X(contexts_created)              \
  X(contexts_destroyed)            \
  X(captures_begun)                \
  X(captures_ended)                \
  X(lookups)                       \
  X(lookups_wrapped)               \
  X(lookups_unknown)

static_assert(k_hook_count <= POOLSHIM_MAX_HOOKS, "poolshim_counters.hook_calls is too small");

struct counters {
// NOLINTNEXTLINE(bugprone-macro-parentheses): the argument is a member name
#define POOLSHIM_COUNTER_MEMBER(name) std::atomic<std::uint64_t> name{0};
  POOLSHIM_COUNTER_FIELDS(POOLSHIM_COUNTER_MEMBER)
#undef POOLSHIM_COUNTER_MEMBER
  std::atomic<std::uint64_t> hook_calls[k_hook_count] = {};
};

extern constinit counters g_counters;

inline void bump(std::atomic<std::uint64_t>& c, std::uint64_t by = 1) noexcept {
  c.fetch_add(by, std::memory_order_relaxed);
}
inline void count_call(hook_id id) noexcept { bump(g_counters.hook_calls[static_cast<unsigned>(id)]); }


// A fork child starts from zero: the parent's figures are the parent's.
void reset_counters() noexcept;

}  // namespace poolshim::intercept

// Filling the per-thread stack cache (stack_cache.h): the slow side, on a miss that may be
// captured; lookups are inline in the header.
#include "stats/stack_cache.h"

#include "stats/unwinder.h"

namespace poolshim::stats {
namespace {

// Pads a cached stack to whole groups of four: a slot that always holds what is expected.
constexpr std::uintptr_t k_pad_value = 0;

}  // namespace

bool stack_cache::remember(std::uintptr_t sp, const void* const* frames, const std::uintptr_t* slots, int depth,
                           std::uint32_t id) noexcept {
  if (depth <= 0 || depth > k_cached_depth) return false;
  for (int i = 0; i < depth; ++i)
    if (!on_own_stack(slots[i])) return false;
  int pos = 0;  // the first unused entry, else the least recently used
  while (pos < k_cached_stacks - 1 && order_at(pos) != 0) ++pos;
  if (order_at(pos) == 0) order_ |= static_cast<std::uint64_t>(pos + 1) << (8 * pos);
  move_to_front(pos);
  entry& c = entry_[order_at(0) - 1];
  c.sp = sp;
  c.depth = depth;
  c.id = id;
  for (int i = 0; i < depth; ++i) {
    c.frames[i].slot = slots[i];
    c.frames[i].ip = reinterpret_cast<std::uintptr_t>(frames[i]);
  }
  for (int i = depth; i < ((depth + 3) & ~3); ++i) c.frames[i] = {reinterpret_cast<std::uintptr_t>(&k_pad_value), 0};
  return true;
}

void stack_cache::capture(std::uintptr_t sp, void* const* frames, int depth, std::uint32_t id, int max,
                          std::uintptr_t shim_begin, std::uintptr_t shim_end) noexcept {
  void* again[k_cached_depth + 16];
  std::uintptr_t slots[k_cached_depth + 16];
  const int n = capture_stack_with_slots(again, slots, max < k_cached_depth + 16 ? max : k_cached_depth + 16, 0);
  int first = 0;
  while (first < n && reinterpret_cast<std::uintptr_t>(again[first]) >= shim_begin &&
         reinterpret_cast<std::uintptr_t>(again[first]) < shim_end)
    ++first;
  if (n - first < depth) return;
  for (int i = 0; i < depth; ++i)
    if (again[first + i] != frames[i]) return;
  (void)remember(sp, frames, slots + first, depth, id);
}

}  // namespace poolshim::stats

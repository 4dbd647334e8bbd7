// Filling the per-thread stack cache (stack_cache.h): the slow side, on a miss that may be
// captured; lookups are inline in the header.
#include "stats/stack_cache.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <utility>

#include "stats/unwinder.h"

namespace poolshim::stats {
namespace {

// The stacks' storage: an anonymous mapping (zero pages until a stack is stored in them).
std::size_t entries_size(std::size_t entry_bytes) noexcept {
  return (entry_bytes * k_cache_entries + 4095) & ~std::size_t{4095};
}
}  // namespace

stack_cache::~stack_cache() {
  if (entries_ != nullptr) munmap(entries_, entries_size(sizeof(entry)));
}

bool stack_cache::set_stack(std::uintptr_t lo, std::uintptr_t hi) noexcept {
  if (entries_ == nullptr) {
    void* p = mmap(nullptr, entries_size(sizeof(entry)), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    entries_ = static_cast<entry*>(p);
  }
  stack_lo_ = lo;
  stack_hi_ = hi;
  return true;
}

void stack_cache::reset() noexcept {
  last_hit_ = nullptr;
  rng_ = until_recheck_ = misses_ = failed_ = 0;
  off_ = false;
  for (auto& n : shape_next_) n = 0;
  for (auto& s : shapes_) s = shape{};
  for (auto& m : sets_) m = set_meta{};
}

bool stack_cache::has_room(std::uintptr_t sp) noexcept {
  const shape* s = shape_of(sp);
  if (s == nullptr) {
    const shape* pair = shapes_ + shape_pair(sp);
    return pair[0].sp == 0 || pair[1].sp == 0;
  }
  const set_meta& m = sets_[set_of(key(*s, sp))];
  for (std::uint32_t t : m.tag)
    if (t == 0) return true;
  return false;
}

std::uint32_t stack_cache::promote(int set, int w, int front) noexcept {
  set_meta& m = sets_[set];
  std::swap(entry_at(set, w), entry_at(set, front));
  const bool was_used = (m.used & (1u << front)) != 0;  // the other's mark goes with it
  m.used = static_cast<std::uint16_t>((m.used & ~(1u << w)) | (was_used ? 1u << w : 0u) | (1u << front));
  last_hit_ = &entry_at(set, front);
  return last_hit_->id;
}

bool stack_cache::take_capture(std::uintptr_t sp) noexcept {
  if (misses_ < k_capture_every) ++misses_;
  if (failed_ < k_failed_captures && has_room(sp)) return true;
  if (misses_ < k_capture_every) return false;
  misses_ = 0;
  return true;
}

bool stack_cache::remember(std::uintptr_t sp, const void* const* frames, const std::uintptr_t* slots, int depth,
                           std::uint32_t id, bool cut) noexcept {
  if (entries_ == nullptr || depth <= 0 || depth > k_cached_depth) return false;
  for (int i = 0; i < depth; ++i)
    if (!on_own_stack(slots[i]) || slots[i] < sp || slots[i] - sp > UINT32_MAX) {
      ++failed_;
      return false;
    }
  shape* s = shape_of(sp);
  if (s == nullptr) {
    // A new frame address: its shape is this stack's, replacing one of its pair (in turns); the
    // stacks stored under the replaced shape can no longer be found and are overwritten in time.
    const int pair = shape_pair(sp);
    std::uint8_t& next = shape_next_[pair / 2];
    s = shapes_ + pair + (shapes_[pair].sp == 0 ? 0 : shapes_[pair + 1].sp == 0 ? 1 : next);
    next ^= 1;
    s->sp = sp;
    for (int i = 0; i < k_key_slots; ++i) {
      const int f = depth <= k_key_slots   ? std::min(i, depth - 1)
                    : i < k_key_slots - 2  ? i
                    : i == k_key_slots - 2 ? depth / 2
                                           : depth - 1;
      s->off[i] = static_cast<std::uint32_t>(slots[f] - sp);
    }
  }
  // The key comes from the stack as it is now, read the way lookup will read it.
  const std::uint64_t k = key(*s, sp);
  const int set = set_of(k);
  set_meta& m = sets_[set];
  int way = -1;
  for (std::uint32_t ways = ways_tagged(m, tag_of(k)); ways != 0 && way < 0; ways &= ways - 1) {
    const entry& c = entry_at(set, __builtin_ctz(ways));
    if (c.sp == sp && matches(c, sp)) way = __builtin_ctz(ways);  // this very stack: stored again
  }
  for (int w = 0; w < k_cache_ways && way < 0; ++w)
    if (m.tag[w] == 0) way = w;
  if (way < 0) {
    // The clock: the first way not hit since the hand last passed it (each passed one loses its
    // mark), so that stacks in use stay and one used once goes.
    for (int i = 0; i < 2 * k_cache_ways && way < 0; ++i) {
      const int w = (m.hand + i) % k_cache_ways;
      if ((m.used & (1u << w)) != 0)
        m.used = static_cast<std::uint16_t>(m.used & ~(1u << w));
      else
        way = w;
    }
    m.hand = static_cast<std::uint8_t>((way + 1) % k_cache_ways);
  }
  entry& c = entry_at(set, way);
  c.sp = sp;
  c.id = id;
  c.depth = static_cast<std::uint16_t>(depth);
  c.cut = cut ? 1 : 0;
  for (int i = 0; i < depth; ++i) {
    c.off[i] = static_cast<std::uint32_t>(slots[i] - sp);
    c.ip[i] = reinterpret_cast<std::uintptr_t>(frames[i]);
  }
  for (int i = depth; i < ((depth + 3) & ~3); ++i) {  // whole groups of four: the last frame again
    c.off[i] = c.off[depth - 1];
    c.ip[i] = c.ip[depth - 1];
  }
  m.tag[way] = tag_of(k);
  m.used = static_cast<std::uint16_t>(m.used | (1u << way));  // a new stack gets one turn of the clock
  return true;
}

void stack_cache::capture(std::uintptr_t sp, void* const* frames, int depth, bool cut, std::uint32_t id, int max,
                          std::uintptr_t shim_begin, std::uintptr_t shim_end) noexcept {
  void* again[k_cached_depth + 16];
  std::uintptr_t slots[k_cached_depth + 16];
  const int n = capture_stack_with_slots(again, slots, max < k_cached_depth + 16 ? max : k_cached_depth + 16, 0);
  int first = 0;
  while (first < n && reinterpret_cast<std::uintptr_t>(again[first]) >= shim_begin &&
         reinterpret_cast<std::uintptr_t>(again[first]) < shim_end)
    ++first;
  bool same = n - first >= depth;
  for (int i = 0; same && i < depth; ++i) same = again[first + i] == frames[i];
  if (!same) {
    ++failed_;
    return;
  }
  (void)remember(sp, frames, slots + first, depth, id, cut);  // counts its own failure
}

}  // namespace poolshim::stats

// pointer_map: leaf management. Leaves are calloc'd (untouched pages cost nothing) and kept until
// the map dies, so a lookup racing with an erase reads valid memory.
#include "pool/pointer_map.h"

#include <cstdlib>

namespace poolshim::pool {

pointer_map::~pointer_map() {
  for (auto& l : top_) std::free(l.load(std::memory_order_relaxed));
}

bool pointer_map::insert(segment_info* s) noexcept {
  const std::uintptr_t first = s->seg.base >> kChunkShift;
  const std::uintptr_t last = (s->seg.base + s->seg.size - 1) >> kChunkShift;
  if (s->seg.size == 0 || (last >> (kTopBits + kLeafBits)) != 0 || last < first) return false;
  for (std::uintptr_t c = first; c <= last; ++c) {
    auto& top = top_[c >> kLeafBits];
    leaf* l = top.load(std::memory_order_relaxed);
    if (l == nullptr) {
      // std::atomic<T*> of zero bytes is a null pointer on every platform we build for.
      l = static_cast<leaf*>(std::calloc(1, sizeof(leaf)));
      if (l == nullptr) {
        erase(s);
        return false;
      }
      top.store(l, std::memory_order_release);
    }
    bool placed = false;
    for (auto& slot : l->chunks[c & ((std::uintptr_t{1} << kLeafBits) - 1)]) {
      if (slot.load(std::memory_order_relaxed) == nullptr) {
        slot.store(s, std::memory_order_release);
        placed = true;
        break;
      }
    }
    if (!placed) {  // only if segments of 1 MiB or less were inserted
      erase(s);
      return false;
    }
  }
  return true;
}

void pointer_map::erase(const segment_info* s) noexcept {
  const std::uintptr_t first = s->seg.base >> kChunkShift;
  const std::uintptr_t last = (s->seg.base + s->seg.size - 1) >> kChunkShift;
  for (std::uintptr_t c = first; c <= last && (c >> (kTopBits + kLeafBits)) == 0; ++c) {
    leaf* l = top_[c >> kLeafBits].load(std::memory_order_relaxed);
    if (l == nullptr) continue;
    for (auto& slot : l->chunks[c & ((std::uintptr_t{1} << kLeafBits) - 1)]) {
      if (slot.load(std::memory_order_relaxed) == s) slot.store(nullptr, std::memory_order_release);
    }
  }
}

}  // namespace poolshim::pool

// best_fit_allocator and block_arena. Invariants: the blocks of a segment tile it exactly in
// address order; two free neighbours never coexist (they are merged at once); table entries exist
// exactly at block starts.
#include "pool/best_fit_allocator.h"

#include <new>

namespace poolshim::pool {

block_arena::~block_arena() {
  for (block* c : chunks_) delete[] c;
}

block* block_arena::make() noexcept {
  if (free_ == nullptr) {
    block* c = new (std::nothrow) block[kChunk];
    if (c == nullptr) return nullptr;
    try {
      chunks_.push_back(c);
    } catch (...) {
      delete[] c;
      return nullptr;
    }
    for (std::size_t i = 0; i < kChunk; ++i) recycle(&c[i]);
  }
  block* b = free_;
  free_ = b->link;
  b->addr = 0;
  b->size = 0;
  b->prev = b->next = b->link = nullptr;
  b->seg = nullptr;
  b->ready_epoch = 0;
  return b;
}

void block_arena::recycle(block* b) noexcept {
  b->state.store(block_state::retired, std::memory_order_relaxed);
  b->link = free_;
  free_ = b;
}

void best_fit_allocator::set_entry(const block* b, block* value) noexcept {
  b->seg->table[(b->addr - b->seg->seg.base) >> kSmallShift].store(value, std::memory_order_release);
}

bool best_fit_allocator::insert(block* b) noexcept {
  b->state.store(block_state::free, std::memory_order_relaxed);
  try {
    free_.insert(b);
  } catch (...) {
    return false;
  }
  free_bytes_ += b->size;
  return true;
}

bool best_fit_allocator::add_segment(segment_info* s) noexcept {
  block* b = arena_.make();
  if (b == nullptr) return false;
  b->addr = s->seg.base;
  b->size = s->seg.size;
  b->seg = s;
  s->used = 0;
  if (!insert(b)) {
    arena_.recycle(b);
    return false;
  }
  set_entry(b, b);
  return true;
}

block* best_fit_allocator::take(block* b, std::size_t bytes) noexcept {
  block* rest = nullptr;
  if (b->size > bytes) {
    rest = arena_.make();
    if (rest == nullptr) return nullptr;
  }
  free_.erase(b);
  free_bytes_ -= b->size;
  if (rest != nullptr) {
    rest->addr = b->addr + bytes;
    rest->size = b->size - bytes;
    rest->seg = b->seg;
    rest->prev = b;
    rest->next = b->next;
    if (b->next != nullptr) b->next->prev = rest;
    b->next = rest;
    b->size = bytes;
    if (!insert(rest)) {  // host OOM inside std::set: undo the split
      b->size += rest->size;
      b->next = rest->next;
      if (rest->next != nullptr) rest->next->prev = b;
      arena_.recycle(rest);
      insert(b);
      return nullptr;
    }
    set_entry(rest, rest);
  }
  b->seg->used += b->size;
  return b;
}

block* best_fit_allocator::allocate(std::size_t bytes) noexcept {
  auto it = free_.lower_bound(bytes);
  return it == free_.end() ? nullptr : take(*it, bytes);
}

block* best_fit_allocator::allocate_from(segment_info* s, std::size_t bytes) noexcept {
  for (block* b = s->table[0].load(std::memory_order_relaxed); b != nullptr; b = b->next) {
    if (b->state.load(std::memory_order_relaxed) == block_state::free && b->size >= bytes) return take(b, bytes);
  }
  return nullptr;
}

void best_fit_allocator::deallocate(block* b) noexcept {
  b->seg->used -= b->size;
  if (block* p = b->prev; p != nullptr && p->state.load(std::memory_order_relaxed) == block_state::free) {
    free_.erase(p);
    free_bytes_ -= p->size;
    p->size += b->size;
    p->next = b->next;
    if (b->next != nullptr) b->next->prev = p;
    set_entry(b, nullptr);
    arena_.recycle(b);
    b = p;
  }
  if (block* n = b->next; n != nullptr && n->state.load(std::memory_order_relaxed) == block_state::free) {
    free_.erase(n);
    free_bytes_ -= n->size;
    b->size += n->size;
    b->next = n->next;
    if (n->next != nullptr) n->next->prev = b;
    set_entry(n, nullptr);
    arena_.recycle(n);
  }
  if (!insert(b)) b->state.store(block_state::pending, std::memory_order_relaxed);  // lost until a retry
}

void best_fit_allocator::remove_segment(segment_info* s) noexcept {
  block* b = s->table[0].load(std::memory_order_relaxed);
  if (b == nullptr || b->size != s->seg.size || b->state.load(std::memory_order_relaxed) != block_state::free) return;
  free_.erase(b);
  free_bytes_ -= b->size;
  set_entry(b, nullptr);
  arena_.recycle(b);
}

}  // namespace poolshim::pool

// host_pool (see host_pool.h). The source is never called with the lock held on the way up (a
// slab is pre-touched and pinned: milliseconds), only on failure clean-ups and releases.
#include "pool/host_pool.h"

#include <algorithm>
#include <bit>
#include <new>
#include <vector>

#include "pool/locked_counter.h"
#include "pool/size_classes.h"

namespace poolshim::pool {
namespace {

std::size_t round_up(std::size_t v, std::size_t to) noexcept { return (v + to - 1) & ~(to - 1); }

host_pool_options normalise(host_pool_options o) noexcept {
  o.slab_size = round_up(std::max<std::size_t>(o.slab_size, host_pool::kSlabGranule), host_pool::kSlabGranule);
  o.first_slab_size =
      std::min(round_up(std::max<std::size_t>(o.first_slab_size, host_pool::kSlabGranule), host_pool::kSlabGranule),
               o.slab_size);
  o.bucket_limit = std::bit_floor(std::clamp<std::size_t>(o.bucket_limit, host_pool::kPage, o.slab_size));
  return o;
}

}  // namespace

host_pool::host_pool(segment_resource& source, host_pool_options options) noexcept
    : source_(source), options_(normalise(options)), fit_(arena_) {}

host_pool::~host_pool() {
  for (auto& [base, sl] : slabs_) {
    source_.deallocate(sl.info->seg);
    delete[] sl.info->owned_table;
    delete sl.info;
  }
}

std::size_t host_pool::rounded_size(std::size_t bytes) const noexcept {
  if (bytes == 0 || bytes > kMaxLargeRequest) return 0;
  if (bytes <= options_.bucket_limit) return std::max(kPage, std::bit_ceil(bytes));
  return round_up(bytes, kPage);
}

void host_pool::hand_out_locked(block* b, bool hit, std::uintptr_t* out) noexcept {
  b->state.store(block_state::small_allocated, std::memory_order_relaxed);
  locked_add(in_use_, b->size);
  locked_peak(peak_in_use_, in_use_.load(std::memory_order_relaxed));
  if (hit) locked_add(hits_, 1);
  *out = b->addr;
}

status host_pool::allocate(std::size_t bytes, unsigned flags, std::uintptr_t* out) noexcept {
  const std::size_t size = rounded_size(bytes);
  if (size == 0 || out == nullptr) return status::invalid_argument;
  requests_.fetch_add(1, std::memory_order_relaxed);
  for (int attempt = 0; attempt < 3; ++attempt) {
    segment_info* fresh = nullptr;
    if (attempt != 0) {
      const status st = new_slab(std::max(next_slab_size(), round_up(size + kPage, kSlabGranule)), &fresh);
      if (st != status::ok) {
        failures_.fetch_add(1, std::memory_order_relaxed);
        return st;
      }
    }
    std::lock_guard lock(mutex_);
    block* b = fresh != nullptr ? fit_.allocate_from(fresh, size) : fit_.allocate(size);
    if (b == nullptr) continue;  // none fits (or another thread took the fresh slab's room)
    try {
      live_.emplace(b->addr, live_block{b, flags});
    } catch (...) {
      fit_.deallocate(b);
      failures_.fetch_add(1, std::memory_order_relaxed);
      return status::out_of_memory;
    }
    hand_out_locked(b, fresh == nullptr, out);
    return status::ok;
  }
  failures_.fetch_add(1, std::memory_order_relaxed);
  return status::out_of_memory;
}

std::size_t host_pool::next_slab_size() const noexcept {
  const std::size_t held = reserved_.load(std::memory_order_relaxed);
  return round_up(std::clamp<std::size_t>(held, options_.first_slab_size, options_.slab_size), kSlabGranule);
}

status host_pool::new_slab(std::size_t bytes, segment_info** out) noexcept {
  segment seg;
  const status st = source_.allocate(bytes, &seg);
  if (st != status::ok) return st;
  auto* s = new (std::nothrow) segment_info;
  const std::size_t len = best_fit_allocator::table_len(seg.size);
  auto* table = s != nullptr ? new (std::nothrow) std::atomic<block*>[len]() : nullptr;
  if (table != nullptr) {
    s->seg = seg;
    s->owned_table = s->table = table;
    s->table_len = len;
    std::lock_guard lock(mutex_);
    bool ok = fit_.add_segment(s);
    block* guard = ok ? fit_.allocate_from(s, kPage) : nullptr;  // the slab's first page
    if (guard != nullptr) {
      guard->state.store(block_state::small_allocated, std::memory_order_relaxed);
      try {
        slabs_.emplace(seg.base, slab{s, guard});
      } catch (...) {
        fit_.deallocate(guard);
        guard = nullptr;
      }
    }
    if (ok && guard == nullptr) {
      fit_.remove_segment(s);
      ok = false;
    }
    if (ok) {
      locked_add(reserved_, seg.size);
      locked_peak(peak_reserved_, reserved_.load(std::memory_order_relaxed));
      locked_add(slab_count_, 1);
      *out = s;
      return status::ok;
    }
  }
  delete[] table;
  delete s;
  source_.deallocate(seg);
  return status::out_of_memory;
}

segment_info* host_pool::slab_of_locked(std::uintptr_t p) const noexcept {
  auto it = slabs_.upper_bound(p);
  if (it == slabs_.begin()) return nullptr;
  --it;
  return p - it->first < it->second.info->seg.size ? it->second.info : nullptr;
}

status host_pool::deallocate(std::uintptr_t p) noexcept {
  std::lock_guard lock(mutex_);
  auto it = live_.find(p);
  if (it == live_.end()) return slab_of_locked(p) != nullptr ? status::invalid_pointer : status::unknown_pointer;
  block* b = it->second.blk;
  live_.erase(it);
  locked_add(in_use_, 0 - std::uint64_t{b->size});
  fit_.deallocate(b);
  return status::ok;
}

status host_pool::find(std::uintptr_t p, host_block_info* out) const noexcept {
  std::lock_guard lock(mutex_);
  auto it = live_.upper_bound(p);
  if (it != live_.begin()) {
    --it;
    const block* b = it->second.blk;
    if (p - b->addr < b->size) {
      if (out != nullptr) *out = host_block_info{b->addr, b->size, it->second.flags};
      return status::ok;
    }
  }
  return slab_of_locked(p) != nullptr ? status::invalid_pointer : status::unknown_pointer;
}

bool host_pool::owns(std::uintptr_t p) const noexcept {
  std::lock_guard lock(mutex_);
  return slab_of_locked(p) != nullptr;
}

std::size_t host_pool::idle_slab_bytes() const noexcept {
  std::lock_guard lock(mutex_);
  std::size_t bytes = 0;
  for (const auto& [base, sl] : slabs_)
    if (sl.info->used == kPage) bytes += sl.info->seg.size;
  return bytes;
}

std::size_t host_pool::release_idle(std::size_t keep_slabs) noexcept {
  std::vector<segment_info*> doomed;
  {
    std::lock_guard lock(mutex_);
    try {
      std::size_t kept = 0;
      for (auto it = slabs_.begin(); it != slabs_.end();) {
        segment_info* s = it->second.info;
        if (s->used != kPage || kept < keep_slabs) {  // in use beyond its guard page, or kept
          kept += s->used == kPage;
          ++it;
          continue;
        }
        doomed.push_back(s);                // may throw: then this slab stays
        fit_.deallocate(it->second.guard);  // coalesces into one free block covering the slab
        fit_.remove_segment(s);
        it = slabs_.erase(it);
        locked_add(reserved_, 0 - std::uint64_t{s->seg.size});
        locked_add(slab_count_, 0 - std::uint64_t{1});
      }
    } catch (...) {
    }
  }
  std::size_t bytes = 0;
  for (segment_info* s : doomed) {
    source_.deallocate(s->seg);
    bytes += s->seg.size;
    delete[] s->owned_table;
    delete s;
  }
  return bytes;
}

host_pool_stats host_pool::stats() const noexcept {
  host_pool_stats r;
  r.requests = requests_.load(std::memory_order_relaxed);
  r.failures = failures_.load(std::memory_order_relaxed);
  r.pool_hits = hits_.load(std::memory_order_relaxed);
  r.bytes_in_use = in_use_.load(std::memory_order_relaxed);
  r.bytes_reserved = reserved_.load(std::memory_order_relaxed);
  r.peak_in_use = peak_in_use_.load(std::memory_order_relaxed);
  r.peak_reserved = peak_reserved_.load(std::memory_order_relaxed);
  r.slabs = slab_count_.load(std::memory_order_relaxed);
  return r;
}

}  // namespace poolshim::pool

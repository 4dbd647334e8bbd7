// device_pool's slow paths: thread-cache set-up and flushes, the shared best-fit allocator, the
// idle cache of large blocks (best fit within a bound), new segments and the idle bound kept before
// each, fence-pending blocks, release of idle segments and the OOM path.
// One mutex guards the shared state; the source is never called with it held on the way up (a
// cuMemAlloc_v2 may take milliseconds), only on rare failure clean-ups.
#include "pool/device_pool.h"

#include <algorithm>
#include <bit>
#include <new>

#include "pool/locked_counter.h"

namespace poolshim::pool {

constexpr int kOomRetries = 3;
namespace {

device_pool_options normalise(device_pool_options o) noexcept {
  o.small_limit = std::clamp<std::size_t>(o.small_limit, pointer_map::kMinSegment, std::size_t{1} << 20);
  o.small_limit &= ~(kSmallGranule - 1);
  o.segment_size = std::max(round_small(o.segment_size), 2 * o.small_limit);
  o.reuse_bits = std::clamp(o.reuse_bits, 1u, 20u);
  o.large_class_bits = std::clamp(o.large_class_bits, 1u, kLargeClassBits);
  return o;
}

}  // namespace

device_pool::device_pool(segment_resource& source, fence& reuse_fence, device_pool_options options) noexcept
    : source_(source),
      fence_(reuse_fence),
      completed_(reuse_fence.completed_epoch()),
      free_epoch_(reuse_fence.current_epoch()),
      options_(normalise(options)),
      small_bins_(options_.small_limit >> kSmallShift),
      cache_slot_(options_.thread_cache_bytes != 0 ? acquire_cache_slot() : kNoCacheSlot),
      small_(arena_) {}

device_pool::~device_pool() {
  lock_cache_registry();
  for (thread_cache* tc = caches_; tc != nullptr; tc = tc->next) orphan_thread_cache(tc);
  caches_ = nullptr;
  release_cache_slot(cache_slot_);
  unlock_cache_registry();
  for (segment_info* lists : {segments_, spare_infos_}) {
    while (segment_info* s = lists) {
      lists = s->next;
      if (s->seg.size != 0) source_.deallocate(s->seg);
      delete[] s->owned_table;
      delete s;
    }
  }
}

// ---- thread caches ----

thread_cache* device_pool::local_cache() noexcept {
  if (cache_slot_ == kNoCacheSlot) return nullptr;
  thread_cache* tc = tl_thread_caches[cache_slot_];
  if (tc == &g_empty_thread_cache || tc->owner.load(std::memory_order_acquire) != this) return adopt_cache();
  if (tc->flush_requested.load(std::memory_order_relaxed)) {
    tc->flush_requested.store(false, std::memory_order_relaxed);
    flush_cache(tc);
  }
  return tc;
}

thread_cache* device_pool::adopt_cache() noexcept {
  if (!arm_thread_cache_exit()) return nullptr;
  thread_cache* old = tl_thread_caches[cache_slot_];
  auto* tc = new (std::nothrow) thread_cache;
  if (tc == nullptr) return nullptr;
  tc->limit = options_.thread_cache_bytes;
  tc->owner.store(this, std::memory_order_relaxed);
  lock_cache_registry();
  tc->next = caches_;
  if (caches_ != nullptr) caches_->prev = tc;
  caches_ = tc;
  unlock_cache_registry();
  tl_thread_caches[cache_slot_] = tc;
  // `old` can only be the orphan of a destroyed pool that held this slot before.
  if (old != &g_empty_thread_cache) destroy_thread_cache(old);
  return tc;
}

bool device_pool::make_bin(thread_cache* tc, tcache_bin& bin, std::size_t block_bytes) noexcept {
  if (bin.cap != 0) return true;
  if (block_bytes > tc->limit) return false;
  const auto n = static_cast<std::uint32_t>(std::min<std::size_t>(tc->limit / block_bytes, kMaxBinCount));
  const std::uint32_t cap = std::bit_floor(n);
  delete[] bin.slots;  // a bin is never shrunk in place; this only runs on a fresh cache
  bin.slots = new (std::nothrow) tcache_slot[cap];
  if (bin.slots == nullptr) return false;
  bin.head = bin.count = 0;
  bin.mask = cap - 1;
  bin.cap = cap;
  return true;
}

void device_pool::flush_cache(thread_cache* tc) noexcept {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < small_bins_; ++i) {
    tcache_bin& b = tc->bins[i];
    while (b.count != 0) {
      const tcache_slot s = b.slots[b.head];
      b.head = (b.head + 1) & b.mask;
      --b.count;
      return_small_locked(s.blk, s.epoch);
    }
  }
  tc->bytes = 0;
}

void device_pool::flush_thread_cache() noexcept {
  if (cache_slot_ == kNoCacheSlot) return;
  thread_cache* tc = tl_thread_caches[cache_slot_];
  if (tc != &g_empty_thread_cache && tc->owner.load(std::memory_order_acquire) == this) flush_cache(tc);
}

void device_pool::request_flushes() noexcept {
  lock_cache_registry();
  for (thread_cache* tc = caches_; tc != nullptr; tc = tc->next) {
    tc->flush_requested.store(true, std::memory_order_relaxed);
  }
  unlock_cache_registry();
}

void device_pool::retire_cache(thread_cache* tc) noexcept {
  flush_cache(tc);
  {
    std::lock_guard lock(mutex_);
    locked_add(slow_in_use_, tc->in_use.load(std::memory_order_relaxed));
  }
  if (tc->prev != nullptr)
    tc->prev->next = tc->next;
  else
    caches_ = tc->next;
  if (tc->next != nullptr) tc->next->prev = tc->prev;
  retired_hits_.fetch_add(tc->hits.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

// ---- shared state (mutex_ held) ----

void device_pool::hand_out_locked(block* b, block_state state, bool hit) noexcept {
  b->state.store(state, std::memory_order_relaxed);
  out_of_shared_ += b->size;
  locked_peak(peak_in_use_, out_of_shared_);
  locked_add(slow_in_use_, static_cast<std::int64_t>(b->size));
  if (hit) locked_add<std::uint64_t>(slow_hits_, 1);
}

void device_pool::return_small_locked(block* b, std::uint64_t epoch) noexcept {
  out_of_shared_ -= b->size;
  b->ready_epoch = epoch;
  if (epoch <= completed_->load(std::memory_order_acquire)) {
    small_.deallocate(b);
  } else {
    b->state.store(block_state::pending, std::memory_order_relaxed);
    b->link = pending_;
    pending_ = b;
  }
}

void device_pool::process_pending_locked() noexcept {
  if (pending_ == nullptr) return;
  const std::uint64_t done = completed_->load(std::memory_order_acquire);
  // A block enters pending_ only while its epoch is not complete: if no fence completed since the
  // last scan, none is ready, and the scan (linear in the pending blocks) is skipped.
  if (done == pending_scanned_at_) return;
  pending_scanned_at_ = done;
  for (block** pp = &pending_; *pp != nullptr;) {
    block* b = *pp;
    if (b->ready_epoch <= done) {
      *pp = b->link;
      b->link = nullptr;
      small_.deallocate(b);
    } else {
      pp = &b->link;
    }
  }
}

segment_info* device_pool::make_segment_info(bool large, std::size_t bytes) noexcept {
  segment_info* s = spare_infos_;
  if (s != nullptr) {
    spare_infos_ = s->next;
  } else {
    s = new (std::nothrow) segment_info;
    if (s == nullptr) return nullptr;
  }
  s->prev = s->next = nullptr;
  s->used = 0;
  s->large = large;
  if (large) {
    s->table = &s->single;
    s->table_len = 1;
    return s;
  }
  // Every owned table covers segment_size (tables are never freed while the pool lives: a lookup
  // racing with a bad free may read one); a smaller segment uses its first entries.
  const std::size_t cap = small_.table_len(options_.segment_size);
  const std::size_t len = std::min(cap, small_.table_len(bytes));
  if (s->owned_table == nullptr) {
    s->owned_table = new (std::nothrow) std::atomic<block*>[cap]();
    if (s->owned_table == nullptr) {
      s->next = spare_infos_;
      spare_infos_ = s;
      return nullptr;
    }
  }
  s->table = s->owned_table;
  s->table_len = len;
  return s;
}

// ---- allocation ----

status device_pool::allocate_slow(std::size_t bytes, std::uintptr_t* out) noexcept {
  if (bytes == 0 || out == nullptr) return status::invalid_argument;
  if (const std::size_t bin = (bytes - 1) >> kSmallShift; bin < small_bins_) {
    // This thread's cache holds a block of the size that waits for a fence: let the fence make
    // progress, and take the block if it has passed (a fence per batch of frees, not per miss).
    const tcache_bin& b = tl_thread_caches[cache_slot_]->bins[bin];
    if (b.count != 0) {
      const std::uint64_t epoch = b.slots[b.head].epoch;
      fence_.poll(epoch);
      if (epoch <= completed_->load(std::memory_order_acquire)) return allocate(bytes, out);
    }
  }
  slow_requests_.fetch_add(1, std::memory_order_relaxed);
  const status st = bytes <= options_.small_limit ? allocate_small(round_small(bytes), out)
                    : bytes > kMaxLargeRequest    ? status::out_of_memory
                                                  : allocate_large(bytes, out);
  // Counted apart from the requests, so that a hit rate is of the allocations served.
  if (st != status::ok) failures_.fetch_add(1, std::memory_order_relaxed);
  return st;
}

status device_pool::allocate_small(std::size_t bytes, std::uintptr_t* out) noexcept {
  local_cache();  // installs this thread's cache and honours a flush request
  bool polled = false, recovered = false, flushed = false;
  for (int attempt = 0;; ++attempt) {
    std::uint64_t waiting_for = 0;  // the oldest epoch a pending block waits for, if any
    std::size_t grow = options_.segment_size;
    {
      std::lock_guard lock(mutex_);
      process_pending_locked();
      if (options_.grow_small_segments) {
        grow = std::min(options_.segment_size,
                        std::max({pointer_map::kMinSegment, std::bit_ceil(small_reserved_ + bytes)}));
      }
      if (block* b = small_.allocate(bytes)) {
        hand_out_locked(b, block_state::small_allocated, true);
        *out = b->addr;
        return status::ok;
      }
      for (const block* b = pending_; b != nullptr; b = b->link)
        if (waiting_for == 0 || b->ready_epoch < waiting_for) waiting_for = b->ready_epoch;
    }
    if (waiting_for != 0 && !polled) {  // freed blocks wait for a fence: progress before growth
      polled = true;
      fence_.poll(waiting_for, /*urgent=*/true);  // the alternative is a new segment
      --attempt;
      continue;
    }
    // Blocks that thread caches hold for other sizes may be what fills the segments: before a new
    // one, this thread's go back to the shared pool (others' on their next slow path).
    if (!flushed) {
      flushed = true;
      if (cache_slot_ != kNoCacheSlot && tl_thread_caches[cache_slot_]->bytes != 0) {
        flush_thread_cache();
        request_flushes();
        --attempt;
        continue;
      }
    }
    keep_idle_bound(grow, bytes);
    segment_info* s = nullptr;
    status st = new_segment(grow, false, &s);
    if (st == status::ok) {
      std::lock_guard lock(mutex_);
      // Another thread may have taken part of the new segment already; a 2 * small_limit segment
      // still holds this request unless two others raced for it, then the loop tries again.
      if (block* b = small_.allocate_from(s, bytes)) {
        hand_out_locked(b, block_state::small_allocated, false);
        *out = b->addr;
        return status::ok;
      }
      continue;
    }
    // Another thread may take what a recovery freed: more rounds while they free something.
    if (st != status::out_of_memory || attempt >= kOomRetries || (attempt > 0 && !recovered)) return st;
    recovered = recover_from_oom();
  }
}

status device_pool::allocate_large(std::size_t bytes, std::uintptr_t* out) noexcept {
  const std::size_t size = large_class_size(bytes, options_.large_class_bits);
  // Best fit within the bound: the smallest ready idle block of at least `size` bytes and at most
  // size + size / 2^reuse_bits, of any class. The block stays whole: the pointer is its base.
  const std::size_t bound = size + (size >> options_.reuse_bits);
  block key;
  key.size = size;
  bool polled = false, recovered = false;
  for (int attempt = 0;; ++attempt) {
    std::uint64_t waiting_for = 0;
    {
      std::lock_guard lock(mutex_);
      const std::uint64_t done = completed_->load(std::memory_order_acquire);
      for (auto it = idle_large_.lower_bound(&key); it != idle_large_.end() && (*it)->size <= bound; ++it) {
        block* b = *it;
        if (b->ready_epoch > done) {
          if (waiting_for == 0 || b->ready_epoch < waiting_for) waiting_for = b->ready_epoch;
          continue;
        }
        unlink_idle_large_locked(b);
        b->requested = bytes;
        large_slack_ += b->size - bytes;
        hand_out_locked(b, block_state::large_allocated, true);
        *out = b->addr;
        return status::ok;
      }
    }
    if (waiting_for != 0 && !polled) {  // as for small blocks, and growth here is a whole segment
      polled = true;
      fence_.poll(waiting_for, /*urgent=*/true);
      --attempt;
      continue;
    }
    keep_idle_bound(size, bytes);
    segment_info* s = nullptr;
    status st = new_segment(size, true, &s);
    if (st == status::ok) {
      std::lock_guard lock(mutex_);
      block* b = s->single.load(std::memory_order_relaxed);
      b->requested = std::min(bytes, b->size);
      large_slack_ += b->size - b->requested;
      hand_out_locked(b, block_state::large_allocated, false);
      *out = b->addr;
      return status::ok;
    }
    // Another thread may take what a recovery freed: more rounds while they free something.
    if (st != status::out_of_memory || attempt >= kOomRetries || (attempt > 0 && !recovered)) return st;
    recovered = recover_from_oom();
  }
}

void device_pool::unlink_idle_large_locked(block* b) noexcept {
  idle_large_.erase(b);  // absent when the set could not take it: nothing erased
  (b->prev != nullptr ? b->prev->next : idle_oldest_) = b->next;
  (b->next != nullptr ? b->next->prev : idle_newest_) = b->prev;
  b->prev = b->next = nullptr;
}

std::size_t device_pool::in_use_bytes() const noexcept {
  std::int64_t in_use = slow_in_use_.load(std::memory_order_relaxed);
  lock_cache_registry();
  for (const thread_cache* tc = caches_; tc != nullptr; tc = tc->next)
    in_use += tc->in_use.load(std::memory_order_relaxed);
  unlock_cache_registry();
  return static_cast<std::size_t>(std::max<std::int64_t>(in_use, 0));
}

// The footprint bound: a new segment of `grow` bytes for a request of `request` must leave reserved
// <= (1 + idle_percent / 100) x the high-water mark of bytes in use (+ request), large blocks
// counted as requested (their slack is not in use); idle segments go back, largest first, until it
// holds or none is left. Reserved memory peaks only here, so this bounds the peak by the peak in use.
bool device_pool::over_idle_bound(std::size_t grow, std::size_t request, std::size_t* keep_idle) noexcept {
  if (options_.idle_percent == kNoIdleBound) return false;
  const std::size_t in_use = in_use_bytes();
  std::lock_guard lock(mutex_);
  const std::size_t reserved = reserved_.load(std::memory_order_relaxed);
  // Against the most in use seen at a growth since the last release_idle(), not the bytes in use
  // now: the figure that matters is the peak, and memory kept idle below it is what the next
  // iteration of a loop reuses (returning idle memory over time is release_idle's job).
  const std::size_t now = in_use - std::min(in_use, large_slack_) + request;
  high_water_ = options_.idle_bound_now ? now : std::max(high_water_, now);
  const std::size_t live = high_water_;
  const std::size_t allowed = live + live / 100 * options_.idle_percent + kept_idle_.load(std::memory_order_relaxed);
  const std::size_t idle = reserved - std::min(reserved, out_of_shared_);
  if (reserved + grow <= allowed || idle == 0) return false;
  const std::size_t excess = reserved + grow - allowed;
  *keep_idle = idle > excess ? idle - excess : 0;
  return true;
}

void device_pool::keep_idle_bound(std::size_t grow, std::size_t request) noexcept {
  std::size_t keep = 0;
  if (!over_idle_bound(grow, request, &keep)) return;
  std::uint64_t count = 0;
  release_segments(keep, &count);
  if (count != 0) bound_releases_.fetch_add(count, std::memory_order_relaxed);
}

status device_pool::new_segment(std::size_t bytes, bool large, segment_info** out) noexcept {
  segment seg;
  const status st = source_.allocate(bytes, &seg);
  if (st != status::ok) return st;
  std::lock_guard lock(mutex_);
  segment_info* s = make_segment_info(large, seg.size);
  block* b = large && s != nullptr ? arena_.make() : nullptr;
  bool ok = s != nullptr && (!large || b != nullptr);
  if (ok) {
    s->seg = seg;
    s->used = large ? seg.size : 0;  // a large segment is idle only once released from its class cache
    if (large) {
      b->addr = seg.base;
      b->size = seg.size;
      b->seg = s;
      b->state.store(block_state::large_cached, std::memory_order_relaxed);
      s->single.store(b, std::memory_order_release);
    }
    ok = map_.insert(s);
    if (ok && !large && !small_.add_segment(s)) {
      map_.erase(s);
      ok = false;
    }
  }
  if (!ok) {
    if (b != nullptr) arena_.recycle(b);
    if (s != nullptr) {
      s->single.store(nullptr, std::memory_order_relaxed);
      s->seg = segment{};
      s->next = spare_infos_;
      spare_infos_ = s;
    }
    source_.deallocate(seg);
    return status::out_of_memory;
  }
  s->next = segments_;
  if (segments_ != nullptr) segments_->prev = s;
  segments_ = s;
  locked_add<std::uint64_t>(reserved_, seg.size);
  if (!large) small_reserved_ += seg.size;
  locked_peak(peak_reserved_, reserved_.load(std::memory_order_relaxed));
  locked_add<std::uint64_t>(segment_count_, 1);
  *out = s;
  return status::ok;
}

// ---- free ----

status device_pool::deallocate_slow(std::uintptr_t p, std::size_t* freed_bytes) noexcept {
  block* b = map_.find_block(p);
  if (b == nullptr) return owns(p) ? status::invalid_pointer : status::unknown_pointer;
  const block_state state = b->state.load(std::memory_order_relaxed);
  if (state == block_state::small_allocated) {
    const std::size_t size = b->size;
    if (freed_bytes != nullptr) *freed_bytes = size;
    thread_cache* tc = local_cache();
    const std::uint64_t epoch = fence_.epoch_for_free();
    if (tc != nullptr) {
      tcache_bin& bin = tc->bins[(size >> kSmallShift) - 1];
      if (make_bin(tc, bin, size) && bin.count < bin.cap && tc->bytes + size <= tc->limit) {
        block_state expected = block_state::small_allocated;
        if (!b->state.compare_exchange_strong(expected, block_state::cached, std::memory_order_relaxed)) {
          return status::invalid_pointer;
        }
        bin.slots[(bin.head + bin.count) & bin.mask] = tcache_slot{b, epoch};
        ++bin.count;
        tc->bytes += size;
        relaxed_add(tc->in_use, -static_cast<std::int64_t>(size));
        return status::ok;
      }
    }
    bool trim = false;
    {
      std::lock_guard lock(mutex_);
      block_state expected = block_state::small_allocated;
      if (!b->state.compare_exchange_strong(expected, block_state::pending, std::memory_order_relaxed)) {
        return status::invalid_pointer;
      }
      return_small_locked(b, epoch);
      locked_add(slow_in_use_, -static_cast<std::int64_t>(size));
      trim = over_idle_limit_locked();
    }
    if (trim) release_segments(options_.idle_limit);
    return status::ok;
  }
  if (state == block_state::large_allocated) {
    if (freed_bytes != nullptr) *freed_bytes = b->size;
    const std::uint64_t epoch = fence_.epoch_for_free();
    bool trim = false;
    {
      std::lock_guard lock(mutex_);
      block_state expected = block_state::large_allocated;
      if (!b->state.compare_exchange_strong(expected, block_state::large_cached, std::memory_order_relaxed)) {
        return status::invalid_pointer;
      }
      b->ready_epoch = epoch;
      large_slack_ -= b->size - b->requested;
      b->prev = idle_newest_;
      b->next = nullptr;
      (idle_newest_ != nullptr ? idle_newest_->next : idle_oldest_) = b;
      idle_newest_ = b;
      try {
        idle_large_.insert(b);
      } catch (...) {  // host out of memory: the block stays in the list, released by the next trim
      }
      out_of_shared_ -= b->size;
      locked_add(slow_in_use_, -static_cast<std::int64_t>(b->size));
      trim = over_idle_limit_locked();
    }
    if (trim) release_segments(options_.idle_limit);
    return status::ok;
  }
  return status::invalid_pointer;
}

// ---- release and OOM ----

bool device_pool::over_idle_limit_locked() const noexcept {
  return options_.idle_limit != 0 && reserved_.load(std::memory_order_relaxed) - out_of_shared_ > options_.idle_limit;
}

std::size_t device_pool::release_segments(std::size_t keep_idle, std::uint64_t* count_out) noexcept {
  segment_info* doomed = nullptr;
  {
    std::lock_guard lock(mutex_);
    process_pending_locked();
    const std::uint64_t done = completed_->load(std::memory_order_acquire);
    std::size_t idle = reserved_.load(std::memory_order_relaxed) - out_of_shared_;
    // Largest first: fewest driver calls for the bytes, and the blocks least often asked for (the
    // replay measured it against oldest first: higher hit rates on adversarial_mix and training_loop). Then, oldest
    // first, blocks the index could not take (host out of memory).
    for (auto it = idle_large_.end(); it != idle_large_.begin() && idle > keep_idle;) {
      block* b = *--it;
      if (b->ready_epoch <= done) {
        it = idle_large_.erase(it);
        unlink_idle_large_locked(b);
        b->seg->used = 0;
        idle -= b->size;
      }
    }
    for (block* b = idle_oldest_; b != nullptr && idle > keep_idle;) {
      block* next = b->next;
      if (b->ready_epoch <= done) {
        unlink_idle_large_locked(b);
        b->seg->used = 0;
        idle -= b->size;
      }
      b = next;
    }
    for (segment_info* s = segments_; s != nullptr;) {
      segment_info* next = s->next;
      // Large segments marked above go whatever the budget; small ones while it is exceeded.
      const bool go = s->large ? s->used == 0 : best_fit_allocator::idle(s) && idle > keep_idle;
      if (go) {
        if (!s->large) {
          idle -= s->seg.size;
          small_reserved_ -= s->seg.size;
        }
        if (s->large) {
          arena_.recycle(s->single.load(std::memory_order_relaxed));
          s->single.store(nullptr, std::memory_order_release);
        } else {
          small_.remove_segment(s);
        }
        map_.erase(s);
        (s->prev != nullptr ? s->prev->next : segments_) = next;
        if (next != nullptr) next->prev = s->prev;
        s->next = doomed;
        doomed = s;
      }
      s = next;
    }
  }
  std::size_t bytes = 0;
  std::uint64_t count = 0;
  segment_info* last = nullptr;
  for (segment_info* s = doomed; s != nullptr; s = s->next) {
    source_.deallocate(s->seg);
    bytes += s->seg.size;
    ++count;
    s->seg = segment{};
    last = s;
  }
  if (last != nullptr) {
    std::lock_guard lock(mutex_);
    last->next = spare_infos_;
    spare_infos_ = doomed;
    locked_add<std::uint64_t>(reserved_, 0 - std::uint64_t{bytes});
    locked_add<std::uint64_t>(segment_count_, 0 - count);
  }
  if (count_out != nullptr) *count_out = count;
  return bytes;
}

std::size_t device_pool::release_idle() noexcept {
  flush_thread_cache();
  request_flushes();
  {
    std::lock_guard lock(mutex_);
    high_water_ = 0;  // the idle bound starts again from what is in use
  }
  return release_segments();
}

std::size_t device_pool::trim(std::size_t bytes) noexcept {
  if (bytes == 0) return 0;
  flush_thread_cache();
  request_flushes();
  std::size_t keep = 0;
  {
    std::lock_guard lock(mutex_);
    process_pending_locked();
    const std::size_t idle = reserved_.load(std::memory_order_relaxed) - out_of_shared_;
    keep = idle > bytes ? idle - bytes : 0;
  }
  return release_segments(keep);
}

std::size_t device_pool::preallocate(std::size_t bytes) noexcept {
  std::size_t got = 0;
  while (got < bytes) {
    segment_info* s = nullptr;
    if (new_segment(options_.segment_size, false, &s) != status::ok) break;
    got += s->seg.size;
  }
  return got;
}

std::size_t device_pool::idle_bytes() const noexcept {
  std::lock_guard lock(mutex_);
  return reserved_.load(std::memory_order_relaxed) - out_of_shared_;
}

std::size_t device_pool::releasable_bytes() noexcept {
  std::lock_guard lock(mutex_);
  process_pending_locked();
  const std::uint64_t done = completed_->load(std::memory_order_acquire);
  std::size_t bytes = 0;
  for (const block* b : idle_large_)
    if (b->ready_epoch <= done) bytes += b->seg->seg.size;
  for (const segment_info* s = segments_; s != nullptr; s = s->next)
    if (!s->large && best_fit_allocator::idle(s)) bytes += s->seg.size;
  return bytes;
}

bool device_pool::recover_from_oom() noexcept {
  oom_recoveries_.fetch_add(1, std::memory_order_relaxed);
  std::size_t released = release_idle();
  std::uint64_t needed = 0;
  {
    std::lock_guard lock(mutex_);
    for (block* b = pending_; b != nullptr; b = b->link) needed = std::max(needed, b->ready_epoch);
    for (block* b = idle_oldest_; b != nullptr; b = b->next) needed = std::max(needed, b->ready_epoch);
  }
  if (needed > completed_->load(std::memory_order_acquire)) {
    fence_.wait_for(needed);
    released += release_segments();
  }
  return released != 0;
}

// ---- queries ----

std::size_t device_pool::block_size(std::uintptr_t p) const noexcept {
  const block* b = map_.find_block(p);
  if (b == nullptr) return 0;
  const block_state s = b->state.load(std::memory_order_relaxed);
  return s == block_state::small_allocated || s == block_state::large_allocated ? b->size : 0;
}

std::uintptr_t device_pool::segment_base(std::uintptr_t p) const noexcept {
  const block* b = map_.find_block(p);
  if (b == nullptr || b->seg == nullptr) return 0;
  const block_state s = b->state.load(std::memory_order_relaxed);
  return s == block_state::small_allocated || s == block_state::large_allocated ? b->seg->seg.base : 0;
}

pool_stats device_pool::stats() const noexcept {
  std::uint64_t hits = retired_hits_.load(std::memory_order_relaxed);
  std::int64_t in_use = slow_in_use_.load(std::memory_order_relaxed);
  lock_cache_registry();
  for (const thread_cache* tc = caches_; tc != nullptr; tc = tc->next) {
    hits += tc->hits.load(std::memory_order_relaxed);
    in_use += tc->in_use.load(std::memory_order_relaxed);
  }
  unlock_cache_registry();
  pool_stats r;
  r.requests = slow_requests_.load(std::memory_order_relaxed) + hits;
  r.failures = failures_.load(std::memory_order_relaxed);
  r.pool_hits = slow_hits_.load(std::memory_order_relaxed) + hits;
  r.bytes_in_use = static_cast<std::uint64_t>(std::max<std::int64_t>(in_use, 0));
  r.bytes_reserved = reserved_.load(std::memory_order_relaxed);
  r.peak_in_use = peak_in_use_.load(std::memory_order_relaxed);
  r.peak_reserved = peak_reserved_.load(std::memory_order_relaxed);
  r.segments = segment_count_.load(std::memory_order_relaxed);
  r.oom_recoveries = oom_recoveries_.load(std::memory_order_relaxed);
  r.bound_releases = bound_releases_.load(std::memory_order_relaxed);
  return r;
}

}  // namespace poolshim::pool

// The stats file's optional bounded event ring (POOLSHIM_STATS_EVENTS; struct poolshim_stats_event
// in include/poolshim/stats_file.h): every allocation and free, oldest overwritten, for timelines
// and the memory_viz snapshot. Lock-free, any number of writers; header-only because push is on
// the allocation path (one relaxed fetch_add, one CAS and the stores when a ring is configured).
#pragma once

#include <atomic>
#include <cstdint>

#include "poolshim/stats_file.h"
#include "stats/file_atomic.h"

namespace poolshim::stats {

class event_ring {
 public:
  // A slot's seq while its writer fills it in (real values are index + 1).
  static constexpr std::uint64_t k_busy = ~std::uint64_t{0};

  event_ring() noexcept = default;
  // `events` has `capacity` slots (a power of two, or 0: no ring) and `next` counts the events ever
  // written (the header's event_next); all are the caller's and zeroed.
  event_ring(poolshim_stats_event* events, std::uint32_t capacity, std::uint64_t* next) noexcept
      : events_(events), capacity_(capacity), next_(next) {}

  std::uint32_t capacity() const noexcept { return capacity_; }
  // Event i's slot: the ring keeps the newest `capacity` events.
  static std::uint32_t slot_of(std::uint64_t i, std::uint32_t capacity) noexcept {
    return static_cast<std::uint32_t>(i & (capacity - 1));
  }

  // Writes one event (action POOLSHIM_STATS_EVENT_*); false when it was dropped (no ring, or a
  // writer the ring overtook) — the figures elsewhere still count it.
  bool push(std::uint8_t action, std::uint64_t ptr, std::uint64_t bytes, std::uint32_t stack, int device, int kind,
            std::uint64_t stream = 0) noexcept {
    if (capacity_ == 0) return false;
    const std::uint64_t i = atomic_at(*next_).fetch_add(1, std::memory_order_relaxed);
    poolshim_stats_event& e = events_[slot_of(i, capacity_)];
    // The slot is this writer's alone while its seq holds the busy mark; a writer that finds it busy
    // (the ring wrapped around a slower writer) drops its event. Readers take a slot only when seq
    // is the index they expect, so they never see one half-written.
    // Only an older event may be overwritten: a writer overtaken by the ring (a newer event is there
    // already) drops its own.
    std::uint64_t cur = atomic_at(e.seq).load(std::memory_order_relaxed);
    if (cur == k_busy || cur > i || !atomic_at(e.seq).compare_exchange_strong(cur, k_busy, std::memory_order_acquire))
      return false;
#if !defined(__SANITIZE_THREAD__)
    // The busy mark must be visible before any field changes (a reader checks seq before and after
    // copying); x86 keeps stores in order, weaker machines need the fence. (TSan cannot model
    // fences: there, the CAS's acquire is what it sees.)
    std::atomic_thread_fence(std::memory_order_release);
#endif
    e.ns = now_ns();
    e.ptr = ptr;
    e.bytes = bytes;
    e.stream = stream;
    e.stack = stack;
    e.device = static_cast<std::uint16_t>(device);
    e.kind = static_cast<std::uint8_t>(kind);
    e.action = action;
    atomic_at(e.seq).store(i + 1, std::memory_order_release);
    return true;
  }

 private:
  poolshim_stats_event* events_ = nullptr;
  std::uint32_t capacity_ = 0;
  std::uint64_t* next_ = nullptr;
};

}  // namespace poolshim::stats

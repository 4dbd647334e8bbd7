// Reuse fences: the interface between the pools and the fence tracker (route/fence_tracker.h). A freed
// block carries ready_epoch = epoch_for_free(); it may be handed out again only once
// *completed_epoch() >= ready_epoch. Both are plain acquire loads of counters the tracker owns, so
// the hit path makes no call: the tracker publishes in `current` the epoch its next fence will
// complete (bump `current` first, then record the fence for the old value, so a free that races
// with a record is stamped with the later fence). In POOLSHIM_FREE_SYNC=device mode the shim syncs
// before freeing and uses always_ready_fence (every epoch is 0).
#pragma once

#include <atomic>
#include <cstdint>

namespace poolshim::pool {

class fence {
 public:
  fence(const fence&) = delete;
  fence& operator=(const fence&) = delete;
  virtual ~fence() = default;

  // Monotonic; owned by the tracker, which must keep it alive as long as any pool using it.
  const std::atomic<std::uint64_t>* completed_epoch() const noexcept { return completed_; }
  // The epoch whose completion guarantees that all device work enqueued before this call is done.
  std::uint64_t epoch_for_free() const noexcept { return current_->load(std::memory_order_acquire); }
  const std::atomic<std::uint64_t>* current_epoch() const noexcept { return current_; }
  // Blocks until *completed_epoch() >= epoch or the tracker gives up (OOM path only).
  void wait_for(std::uint64_t epoch) noexcept { do_wait_for(epoch); }
  // A pool's slow path found only blocks waiting for `epoch`: make progress without waiting for
  // the device (start the fence if it is due, take note of fences that have passed). `urgent`: the
  // alternative is a new segment of at least 1 MiB, which costs more than a fence, so the fence is
  // started now. Never called with a pool lock held.
  void poll(std::uint64_t epoch, bool urgent = false) noexcept { do_poll(epoch, urgent); }

 protected:
  fence(const std::atomic<std::uint64_t>* completed, const std::atomic<std::uint64_t>* current) noexcept
      : completed_(completed), current_(current) {}

 private:
  virtual void do_wait_for(std::uint64_t epoch) noexcept = 0;
  virtual void do_poll(std::uint64_t epoch, bool urgent) noexcept = 0;

  const std::atomic<std::uint64_t>* completed_;
  const std::atomic<std::uint64_t>* current_;
};

// Device-sync mode: frees happen after a synchronisation, so every block is ready at once.
class always_ready_fence final : public fence {
 public:
  always_ready_fence() noexcept : fence(&zero_, &zero_) {}

 private:
  void do_wait_for(std::uint64_t) noexcept override {}
  void do_poll(std::uint64_t, bool) noexcept override {}
  std::atomic<std::uint64_t> zero_{0};
};

}  // namespace poolshim::pool

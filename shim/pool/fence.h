// Reuse fences: the interface between the pools and the fence tracker (written elsewhere). A freed
// block carries ready_epoch = epoch_for_free(); it may be handed out again only once
// *completed_epoch() >= ready_epoch. Both are plain acquire loads of counters the tracker owns, so
// the hit path makes no call: the tracker publishes in `current` the epoch its next fence will
// complete (bump `current` first, then record the fence for the old value, so a free that races
// with a record is stamped with the later fence). In POOLSHIM_FREE_SYNC=device mode the shim syncs
// before freeing and uses always_ready_fence (every epoch is 0).
#pragma once

#include <algorithm>
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

// Test fence: frees are stamped with the current epoch; advance() completes it and opens the next.
// wait_for() counts calls and, if complete_on_wait is set, completes the awaited epoch (a tracker
// that synchronises); poll() counts calls and, if complete_on_poll is set, completes the polled
// epoch (a tracker whose streams are idle).
class manual_fence final : public fence {
 public:
  explicit manual_fence(bool complete_on_wait = false, bool complete_on_poll = false) noexcept
      : fence(&done_, &next_), complete_on_wait_(complete_on_wait), complete_on_poll_(complete_on_poll) {}

  void advance() noexcept {
    const std::uint64_t e = next_.fetch_add(1, std::memory_order_acq_rel);
    complete_through(e);
  }
  void complete_through(std::uint64_t e) noexcept {
    std::uint64_t c = done_.load(std::memory_order_relaxed);
    while (c < e && !done_.compare_exchange_weak(c, e, std::memory_order_release)) {
    }
  }
  std::uint64_t current() const noexcept { return next_.load(std::memory_order_acquire); }
  std::uint64_t completed() const noexcept { return done_.load(std::memory_order_acquire); }
  std::uint64_t waits() const noexcept { return waits_.load(std::memory_order_relaxed); }
  std::uint64_t polls() const noexcept { return polls_.load(std::memory_order_relaxed); }

 private:
  void do_wait_for(std::uint64_t epoch) noexcept override {
    waits_.fetch_add(1, std::memory_order_relaxed);
    if (complete_on_wait_) complete(epoch);
  }
  void do_poll(std::uint64_t epoch, bool) noexcept override {
    polls_.fetch_add(1, std::memory_order_relaxed);
    if (complete_on_poll_) complete(epoch);
  }
  void complete(std::uint64_t epoch) noexcept {
    epoch = std::min(epoch, next_.load(std::memory_order_acquire));
    while (done_.load(std::memory_order_acquire) < epoch) advance();
  }

  std::atomic<std::uint64_t> done_{0};
  std::atomic<std::uint64_t> next_{1};
  std::atomic<std::uint64_t> waits_{0};
  std::atomic<std::uint64_t> polls_{0};
  const bool complete_on_wait_;
  const bool complete_on_poll_;
};

}  // namespace poolshim::pool

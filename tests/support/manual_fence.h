// A fence for tests and benchmarks of the pools (pool/fence.h's interface without a tracker):
// epochs advance only when the test says so, and waits and polls are counted.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "pool/fence.h"

namespace poolshim::pool {

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

// Host-memory segment source for tests and benchmarks, and the model the CUDA-backed resource
// follows: mmap'd memory, 2 MiB-aligned for segments of 2 MiB or more (like the driver), a byte
// limit, fail-the-Nth-call injection and call counters. Thread-safe (a mutex: this is a slow path).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "pool/segment_resource.h"

namespace poolshim::pool {

class fake_segment_resource final : public segment_resource {
 public:
  // limit_bytes: total bytes of live segments allowed (0: no limit beyond the machine's).
  explicit fake_segment_resource(std::size_t limit_bytes = 0) noexcept : limit_(limit_bytes) {}
  ~fake_segment_resource() override;

  // The n-th allocate() call from now (1 = the next one) fails with out_of_memory; 0 disables.
  void fail_nth_allocation(std::uint64_t n) noexcept;
  void set_limit(std::size_t limit_bytes) noexcept;

  std::uint64_t allocate_calls() const noexcept { return allocate_calls_.load(std::memory_order_relaxed); }
  std::uint64_t deallocate_calls() const noexcept { return deallocate_calls_.load(std::memory_order_relaxed); }
  std::uint64_t failed_calls() const noexcept { return failed_calls_.load(std::memory_order_relaxed); }
  std::size_t bytes_in_use() const noexcept { return in_use_.load(std::memory_order_relaxed); }
  std::size_t live_segments() const noexcept;

 private:
  struct mapping {
    void* addr;
    std::size_t length;
    std::size_t size;
  };
  status do_allocate(std::size_t bytes, segment* out) noexcept override;
  void do_deallocate(const segment& s) noexcept override;
  const char* do_name() const noexcept override { return "fake"; }

  mutable std::mutex mutex_;
  std::size_t limit_;
  std::uint64_t fail_countdown_ = 0;
  std::unordered_map<std::uintptr_t, mapping> live_;
  std::atomic<std::uint64_t> allocate_calls_{0};
  std::atomic<std::uint64_t> deallocate_calls_{0};
  std::atomic<std::uint64_t> failed_calls_{0};
  std::atomic<std::size_t> in_use_{0};
  std::uint64_t next_cookie_ = 1;
};

}  // namespace poolshim::pool

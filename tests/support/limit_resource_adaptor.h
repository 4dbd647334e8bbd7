// Wraps an upstream segment source and refuses segments beyond a byte limit: an adaptor for the
// pool's tests (out-of-memory paths over any source) and the typed suite's second resource. The
// product has no use for it (POOLSHIM_DEVICE_CACHE_LIMIT caps idle memory inside the pool).
#pragma once

#include <algorithm>
#include <atomic>

#include "pool/segment_resource.h"

namespace poolshim::pool {

class limit_resource_adaptor final : public segment_resource {
 public:
  limit_resource_adaptor(segment_resource& upstream, std::size_t limit_bytes) noexcept
      : upstream_(upstream), limit_(limit_bytes) {}
  std::size_t bytes_in_use() const noexcept { return used_.load(std::memory_order_relaxed); }

 private:
  status do_allocate(std::size_t bytes, segment* out) noexcept override {
    std::size_t used = used_.load(std::memory_order_relaxed);
    do {
      if (bytes > limit_ - std::min(limit_, used)) return status::out_of_memory;
    } while (!used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
    const status s = upstream_.allocate(bytes, out);
    if (s != status::ok) used_.fetch_sub(bytes, std::memory_order_relaxed);
    return s;
  }
  void do_deallocate(const segment& s) noexcept override {
    upstream_.deallocate(s);
    used_.fetch_sub(s.size, std::memory_order_relaxed);
  }
  const char* do_name() const noexcept override { return "limit"; }

  segment_resource& upstream_;
  const std::size_t limit_;
  std::atomic<std::size_t> used_{0};
};

}  // namespace poolshim::pool

// fake_segment_resource: segments are anonymous mmaps trimmed to the driver's alignment, so tests
// may write into them (the shadow-model stress test does) and ASan sees every byte.
#include "support/fake_segment_resource.h"

#include <sys/mman.h>

#include <algorithm>

namespace poolshim::pool {
namespace {
constexpr std::size_t kLargeAlign = std::size_t{2} << 20;
constexpr std::size_t kPage = 4096;
}  // namespace

fake_segment_resource::~fake_segment_resource() {
  for (auto& [base, m] : live_) munmap(m.addr, m.length);
}

void fake_segment_resource::fail_nth_allocation(std::uint64_t n) noexcept {
  std::lock_guard lock(mutex_);
  fail_countdown_ = n;
}

void fake_segment_resource::set_limit(std::size_t limit_bytes) noexcept {
  std::lock_guard lock(mutex_);
  limit_ = limit_bytes;
}

std::size_t fake_segment_resource::live_segments() const noexcept {
  std::lock_guard lock(mutex_);
  return live_.size();
}

status fake_segment_resource::do_allocate(std::size_t bytes, segment* out) noexcept {
  allocate_calls_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(mutex_);
  const bool injected = fail_countdown_ != 0 && --fail_countdown_ == 0;
  const std::size_t in_use = in_use_.load(std::memory_order_relaxed);
  if (injected || bytes > (std::size_t{1} << 46) || (limit_ != 0 && bytes > limit_ - std::min(limit_, in_use))) {
    failed_calls_.fetch_add(1, std::memory_order_relaxed);
    return status::out_of_memory;
  }
  const std::size_t align = bytes >= kLargeAlign ? kLargeAlign : kPage;
  const std::size_t rounded = (bytes + kPage - 1) & ~(kPage - 1);
  const std::size_t length = rounded + (align > kPage ? align : 0);
  void* p = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    failed_calls_.fetch_add(1, std::memory_order_relaxed);
    return status::out_of_memory;
  }
  const auto raw = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t base = (raw + align - 1) & ~(align - 1);
  try {
    live_.emplace(base, mapping{p, length, bytes});
  } catch (...) {
    munmap(p, length);
    failed_calls_.fetch_add(1, std::memory_order_relaxed);
    return status::out_of_memory;
  }
  in_use_.fetch_add(bytes, std::memory_order_relaxed);
  *out = segment{base, bytes, next_cookie_++};
  return status::ok;
}

void fake_segment_resource::do_deallocate(const segment& s) noexcept {
  deallocate_calls_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(mutex_);
  auto it = live_.find(s.base);
  if (it == live_.end() || it->second.size != s.size) return;  // not ours: ignored, as a test fixture
  munmap(it->second.addr, it->second.length);
  in_use_.fetch_sub(s.size, std::memory_order_relaxed);
  live_.erase(it);
}

}  // namespace poolshim::pool

// The stats file's module list (struct poolshim_stats_module in include/poolshim/stats_file.h):
// every loaded module a recorded frame may lie in, with its address range, load bias, path and GNU
// build-id, so that poolshim-stats can symbolise offline and refuse a rebuilt file. Appended to
// when a new stack has a frame in a module not listed yet; never removed (a dlclose'd module's
// frames stay attributable).
#pragma once

#include <link.h>

#include <atomic>
#include <cstdint>

#include "poolshim/stats_file.h"
#include "stats/file_atomic.h"

namespace poolshim::stats {

class module_list {
 public:
  module_list() noexcept = default;
  // `modules` has `capacity` entries and `count` (the header's module_count) says how many are
  // complete; all are the caller's and zeroed.
  module_list(poolshim_stats_module* modules, std::uint32_t capacity, std::uint32_t* count) noexcept
      : modules_(modules), capacity_(capacity), count_(count) {}

  // Lists every loaded module not listed yet (until the capacity is reached). Takes the loader's
  // lock (dl_iterate_phdr, recursive): call it with no shim lock held.
  void refresh() noexcept;

  std::uint32_t size() const noexcept {
    return count_ == nullptr ? 0 : atomic_at(*count_).load(std::memory_order_acquire);
  }
  // The listed module holding pc, or null.
  const poolshim_stats_module* find(std::uintptr_t pc) const noexcept {
    const std::uint32_t n = size();
    for (std::uint32_t m = 0; m < n; ++m)
      if (pc >= modules_[m].start && pc < modules_[m].end) return &modules_[m];
    return nullptr;
  }
  bool knows(std::uintptr_t pc) const noexcept { return find(pc) != nullptr; }

 private:
  poolshim_stats_module* modules_ = nullptr;
  std::uint32_t capacity_ = 0;
  std::uint32_t* count_ = nullptr;
};

// The GNU build-id note of a loaded module (its PT_NOTE segments), copied to out (room for cap
// bytes); its size, 0 when there is none or it does not fit.
std::uint32_t read_build_id(const dl_phdr_info& info, std::uint8_t* out, std::uint32_t cap) noexcept;

}  // namespace poolshim::stats

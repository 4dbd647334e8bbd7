// The pinned host pool: blocks carved from slabs of a segment source (local memfd slabs registered
// with the driver, or the daemon's later). Requests up to 1 MiB round up to a power of two (at least
// 4 KiB), larger ones to 4 KiB; every size is a page multiple, so every block is page-aligned as
// cudaHostAlloc memory is. Best fit with split and coalescing (best_fit_allocator); a block never
// spans two slabs. One short lock: pinned allocation is not a hot path (no thread caches).
// The first page of every slab is a guard that is never handed out: no pooled pointer is a slab's
// base, so a cuMemHostUnregister of a pooled pointer gets the driver's "not registered" error, as
// for cudaHostAlloc memory, instead of unpinning a whole slab.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>

#include "pool/best_fit_allocator.h"
#include "pool/block.h"
#include "pool/device_pool.h"  // the pools' one list of figures
#include "pool/segment_resource.h"

namespace poolshim::pool {

struct host_pool_options {
  // Slabs grow with use: a new slab is as large as what the pool holds already (so the total doubles),
  // at least first_slab_size and at most slab_size (both rounded up to 2 MiB), or larger when one
  // request needs more. A process that pins 64 KiB holds 2 MiB, not a whole 64 MiB slab (every slab
  // is pre-touched and pinned at once); one that pins much reaches 64 MiB slabs after five. A source
  // may hand out larger slabs than asked (the daemon lends its own slab size).
  std::size_t first_slab_size = std::size_t{2} << 20;
  std::size_t slab_size = std::size_t{64} << 20;
  std::size_t bucket_limit = std::size_t{1} << 20;  // power-of-two classes up to here
};

// The pinned pool's statistics: the BOTH and HOST rows of the pools' one list (device_pool.h).
struct host_pool_stats {
#define POOLSHIM_HOST_POOL_STATS_FIELD(name) std::uint64_t name = 0;
  POOLSHIM_POOL_FIGURES(POOLSHIM_HOST_POOL_STATS_FIELD, POOLSHIM_POOL_FIGURE_SKIP, POOLSHIM_HOST_POOL_STATS_FIELD)
#undef POOLSHIM_HOST_POOL_STATS_FIELD
};

// Sums the pools' figures, peaks included (as pool_stats' operator+=).
inline host_pool_stats& operator+=(host_pool_stats& sum, const host_pool_stats& s) noexcept {
#define POOLSHIM_HOST_POOL_STATS_ADD(name) sum.name += s.name;
  POOLSHIM_POOL_FIGURES(POOLSHIM_HOST_POOL_STATS_ADD, POOLSHIM_POOL_FIGURE_SKIP, POOLSHIM_HOST_POOL_STATS_ADD)
#undef POOLSHIM_HOST_POOL_STATS_ADD
  return sum;
}

// What the pool knows about a live block, for the driver queries answered on its behalf.
struct host_block_info {
  std::uintptr_t base = 0;
  std::size_t size = 0;  // after rounding
  unsigned flags = 0;    // the flags the caller asked for at allocation
};

class host_pool {
 public:
  static constexpr std::size_t kPage = 4096;
  static constexpr std::size_t kSlabGranule = std::size_t{2} << 20;

  // `source` must outlive the pool.
  explicit host_pool(segment_resource& source, host_pool_options options = {}) noexcept;
  host_pool(const host_pool&) = delete;
  host_pool& operator=(const host_pool&) = delete;
  ~host_pool();  // returns every slab to the source, live blocks included

  // The block size a request of `bytes` gets (0 for 0).
  std::size_t rounded_size(std::size_t bytes) const noexcept;

  // *out = the block's address. invalid_argument for 0 bytes; the source's status when it cannot
  // give a new slab (nothing is retried: the caller falls back to the driver).
  status allocate(std::size_t bytes, unsigned flags, std::uintptr_t* out) noexcept;
  // ok; unknown_pointer if p is in no slab of this pool; invalid_pointer for an interior pointer
  // or a block that is not live (double free).
  status deallocate(std::uintptr_t p) noexcept;
  // The live block containing p (interior pointers included): ok; invalid_pointer when p lies in a
  // slab but in no live block; unknown_pointer when in no slab.
  status find(std::uintptr_t p, host_block_info* out) const noexcept;
  bool owns(std::uintptr_t p) const noexcept;

  // Returns idle slabs (every byte free) to the source, but keeps the first `keep_slabs` of them
  // (a process that still works keeps a slab to work in); returns the bytes released.
  std::size_t release_idle(std::size_t keep_slabs = 0) noexcept;
  host_pool_stats stats() const noexcept;
  // Bytes of the slabs release_idle would give back now (every byte free but the guard page).
  std::size_t idle_slab_bytes() const noexcept;
  const host_pool_options& options() const noexcept { return options_; }

 private:
  struct live_block {
    block* blk;
    unsigned flags;
  };
  struct slab {
    segment_info* info;
    block* guard;  // the first page, held for the slab's life
  };
  std::size_t next_slab_size() const noexcept;  // before the one request's own need
  status new_slab(std::size_t bytes, segment_info** out) noexcept;
  segment_info* slab_of_locked(std::uintptr_t p) const noexcept;
  void hand_out_locked(block* b, bool hit, std::uintptr_t* out) noexcept;

  segment_resource& source_;
  const host_pool_options options_;

  mutable std::mutex mutex_;  // everything below except the statistics
  block_arena arena_;
  best_fit_allocator fit_;
  std::map<std::uintptr_t, slab> slabs_;       // by base
  std::map<std::uintptr_t, live_block> live_;  // by block start

  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> failures_{0};  // requests not served (a hit rate is of those served)
  std::atomic<std::uint64_t> hits_{0};
  std::atomic<std::uint64_t> in_use_{0};
  std::atomic<std::uint64_t> reserved_{0};
  std::atomic<std::uint64_t> peak_in_use_{0};
  std::atomic<std::uint64_t> peak_reserved_{0};
  std::atomic<std::uint64_t> slab_count_{0};
};

}  // namespace poolshim::pool

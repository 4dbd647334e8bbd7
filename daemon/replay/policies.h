// The policies poolshim-replay compares on a trace: no caching, a first-fit-and-coalesce region (the
// classic server-side pinned pool), a model of PyTorch's caching allocator written from its
// documentation, and poolshim's own pool core (shim/pool). All take memory from a device_model that
// counts driver calls and bytes and never touches memory: a trace of any size replays in host RAM
// proportional to its blocks, not its bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "pool/device_pool.h"

namespace poolshim::replay {

// The driver as a policy sees it: allocations are rounded up to `granule` (cuMemAlloc's
// alignment), addresses are handed out bump-style (2 MiB-aligned from 2 MiB up) or reused from a
// freed range of the same size, as a driver would, and `limit` (0: none) is the device's size.
// Addresses stay below `address_end` (at most 2^47: the pool's pointer map takes 48 bits); a trace
// that needs more address space is refused like a full device, never wrapped.
class device_model {
 public:
  static constexpr std::uint64_t k_first_address = std::uint64_t{1} << 32;
  static constexpr std::uint64_t k_address_end = std::uint64_t{1} << 47;
  device_model(std::uint64_t granule, std::uint64_t limit, std::uint64_t address_end = k_address_end) noexcept
      : granule_(granule), limit_(limit), address_end_(address_end < k_address_end ? address_end : k_address_end) {}
  // 0 when the limit does not allow it.
  std::uint64_t allocate(std::uint64_t bytes) noexcept;
  void deallocate(std::uint64_t base, std::uint64_t bytes) noexcept;
  std::uint64_t round(std::uint64_t bytes) const noexcept { return (bytes + granule_ - 1) / granule_ * granule_; }

  std::uint64_t reserved() const noexcept { return reserved_; }
  std::uint64_t peak_reserved() const noexcept { return peak_reserved_; }
  std::uint64_t allocations() const noexcept { return allocations_; }
  std::uint64_t deallocations() const noexcept { return deallocations_; }
  std::uint64_t refusals() const noexcept { return refusals_; }

 private:
  std::uint64_t granule_;
  std::uint64_t limit_;
  std::uint64_t address_end_;
  std::uint64_t next_ = k_first_address;
  std::uint64_t reserved_ = 0;
  std::uint64_t peak_reserved_ = 0;
  std::uint64_t allocations_ = 0;
  std::uint64_t deallocations_ = 0;
  std::uint64_t refusals_ = 0;
  std::unordered_map<std::uint64_t, std::vector<std::uint64_t>> spare_;  // size -> freed bases
};

struct policy_options {
  std::uint64_t driver_granule = 512;                       // no caching: reserved = live rounded to this
  std::uint64_t device_limit = 0;                           // 0: unlimited (nothing is ever released for lack of room)
  std::uint64_t region_chunk = std::uint64_t{2} << 20;      // first-fit region: growth step (VMM granularity)
  std::uint64_t address_end = device_model::k_address_end;  // the device's address space (tests shrink it)
  pool::device_pool_options pool;  // poolshim: POOLSHIM_SMALL_LIMIT, _THREAD_CACHE, _DEVICE_CACHE_LIMIT
};

// Non-virtual interface over private do_* (the project's model). A handle is nonzero; 0 means the
// allocation was not served (the device limit).
class allocation_policy {
 public:
  explicit allocation_policy(const policy_options& o) : device_(o.driver_granule, o.device_limit, o.address_end) {}
  allocation_policy(const allocation_policy&) = delete;
  allocation_policy& operator=(const allocation_policy&) = delete;
  virtual ~allocation_policy() = default;

  std::uint64_t allocate(std::uint64_t bytes) { return do_allocate(bytes); }
  void deallocate(std::uint64_t handle) { do_deallocate(handle); }
  const char* name() const noexcept { return do_name(); }
  const device_model& device() const noexcept { return device_; }

 protected:
  device_model device_;

 private:
  virtual std::uint64_t do_allocate(std::uint64_t bytes) = 0;
  virtual void do_deallocate(std::uint64_t handle) = 0;
  virtual const char* do_name() const noexcept = 0;
};

// (a) Every allocation and free goes to the driver.
class no_caching_policy final : public allocation_policy {
 public:
  using allocation_policy::allocation_policy;

 private:
  std::uint64_t do_allocate(std::uint64_t bytes) override;
  void do_deallocate(std::uint64_t handle) override;
  const char* do_name() const noexcept override { return "none"; }
  std::unordered_map<std::uint64_t, std::uint64_t> size_of_;
};

// (b) One contiguous region (a VMM reservation) grown at its end by whole chunks when no free
// block fits; first fit by address; a freed block merges with free neighbours; never shrinks.
class first_fit_region_policy final : public allocation_policy {
 public:
  explicit first_fit_region_policy(const policy_options& o) : allocation_policy(o), chunk_(o.region_chunk) {}

 private:
  std::uint64_t do_allocate(std::uint64_t bytes) override;
  void do_deallocate(std::uint64_t handle) override;
  const char* do_name() const noexcept override { return "region"; }
  std::uint64_t chunk_;
  std::uint64_t end_ = 0;                                  // region size
  std::map<std::uint64_t, std::uint64_t> free_;            // offset -> size, address order
  std::unordered_map<std::uint64_t, std::uint64_t> used_;  // offset -> size
};

// (c) PyTorch's CUDA caching allocator as its documentation states it (the notes on CUDA memory
// management, the allocator's own design comment, "When does fragmentation occur in the CUDA
// caching allocator?"), without expandable segments, one stream, default settings:
// - requests round up to 512 B; <= 1 MiB go to the small pool, larger ones to the large pool;
// - a request takes the smallest free block of its pool that fits (best fit);
// - none fits: a new segment, 2 MiB for the small pool, 20 MiB for requests of 1-10 MiB, the
//   request rounded up to 2 MiB above; blocks never span or merge across segments;
// - a block is split when the rest is >= 512 B (small pool) or > 1 MiB (large pool);
// - a freed block merges with free neighbours of its segment;
// - a failed driver allocation frees every cached segment that is whole (not split) and retries.
class torch_caching_policy final : public allocation_policy {
 public:
  using allocation_policy::allocation_policy;
  ~torch_caching_policy() override;

 private:
  struct block {
    std::uint64_t addr = 0, size = 0;
    block* prev = nullptr;  // address-order neighbours inside the segment
    block* next = nullptr;
    bool allocated = false, small = false;
    std::uint64_t segment_base = 0, segment_size = 0;
  };
  struct by_size_then_address {
    bool operator()(const block* a, const block* b) const noexcept {
      return a->size != b->size ? a->size < b->size : a->addr < b->addr;
    }
  };
  using pool_set = std::set<block*, by_size_then_address>;

  std::uint64_t do_allocate(std::uint64_t bytes) override;
  void do_deallocate(std::uint64_t handle) override;
  const char* do_name() const noexcept override { return "torch"; }
  block* find_fit(pool_set& pool, std::uint64_t size);
  void release_whole_segments();

  pool_set small_, large_;
  std::unordered_map<std::uint64_t, block*> allocated_;  // addr -> block
};

// (d) poolshim's device pool (shim/pool/device_pool.h) in device-sync mode (every freed block is
// ready at once), on the replaying thread (its thread cache is one thread's), over a segment
// source that is the device_model.
class poolshim_policy final : public allocation_policy {
 public:
  explicit poolshim_policy(const policy_options& o);
  ~poolshim_policy() override;
  pool::pool_stats pool_stats() const noexcept { return pool_->stats(); }

 private:
  class counting_resource;
  std::uint64_t do_allocate(std::uint64_t bytes) override;
  void do_deallocate(std::uint64_t handle) override;
  const char* do_name() const noexcept override { return "poolshim"; }

  std::unique_ptr<counting_resource> source_;
  pool::always_ready_fence fence_;
  std::unique_ptr<pool::device_pool> pool_;
};

// "none", "region", "torch", "poolshim"; nullptr for another name.
std::unique_ptr<allocation_policy> make_policy(const std::string& name, const policy_options& o);
const std::vector<std::string>& policy_names();

}  // namespace poolshim::replay

// The four policies of policies.h. Each one keeps only the bookkeeping its rule needs (free lists,
// block links); none touches the memory it "hands out": the device_model's addresses are numbers.
#include "replay/policies.h"

#include <algorithm>
#include <iterator>

namespace poolshim::replay {

namespace {

constexpr std::uint64_t k_mib = std::uint64_t{1} << 20;
constexpr std::uint64_t k_huge_page = 2 * k_mib;
constexpr std::uint64_t k_block_align = 512;  // what cuMemAlloc_v2 gives; the region's blocks keep it

std::uint64_t round_up(std::uint64_t v, std::uint64_t to) noexcept { return (v + to - 1) / to * to; }

}  // namespace

// ---- device_model ----

std::uint64_t device_model::allocate(std::uint64_t bytes) noexcept {
  const std::uint64_t size = round(bytes);
  if (limit_ != 0 && reserved_ + size > limit_) {
    ++refusals_;
    return 0;
  }
  std::uint64_t base = 0;
  if (auto spare = spare_.find(size); spare != spare_.end() && !spare->second.empty()) {
    base = spare->second.back();  // a freed range of this very size: address space stays bounded
    spare->second.pop_back();
  } else {
    // Beyond the address space: refused like a full device, never wrapped.
    if (size > address_end_ || next_ > address_end_ - size - k_huge_page) {
      ++refusals_;
      return 0;
    }
    // 2 MiB-aligned from 2 MiB up (the driver's large pages), else 4 KiB (more than the 512 B the
    // pools assume); a gap after each, so that no two allocations are ever contiguous.
    next_ = round_up(next_, size >= k_huge_page ? k_huge_page : 4096);
    base = next_;
    next_ += size + 4096;
  }
  reserved_ += size;
  peak_reserved_ = std::max(peak_reserved_, reserved_);
  ++allocations_;
  return base;
}

void device_model::deallocate(std::uint64_t base, std::uint64_t bytes) noexcept {
  reserved_ -= round(bytes);
  ++deallocations_;
  try {
    spare_[round(bytes)].push_back(base);
  } catch (...) {  // host out of memory: the range is simply not reused
  }
}

// ---- (a) no caching ----

std::uint64_t no_caching_policy::do_allocate(std::uint64_t bytes) {
  const std::uint64_t base = device_.allocate(bytes);
  if (base != 0) size_of_.emplace(base, bytes);
  return base;
}

void no_caching_policy::do_deallocate(std::uint64_t handle) {
  const auto it = size_of_.find(handle);
  if (it == size_of_.end()) return;
  device_.deallocate(handle, it->second);
  size_of_.erase(it);
}

// ---- (b) first-fit region ----

std::uint64_t first_fit_region_policy::do_allocate(std::uint64_t bytes) {
  const std::uint64_t size = round_up(bytes, k_block_align);  // the region's own blocks, not the driver's
  auto fit = std::find_if(free_.begin(), free_.end(), [size](const auto& f) { return f.second >= size; });
  if (fit == free_.end()) {
    // Grow: the free block at the region's end (if any) runs on into the new chunks.
    std::uint64_t tail = 0;
    if (!free_.empty()) {
      const auto last = std::prev(free_.end());
      if (last->first + last->second == end_) tail = last->second;
    }
    const std::uint64_t grow = round_up(size - tail, chunk_);
    if (device_.allocate(grow) == 0) return 0;
    if (tail != 0) {
      fit = std::prev(free_.end());
      fit->second += grow;
    } else {
      fit = free_.emplace(end_, grow).first;
    }
    end_ += grow;
  }
  const std::uint64_t offset = fit->first;
  const std::uint64_t rest = fit->second - size;
  free_.erase(fit);
  if (rest != 0) free_.emplace(offset + size, rest);
  used_.emplace(offset, size);
  return offset + 1;  // handles are nonzero
}

void first_fit_region_policy::do_deallocate(std::uint64_t handle) {
  const auto it = used_.find(handle - 1);
  if (it == used_.end()) return;
  std::uint64_t offset = it->first, size = it->second;
  used_.erase(it);
  auto next = free_.lower_bound(offset);
  if (next != free_.end() && next->first == offset + size) {
    size += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    const auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {
      prev->second += size;
      return;
    }
  }
  free_.emplace(offset, size);
}

// ---- (c) PyTorch's caching allocator, as documented ----

namespace {

constexpr std::uint64_t k_min_block = 512;           // rounding, and the small pool's smallest split
constexpr std::uint64_t k_small_size = k_mib;        // the small pool's largest request
constexpr std::uint64_t k_small_buffer = 2 * k_mib;  // a small pool segment
constexpr std::uint64_t k_min_large_alloc = 10 * k_mib;
constexpr std::uint64_t k_large_buffer = 20 * k_mib;  // a segment for a request of 1-10 MiB
constexpr std::uint64_t k_round_large = 2 * k_mib;    // larger requests' segments round up to this

}  // namespace

torch_caching_policy::~torch_caching_policy() {
  for (pool_set* p : {&small_, &large_})
    for (block* b : *p) delete b;
  for (const auto& a : allocated_) delete a.second;
}

torch_caching_policy::block* torch_caching_policy::find_fit(pool_set& pool, std::uint64_t size) {
  block key;
  key.size = size;
  const auto it = pool.lower_bound(&key);  // the smallest size >= request, then the lowest address
  if (it == pool.end()) return nullptr;
  block* b = *it;
  pool.erase(it);
  return b;
}

void torch_caching_policy::release_whole_segments() {
  for (pool_set* p : {&small_, &large_}) {
    for (auto it = p->begin(); it != p->end();) {
      block* b = *it;
      if (b->prev == nullptr && b->next == nullptr) {
        device_.deallocate(b->segment_base, b->segment_size);
        delete b;
        it = p->erase(it);
      } else {
        ++it;
      }
    }
  }
}

std::uint64_t torch_caching_policy::do_allocate(std::uint64_t bytes) {
  const std::uint64_t size = bytes < k_min_block ? k_min_block : round_up(bytes, k_min_block);
  const bool small = size <= k_small_size;
  pool_set& pool = small ? small_ : large_;
  block* b = find_fit(pool, size);
  if (b == nullptr) {
    const std::uint64_t segment = small                      ? k_small_buffer
                                  : size < k_min_large_alloc ? k_large_buffer
                                                             : round_up(size, k_round_large);
    std::uint64_t base = device_.allocate(segment);
    if (base == 0) {
      release_whole_segments();
      base = device_.allocate(segment);
      if (base == 0) return 0;
    }
    b = new block;
    b->addr = b->segment_base = base;
    b->size = b->segment_size = segment;
    b->small = small;
  }
  const std::uint64_t rest = b->size - size;
  if (small ? rest >= k_min_block : rest > k_small_size) {
    auto* r = new block;
    r->addr = b->addr + size;
    r->size = rest;
    r->prev = b;
    r->next = b->next;
    if (b->next != nullptr) b->next->prev = r;
    b->next = r;
    r->small = small;
    r->segment_base = b->segment_base;
    r->segment_size = b->segment_size;
    b->size = size;
    pool.insert(r);
  }
  b->allocated = true;
  allocated_.emplace(b->addr, b);
  return b->addr;
}

void torch_caching_policy::do_deallocate(std::uint64_t handle) {
  const auto it = allocated_.find(handle);
  if (it == allocated_.end()) return;
  block* b = it->second;
  allocated_.erase(it);
  b->allocated = false;
  pool_set& pool = b->small ? small_ : large_;
  if (block* p = b->prev; p != nullptr && !p->allocated) {
    pool.erase(p);
    p->size += b->size;
    p->next = b->next;
    if (b->next != nullptr) b->next->prev = p;
    delete b;
    b = p;
  }
  if (block* n = b->next; n != nullptr && !n->allocated) {
    pool.erase(n);
    b->size += n->size;
    b->next = n->next;
    if (n->next != nullptr) n->next->prev = b;
    delete n;
  }
  pool.insert(b);
}

// ---- (d) poolshim's pool ----

class poolshim_policy::counting_resource final : public pool::segment_resource {
 public:
  explicit counting_resource(device_model& device) noexcept : device_(device) {}

 private:
  pool::status do_allocate(std::size_t bytes, pool::segment* out) noexcept override {
    const std::uint64_t base = device_.allocate(bytes);
    if (base == 0) return pool::status::out_of_memory;
    *out = pool::segment{base, device_.round(bytes), 0};
    return pool::status::ok;
  }
  void do_deallocate(const pool::segment& s) noexcept override { device_.deallocate(s.base, s.size); }
  const char* do_name() const noexcept override { return "replay"; }
  device_model& device_;
};

poolshim_policy::poolshim_policy(const policy_options& o)
    : allocation_policy(o),
      source_(std::make_unique<counting_resource>(device_)),
      pool_(std::make_unique<pool::device_pool>(*source_, fence_, o.pool)) {}

poolshim_policy::~poolshim_policy() = default;

std::uint64_t poolshim_policy::do_allocate(std::uint64_t bytes) {
  std::uintptr_t p = 0;
  return pool_->allocate(bytes, &p) == pool::status::ok ? p : 0;
}

void poolshim_policy::do_deallocate(std::uint64_t handle) { pool_->deallocate(handle); }

// ---- names ----

const std::vector<std::string>& policy_names() {
  static const std::vector<std::string> names{"none", "region", "torch", "poolshim"};
  return names;
}

std::unique_ptr<allocation_policy> make_policy(const std::string& name, const policy_options& o) {
  if (name == "none") return std::make_unique<no_caching_policy>(o);
  if (name == "region") return std::make_unique<first_fit_region_policy>(o);
  if (name == "torch") return std::make_unique<torch_caching_policy>(o);
  if (name == "poolshim") return std::make_unique<poolshim_policy>(o);
  return nullptr;
}

}  // namespace poolshim::replay

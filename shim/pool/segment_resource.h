// A segment source for the pools: hands out whole physical allocations ("segments") that the pools
// carve into blocks. Non-virtual public interface over private do_* (RMM's model); every resource
// passes the typed conformance suite (tests/support/segment_resource_suite.h). The product's
// sources live above the pool, in shim/source/ (cuMemAlloc_v2, daemon-lent VMM memory, pinned
// slabs); the fakes the pool's own tests use live in tests/support/.
#pragma once

#include <cstddef>
#include <cstdint>

namespace poolshim::pool {

// Results of every pool and resource call. Values are stable: the shim maps them to CUDA errors.
enum class status : int {
  ok = 0,
  invalid_argument = 1,  // size 0, or a size the source cannot represent
  out_of_memory = 2,     // the source (or the pool, after its OOM path) has no memory left
  unknown_pointer = 3,   // not inside any segment of this pool: the shim passes it to the real driver
  invalid_pointer = 4,   // inside a segment but not a live block's start (interior pointer, double free)
  source_error = 5,      // the source failed for another reason (driver error)
};

// One physical allocation. `cookie` is the source's own handle (e.g. a CUDA context or VMM handle);
// the pool stores it and gives it back on deallocate.
struct segment {
  std::uintptr_t base = 0;
  std::size_t size = 0;
  std::uint64_t cookie = 0;
};

class segment_resource {
 public:
  segment_resource() = default;
  segment_resource(const segment_resource&) = delete;
  segment_resource& operator=(const segment_resource&) = delete;
  virtual ~segment_resource() = default;

  // Allocates a segment of at least `bytes` usable bytes (bytes > 0): exactly `bytes` from the
  // driver, rounded up to the source's granule by slab and daemon sources (2 MiB); out->size says
  // which. 512 B-aligned at least, what cuMemAlloc_v2 gives (CUDA documents 256 B); the pools
  // assume no more (the pointer map takes any alignment). On failure *out is
  // left unchanged and the resource stays usable.
  status allocate(std::size_t bytes, segment* out) noexcept {
    if (bytes == 0 || out == nullptr) return status::invalid_argument;
    return do_allocate(bytes, out);
  }
  // Returns a segment obtained from allocate() of this resource, exactly as it was handed out.
  void deallocate(const segment& s) noexcept { do_deallocate(s); }
  const char* name() const noexcept { return do_name(); }

 private:
  virtual status do_allocate(std::size_t bytes, segment* out) noexcept = 0;
  virtual void do_deallocate(const segment& s) noexcept = 0;
  virtual const char* do_name() const noexcept = 0;
};

}  // namespace poolshim::pool

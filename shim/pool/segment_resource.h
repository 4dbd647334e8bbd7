// A segment source for the pools: hands out whole physical allocations ("segments") that the pools
// carve into blocks. Non-virtual public interface over private do_* (RMM's model); every resource
// passes the typed conformance suite in tests/unit/shim/pool/segment_resource_test.cpp.
// Implementations: fake_segment_resource (host memory, tests and benchmarks), limit_resource_adaptor,
// and the CUDA one over cuMemAlloc_v2 (shim/, written against fake_segment_resource as its model).
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

  // Allocates a segment of exactly `bytes` usable bytes (bytes > 0). Segments of 2 MiB or more are
  // 2 MiB-aligned, smaller ones 512 B-aligned, as cuMemAlloc_v2 gives them. On failure *out is
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

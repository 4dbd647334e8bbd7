// A segment source that tells a listener of every segment it hands out and takes back, over the
// source it wraps (RMM's statistics_resource_adaptor is the model): the call-site statistics record
// them as segment events, so that the memory_viz snapshot shows how the pool packed its blocks. The
// pools call their source without holding a lock, so the listener may take its time (and start the
// statistics recorder); it must not call back into the pool.
#pragma once

#include <cstddef>
#include <cstdint>

#include "pool/segment_resource.h"

namespace poolshim {

// `taken`: handed out to the pool (true) or given back (false). noexcept: a source's calls are.
using segment_listener = void (*)(int device, std::uintptr_t base, std::size_t bytes, bool taken) noexcept;

class observed_segment_adaptor final : public pool::segment_resource {
 public:
  observed_segment_adaptor(pool::segment_resource& upstream, int device, segment_listener listener) noexcept
      : upstream_(upstream), device_(device), listener_(listener) {}

 private:
  pool::status do_allocate(std::size_t bytes, pool::segment* out) noexcept override {
    const pool::status st = upstream_.allocate(bytes, out);
    if (st == pool::status::ok && listener_ != nullptr) listener_(device_, out->base, out->size, true);
    return st;
  }
  // Heard before the segment goes: once given back, its address may be another allocation's.
  void do_deallocate(const pool::segment& s) noexcept override {
    if (listener_ != nullptr) listener_(device_, s.base, s.size, false);
    upstream_.deallocate(s);
  }
  const char* do_name() const noexcept override { return upstream_.name(); }

  pool::segment_resource& upstream_;
  int device_;
  segment_listener listener_;
};

}  // namespace poolshim

// cuMemAlloc_v2-backed segments for the device pool (see cuda_segment_resource.h).
#include "source/cuda_segment_resource.h"

#include "base/real_driver.h"
#include "base/scoped_context.h"

namespace poolshim {

pool::status cuda_segment_resource::do_allocate(std::size_t bytes, pool::segment* out) noexcept {
  const real_driver& d = real_driver::get();
  scoped_context in(d, ctx_);
  CUdeviceptr p = 0;
  CUresult r = in.status() == CUDA_SUCCESS ? d.cuMemAlloc_v2(&p, bytes) : in.status();
  if (r != CUDA_SUCCESS) {
    last_error_.store(r, std::memory_order_relaxed);
    return r == CUDA_ERROR_OUT_OF_MEMORY ? pool::status::out_of_memory : pool::status::source_error;
  }
  out->base = static_cast<std::uintptr_t>(p);
  out->size = bytes;
  out->cookie = 0;
  return pool::status::ok;
}

void cuda_segment_resource::do_deallocate(const pool::segment& s) noexcept {
  const real_driver& d = real_driver::get();
  scoped_context in(d, ctx_);
  // No context, or a failed free: the context is gone (reset or destroyed) and took the memory.
  if (in.status() == CUDA_SUCCESS) (void)d.cuMemFree_v2(static_cast<CUdeviceptr>(s.base));
}

}  // namespace poolshim

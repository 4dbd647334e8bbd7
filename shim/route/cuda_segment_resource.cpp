// cuMemAlloc_v2-backed segments for the device pool (see cuda_segment_resource.h).
#include "route/cuda_segment_resource.h"

#include "intercept/real_driver.h"

namespace poolshim {
namespace {

// Makes `ctx` current for the scope when it is not already, and restores the caller's stack.
class scoped_context {
 public:
  scoped_context(const real_driver& d, CUcontext ctx) noexcept : d_(d) {
    CUcontext cur = nullptr;
    if (d_.cuCtxGetCurrent(&cur) == CUDA_SUCCESS && cur == ctx) return;
    pushed_ = d_.cuCtxPushCurrent_v2(ctx) == CUDA_SUCCESS;
  }
  ~scoped_context() {
    if (!pushed_) return;
    CUcontext popped = nullptr;
    (void)d_.cuCtxPopCurrent_v2(&popped);
  }
  scoped_context(const scoped_context&) = delete;
  scoped_context& operator=(const scoped_context&) = delete;

 private:
  const real_driver& d_;
  bool pushed_ = false;
};

}  // namespace

pool::status cuda_segment_resource::do_allocate(std::size_t bytes, pool::segment* out) noexcept {
  const real_driver& d = real_driver::get();
  scoped_context in(d, ctx_);
  CUdeviceptr p = 0;
  CUresult r = d.cuMemAlloc_v2(&p, bytes);
  if (r != CUDA_SUCCESS) {
    last_error_ = r;
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
  // A failure here means the context is gone (reset or destroyed) and took the memory with it.
  (void)d.cuMemFree_v2(static_cast<CUdeviceptr>(s.base));
}

}  // namespace poolshim

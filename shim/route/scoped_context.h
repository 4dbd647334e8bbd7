// Makes a CUDA context current for a scope (through the real driver, never a hook) when it is not
// already, and restores the caller's context stack after. Segment and slab sources use it so that
// memory is allocated, registered and freed in its own context whatever thread asks.
#pragma once

#include <cuda.h>

#include "intercept/real_driver.h"

namespace poolshim {

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

}  // namespace poolshim

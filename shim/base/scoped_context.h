// Makes a CUDA context current for a scope (through the real driver, never a hook) when it is not
// already, and restores the caller's context stack after. Segment and slab sources use it so that
// memory is allocated, registered and freed in its own context whatever thread asks, and the
// routers to synchronise a context. status() says whether the context really is current: a push
// that failed (a destroyed context) must not let the caller act on whatever context was current.
#pragma once

#include <cuda.h>

#include "base/real_driver.h"

namespace poolshim {

class scoped_context {
 public:
  scoped_context(const real_driver& d, CUcontext ctx) noexcept : d_(d) {
    CUcontext cur = nullptr;
    if (d_.cuCtxGetCurrent(&cur) == CUDA_SUCCESS && cur == ctx) return;
    status_ = d_.cuCtxPushCurrent_v2(ctx);
    pushed_ = status_ == CUDA_SUCCESS;
  }
  ~scoped_context() {
    if (!pushed_) return;
    CUcontext popped = nullptr;
    (void)d_.cuCtxPopCurrent_v2(&popped);
  }
  scoped_context(const scoped_context&) = delete;
  scoped_context& operator=(const scoped_context&) = delete;

  // CUDA_SUCCESS when the context is current for the scope, else the push's error.
  CUresult status() const noexcept { return status_; }

 private:
  const real_driver& d_;
  CUresult status_ = CUDA_SUCCESS;
  bool pushed_ = false;
};

}  // namespace poolshim

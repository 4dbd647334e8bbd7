// The device pool's segment source over the real driver: each segment is one cuMemAlloc_v2
// allocation in one context, the most compatible memory there is (IPC, NCCL registration and
// pointer queries see a plain driver allocation). The context is made current around each call,
// so a segment is allocated and freed in its own context whatever thread asks.
#pragma once

#include <cuda.h>

#include <atomic>

#include "pool/segment_resource.h"

namespace poolshim {

class cuda_segment_resource final : public pool::segment_resource {
 public:
  explicit cuda_segment_resource(CUcontext ctx) noexcept : ctx_(ctx) {}
  CUcontext context() const noexcept { return ctx_; }
  // The driver's last failure, for the shim to return instead of a generic out-of-memory.
  CUresult last_error() const noexcept { return last_error_.load(std::memory_order_relaxed); }

 private:
  pool::status do_allocate(std::size_t bytes, pool::segment* out) noexcept override;
  void do_deallocate(const pool::segment& s) noexcept override;
  const char* do_name() const noexcept override { return "cuMemAlloc_v2"; }

  CUcontext ctx_;
  // Written by whichever thread's allocation failed last (pools call their source unlocked).
  std::atomic<CUresult> last_error_{CUDA_SUCCESS};
};

}  // namespace poolshim

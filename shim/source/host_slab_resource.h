// Slabs for the pinned host pool, leased from poolshimd when a trusted daemon answers, else local.
// Local slabs: each slab is a memfd (MFD_CLOEXEC) mapped MAP_SHARED at a
// 2 MiB-aligned address, pre-touched by a few threads in parallel (the driver holds a global lock
// while it pins, so the pages are faulted in first), then pinned with ONE cuMemHostRegister_v2
// (PORTABLE | DEVICEMAP) in the context the resource was made for. The mapping is MADV_DONTFORK, as
// the driver's own pinned memory is: a fork child does not share it.
#pragma once

#include <cuda.h>

#include <atomic>
#include <cstddef>

#include "pool/segment_resource.h"

namespace poolshim {

class host_slab_resource final : public pool::segment_resource {
 public:
  // touch_threads: threads that pre-touch a slab (0: as many as the machine has cores, at most 4).
  // use_daemon: lease slabs from poolshimd when a trusted one answers (daemon_client.h), else and
  // on any refusal make them locally.
  explicit host_slab_resource(CUcontext ctx, unsigned touch_threads = 0, bool use_daemon = true) noexcept
      : ctx_(ctx), touch_threads_(touch_threads), use_daemon_(use_daemon) {}
  CUcontext context() const noexcept { return ctx_; }
  // The driver's last failure (registration), CUDA_SUCCESS when the failure was the host's.
  CUresult last_error() const noexcept { return last_error_.load(std::memory_order_relaxed); }

 private:
  pool::status do_allocate(std::size_t bytes, pool::segment* out) noexcept override;
  void do_deallocate(const pool::segment& s) noexcept override;
  const char* do_name() const noexcept override { return "memfd+cuMemHostRegister_v2"; }

  CUcontext ctx_;
  unsigned touch_threads_;
  bool use_daemon_;
  // Written by whichever thread's allocation failed last (pools call their source unlocked).
  std::atomic<CUresult> last_error_{CUDA_SUCCESS};
};

// Faults in every page of [p, p + bytes) with `threads` threads (each its share); exposed for the
// benchmark and tests. Falls back to this thread alone when threads cannot be started.
void pretouch_parallel(void* p, std::size_t bytes, unsigned threads) noexcept;

}  // namespace poolshim

// Device segments lent by poolshimd (POOLSHIM_DEVICE_SOURCE=daemon, opt-in until measured on a
// GPU): a VMM allocation the daemon made with cuMemCreate on this context's device (named by UUID),
// received as a POSIX fd, imported, mapped at an address reserved here and made accessible to the
// device. When the daemon cannot lend (none, refused, limit), the upstream resource — the local
// cuMemAlloc_v2 source — serves, so the pool never fails for want of a daemon; it also serves the
// segments the daemon's 2 MiB granule would inflate by more than an eighth. Segments remember
// which source made them (cookie), and go back there. Legacy IPC handles do not exist for VMM
// memory: a pool on this source answers cudaIpcGetMemHandle of its blocks with the driver's error.
#pragma once

#include <cuda.h>

#include "pool/segment_resource.h"

namespace poolshim {

class daemon_fallback_adaptor final : public pool::segment_resource {
 public:
  daemon_fallback_adaptor(CUcontext ctx, CUdevice dev, const CUuuid& uuid, pool::segment_resource& upstream) noexcept
      : ctx_(ctx), dev_(dev), uuid_(uuid), upstream_(upstream) {}

 private:
  pool::status do_allocate(std::size_t bytes, pool::segment* out) noexcept override;
  void do_deallocate(const pool::segment& s) noexcept override;
  const char* do_name() const noexcept override { return "poolshimd VMM, else upstream"; }

  CUcontext ctx_;
  CUdevice dev_;
  CUuuid uuid_;
  pool::segment_resource& upstream_;
};

}  // namespace poolshim

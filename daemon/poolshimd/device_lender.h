// Device memory the daemon lends (opt-in on both sides: `poolshimd --device-limit`, and
// POOLSHIM_DEVICE_SOURCE=daemon in the shim): VMM allocations made with cuMemCreate on the device
// a client names by UUID (ordinals differ between processes under CUDA_VISIBLE_DEVICES), exported
// as a POSIX file descriptor the client imports, maps and grants itself access to. The daemon keeps
// its own handle until the lease ends, so the memory lives until the client has let go as well.
// The driver is loaded only when the first device lease is asked for: a daemon on a machine without
// a GPU never touches it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace poolshim::daemon {

class device_lender {
 public:
  explicit device_lender(std::uint64_t limit_per_device) noexcept : limit_(limit_per_device) {}
  bool enabled() const noexcept { return limit_ != 0; }
  // A new allocation of `bytes` on the device with this UUID: its handle, and an exported fd for the
  // client (the caller closes it). False with *why set when it cannot be made (limit, no driver,
  // no such device, the driver's error).
  // *device: which of the daemon's devices lent it, for give_back.
  bool lend(const unsigned char (&uuid)[16], std::uint64_t bytes, std::uint64_t* handle, int* device, int* fd,
            std::string* why);
  void give_back(std::uint64_t handle, std::uint64_t bytes, int device) noexcept;
  std::uint64_t lent_bytes() const noexcept { return lent_; }

 private:
  bool load(std::string* why);

  std::uint64_t limit_;
  std::uint64_t lent_ = 0;  // over all devices (the limit is checked per device below)
  struct device_state {
    unsigned char uuid[16];
    int ordinal;
    std::uint64_t lent;
    bool rdma;  // CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED
  };
  device_state devices_[16] = {};
  int device_count_ = 0;
  bool loaded_ = false;
  bool failed_ = false;
};

}  // namespace poolshim::daemon

// Device memory the daemon lends (opt-in on both sides: `poolshimd --device-limit`, and
// POOLSHIM_DEVICE_SOURCE=daemon in the shim): VMM allocations made with cuMemCreate on the device
// a client names by UUID (ordinals differ between processes under CUDA_VISIBLE_DEVICES), exported
// as a POSIX file descriptor the client imports, maps and grants itself access to. The daemon keeps
// its own handle until the lease ends, so the memory lives until the client has let go as well.
// Named device buffers are plain cuMemAlloc allocations with a legacy IPC handle (allocate_named).
// The driver is loaded only when the first device lease or device buffer is asked for: a daemon on
// a machine without a GPU never touches it.
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

  // A named device buffer (issue #14): cuMemAlloc memory (legacy IPC needs it: VMM memory has no
  // legacy handle) on the device with this UUID, its IPC handle, and an interprocess event
  // (record/wait across processes) with its handle. Independent of lending being on; when a
  // per-device limit is set it counts against it. The daemon holds both until free_named.
  struct named_allocation {
    std::uint64_t ptr = 0, event = 0, bytes = 0;
    int device = -1;  // index among the daemon's devices
    unsigned char mem_handle[64] = {}, event_handle[64] = {};
  };
  enum class result { ok, no_device, no_memory, failed };
  result allocate_named(const unsigned char (&uuid)[16], std::uint64_t bytes, named_allocation* out, std::string* why);
  void free_named(const named_allocation& a) noexcept;
  // The UUID of the daemon's device `index`, the driver loaded if need be (false with *why: no such
  // device, or no driver).
  bool device_uuid(int index, unsigned char (&uuid)[16], std::string* why);

 private:
  bool load(std::string* why);
  bool make_current(int index, std::string* why);

  std::uint64_t limit_;
  std::uint64_t lent_ = 0;  // over all devices (the limit is checked per device below)
  struct device_state {
    unsigned char uuid[16];
    int ordinal;
    std::uint64_t lent;
    bool rdma;            // CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED
    void* ctx = nullptr;  // its primary context, retained on first use
  };
  device_state devices_[16] = {};
  int device_count_ = 0;
  bool loaded_ = false;
  bool failed_ = false;
};

}  // namespace poolshim::daemon

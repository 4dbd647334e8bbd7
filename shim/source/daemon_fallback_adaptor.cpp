// Daemon-lent VMM segments with a local fallback (daemon_fallback_adaptor.h). The cookie of a
// daemon segment is its lease id with the top bit set; upstream segments keep their own cookie
// (cuda_segment_resource's is 0).
#include "source/daemon_fallback_adaptor.h"

#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>

#include "base/real_driver.h"
#include "base/scoped_context.h"
#include "source/daemon_client.h"

namespace poolshim {
namespace {

constexpr std::uint64_t k_daemon_bit = std::uint64_t{1} << 63;
constexpr std::size_t k_granule = std::size_t{2} << 20;
// How long an allocation waits for memory other processes are giving back (their report period is
// 100 ms by default), and how often it asks again meanwhile.
constexpr std::chrono::milliseconds k_reclaim_wait{2000};
constexpr long k_reclaim_poll_ns = 5'000'000;

}  // namespace

pool::status daemon_fallback_adaptor::do_allocate(std::size_t bytes, pool::segment* out) noexcept {
  const std::size_t size = (bytes + k_granule - 1) & ~(k_granule - 1);
  // The daemon lends whole 2 MiB granules; a segment the granule would inflate by more than an
  // eighth (a 1.1 MiB block in 2 MiB, 9 MiB in 10) comes from the driver at its own size instead:
  // it flows back alike (trim, idle release), without the daemon's rounding (footprint benchmark).
  if ((size - bytes) * 8 > bytes) return upstream_.allocate(bytes, out);
  unsigned char uuid[16];
  static_assert(sizeof uuid == sizeof uuid_.bytes);
  for (std::size_t i = 0; i < sizeof uuid; ++i) uuid[i] = static_cast<unsigned char>(uuid_.bytes[i]);
  daemon_client::device_lease lease{};
  std::uint64_t reclaiming = 0;
  if (!daemon_client::lease_device(uuid, size, &lease, &reclaiming)) {
    // The driver first (the lending limit may be spent while the device is not); when the device
    // is full too and the daemon is taking idle memory back from other processes for this request,
    // wait for it: they give it back at their next report (POOLSHIM_IDLE_REPORT_MS), bounded.
    const pool::status up = upstream_.allocate(bytes, out);
    if (up != pool::status::out_of_memory || reclaiming == 0) return up;
    const auto until = std::chrono::steady_clock::now() + k_reclaim_wait;
    bool leased = false;
    while (!leased && reclaiming != 0 && std::chrono::steady_clock::now() < until) {
      timespec nap{0, k_reclaim_poll_ns};
      nanosleep(&nap, nullptr);
      leased = daemon_client::lease_device(uuid, size, &lease, &reclaiming);
    }
    if (!leased) return upstream_.allocate(bytes, out);  // the device may have room by now
  }
  const real_driver& d = real_driver::get();
  scoped_context in(d, ctx_);
  CUmemGenericAllocationHandle h = 0;
  CUdeviceptr va = 0;
  bool mapped = false;
  CUresult r = in.status();
  if (r == CUDA_SUCCESS)
    r = d.cuMemImportFromShareableHandle(&h, reinterpret_cast<void*>(static_cast<std::uintptr_t>(lease.fd)),
                                         CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
  close(lease.fd);
  const bool imported = r == CUDA_SUCCESS;
  if (r == CUDA_SUCCESS) r = d.cuMemAddressReserve(&va, lease.bytes, k_granule, 0, 0);
  const bool reserved = r == CUDA_SUCCESS;
  if (r == CUDA_SUCCESS) r = d.cuMemMap(va, lease.bytes, 0, h, 0);
  mapped = r == CUDA_SUCCESS;
  if (r == CUDA_SUCCESS) {
    CUmemAccessDesc access{};
    access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    access.location.id = dev_;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    r = d.cuMemSetAccess(va, lease.bytes, &access, 1);
  }
  // The mapping holds the memory from here; the import's own reference is not needed.
  if (imported) (void)d.cuMemRelease(h);
  if (r != CUDA_SUCCESS) {
    if (mapped) (void)d.cuMemUnmap(va, lease.bytes);
    if (reserved) (void)d.cuMemAddressFree(va, lease.bytes);
    daemon_client::return_device(lease.id);
    return upstream_.allocate(bytes, out);
  }
  out->base = static_cast<std::uintptr_t>(va);
  out->size = lease.bytes;
  out->cookie = lease.id | k_daemon_bit;
  return pool::status::ok;
}

void daemon_fallback_adaptor::do_deallocate(const pool::segment& s) noexcept {
  if ((s.cookie & k_daemon_bit) == 0) {
    upstream_.deallocate(s);
    return;
  }
  const real_driver& d = real_driver::get();
  {
    scoped_context in(d, ctx_);
    if (in.status() == CUDA_SUCCESS) {
      (void)d.cuMemUnmap(static_cast<CUdeviceptr>(s.base), s.size);
      (void)d.cuMemAddressFree(static_cast<CUdeviceptr>(s.base), s.size);
    }
  }
  daemon_client::return_device(s.cookie & ~k_daemon_bit);
}

}  // namespace poolshim

// memfd slabs pinned with cuMemHostRegister_v2 (see host_slab_resource.h). The cookie of a
// segment is its memfd; deallocate unregisters, unmaps and closes it.
#include "source/host_slab_resource.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>
#include <vector>

#include "base/real_driver.h"
#include "base/scoped_context.h"
#include "source/daemon_client.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace poolshim {
namespace {

constexpr std::size_t kAlign = std::size_t{2} << 20;
constexpr std::size_t kPage = 4096;

void touch_range(char* p, std::size_t bytes) noexcept {
  if (bytes == 0) return;
  // One call faults the whole range in (Linux 5.14+); else one write per page.
  if (madvise(p, bytes, MADV_POPULATE_WRITE) == 0) return;
  for (std::size_t off = 0; off < bytes; off += kPage) static_cast<volatile char*>(p)[off] = 0;
}

// A 2 MiB-aligned MAP_SHARED mapping of fd's first `bytes` (fd -1: anonymous shared memory), or
// nullptr.
void* map_aligned(int fd, std::size_t bytes) noexcept {
  void* area = mmap(nullptr, bytes + kAlign, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (area == MAP_FAILED) return nullptr;
  const auto raw = reinterpret_cast<std::uintptr_t>(area);
  const std::uintptr_t base = (raw + kAlign - 1) & ~(kAlign - 1);
  void* p = mmap(reinterpret_cast<void*>(base), bytes, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_FIXED | (fd < 0 ? MAP_ANONYMOUS : 0), fd, 0);
  if (p == MAP_FAILED) {
    munmap(area, bytes + kAlign);
    return nullptr;
  }
  if (base > raw) munmap(area, base - raw);
  const std::uintptr_t end = base + bytes;
  if (raw + bytes + kAlign > end) munmap(reinterpret_cast<void*>(end), raw + bytes + kAlign - end);
  return p;
}

// True when a file of `bytes` would exceed RLIMIT_FSIZE (writing past it raises SIGXFSZ).
bool beyond_file_size_limit(std::size_t bytes) noexcept {
  rlimit l{};
  return getrlimit(RLIMIT_FSIZE, &l) == 0 && l.rlim_cur != RLIM_INFINITY && bytes > l.rlim_cur;
}

// A local slab's memfd is closed; a leased one goes back to the daemon (which closes it).
void release_fd(int fd, std::uint64_t token, std::size_t size) noexcept {
  if (token == 0) {
    if (fd >= 0) close(fd);
    return;
  }
  daemon_client::return_slab(daemon_client::slab_lease{fd, size, token});
}

}  // namespace

void pretouch_parallel(void* p, std::size_t bytes, unsigned threads) noexcept {
  auto* base = static_cast<char*>(p);
  // Each thread takes a page-aligned share; small slabs are not worth a thread.
  const std::size_t per =
      std::max<std::size_t>((bytes / std::max(threads, 1u) + kPage - 1) & ~(kPage - 1), std::size_t{32} << 20);
  std::vector<std::thread> workers;
  std::size_t off = per;
  try {
    for (; off < bytes; off += per) workers.emplace_back(touch_range, base + off, std::min(per, bytes - off));
  } catch (...) {  // no thread: touch what is left here
    touch_range(base + off, bytes - off);
  }
  touch_range(base, std::min(per, bytes));
  for (auto& w : workers) w.join();
}

pool::status host_slab_resource::do_allocate(std::size_t bytes, pool::segment* out) noexcept {
  const real_driver& d = real_driver::get();
  std::size_t size = (bytes + kAlign - 1) & ~(kAlign - 1);
  daemon_client::slab_lease lease{-1, 0, 0};
  int fd = -1;
  void* p = nullptr;
  if (use_daemon_ && daemon_client::lease_slab(size, &lease)) {
    // The daemon's slab: its pages exist already; mapping and the pre-touch below only fill this
    // process's page tables. Not MADV_DONTFORK: a fork child keeps a valid mapping of it, and the
    // daemon never lends these pages again.
    fd = lease.fd;
    size = lease.bytes;
    p = map_aligned(fd, size);
    if (p == nullptr) {
      daemon_client::return_slab(lease);
      return pool::status::out_of_memory;
    }
  } else if (beyond_file_size_limit(size)) {
    // A memfd that large would raise SIGXFSZ (ulimit -f), which kills the program: anonymous shared
    // memory instead (populated by the pre-touch below; no fd, so cookie -1).
    p = map_aligned(-1, size);
    if (p == nullptr) return pool::status::out_of_memory;
    (void)madvise(p, size, MADV_DONTFORK);
  } else {
    fd = memfd_create("poolshim-pinned", MFD_CLOEXEC);
    if (fd < 0) return pool::status::out_of_memory;
    // fallocate puts the pages in the memfd in one call (and fails cleanly where memory is short,
    // instead of a SIGBUS at first touch); the threads then only map them.
    p = ftruncate(fd, static_cast<off_t>(size)) == 0 && fallocate(fd, 0, 0, static_cast<off_t>(size)) == 0
            ? map_aligned(fd, size)
            : nullptr;
    if (p == nullptr) {
      close(fd);
      return pool::status::out_of_memory;
    }
    (void)madvise(p, size, MADV_DONTFORK);
  }
  unsigned threads = touch_threads_;
  if (threads == 0) threads = std::clamp(std::thread::hardware_concurrency(), 1u, 4u);
  pretouch_parallel(p, size, threads);
  CUresult r;
  {
    scoped_context in(d, ctx_);
    r = in.status() == CUDA_SUCCESS
            ? d.cuMemHostRegister_v2(p, size, CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP)
            : in.status();
  }
  if (r != CUDA_SUCCESS) {
    last_error_.store(r, std::memory_order_relaxed);
    munmap(p, size);
    release_fd(fd, lease.token, size);
    return r == CUDA_ERROR_OUT_OF_MEMORY ? pool::status::out_of_memory : pool::status::source_error;
  }
  out->base = reinterpret_cast<std::uintptr_t>(p);
  out->size = size;
  // Cookie: the memfd in the low half, the daemon lease's token (0: a local slab) in the high half.
  out->cookie = static_cast<std::uint32_t>(fd) | (lease.token << 32);
  return pool::status::ok;
}

void host_slab_resource::do_deallocate(const pool::segment& s) noexcept {
  const real_driver& d = real_driver::get();
  {
    scoped_context in(d, ctx_);
    (void)d.cuMemHostUnregister(reinterpret_cast<void*>(s.base));
  }
  munmap(reinterpret_cast<void*>(s.base), s.size);
  release_fd(static_cast<int>(s.cookie & 0xffffffffu), s.cookie >> 32, s.size);
}

}  // namespace poolshim

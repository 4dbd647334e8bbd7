// Simulated CUDA driver: device memory and the pointer registry.
// Each device is one memfd (its "DRAM") mapped twice: a PROT_NONE view that device pointers point
// into, so a host dereference faults as on a GPU, and a read-write shadow view the stream workers
// copy through. Freed ranges are punched out of the memfd. Every allocation the program can name
// (device, pinned, registered, managed, VMM chunk, IPC import) is a region in one ordered map.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>

#include "sim_node.h"
#include "sim_state.h"

namespace sim {
namespace {

size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

void punch(int fd, size_t offset, size_t len) {
  // Only whole pages can be returned to the kernel; partial pages keep their old bytes, which is
  // what real CUDA does too (cudaMalloc memory is not cleared).
  const size_t page = 4096;
  size_t start = round_up(offset, page);
  size_t end = (offset + len) / page * page;
  if (end > start)
    (void)fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(start),
                    static_cast<off_t>(end - start));
}

}  // namespace

// Called from cuInit with g.mu held.
CUresult init_arenas() {
  state& g = get();
  if (!g.arenas.empty()) return CUDA_SUCCESS;
  g.arenas.resize(static_cast<size_t>(g.cfg.devices));
  for (int d = 0; d < g.cfg.devices; ++d) {
    arena& a = g.arenas[static_cast<size_t>(d)];
    char name[64];
    std::snprintf(name, sizeof name, "poolshim-sim-device%d", d);
    a.size = g.cfg.device_memory;
    void* dv = MAP_FAILED;
    void* sv = MAP_FAILED;
    rlimit fsize{};
    if (getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur != RLIM_INFINITY && a.size > fsize.rlim_cur) {
      // Real CUDA runs under ulimit -f; a memfd this large would raise SIGXFSZ. Anonymous shared
      // memory instead, its second view made by mremap; no fd, so no legacy IPC export here.
      a.fd = -1;
      sv = mmap(nullptr, a.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (sv != MAP_FAILED) dv = mremap(sv, 0, a.size, MREMAP_MAYMOVE);
      if (dv != MAP_FAILED) (void)mprotect(dv, a.size, PROT_NONE);
    } else {
      a.fd = memfd_create(name, MFD_CLOEXEC);
      if (a.fd < 0) return CUDA_ERROR_OUT_OF_MEMORY;
      if (ftruncate(a.fd, static_cast<off_t>(a.size)) != 0) return CUDA_ERROR_OUT_OF_MEMORY;
      dv = mmap(nullptr, a.size, PROT_NONE, MAP_SHARED | MAP_NORESERVE, a.fd, 0);
      sv = mmap(nullptr, a.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, a.fd, 0);
    }
    if (dv == MAP_FAILED || sv == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
    a.device_view = static_cast<uint8_t*>(dv);
    a.shadow_view = static_cast<uint8_t*>(sv);
    a.free_ranges.emplace(0, a.size);
  }
  return CUDA_SUCCESS;
}

CUresult arena_alloc(int device, size_t size, size_t* offset, size_t* span) {
  arena& a = get().arenas[static_cast<size_t>(device)];
  size_t need = round_up(size, k_alloc_align);
  // Large allocations are 2 MiB aligned in the arena, as the real driver maps them in 2 MiB pages
  // (so later huge segments never straddle a small allocation's page).
  size_t align = need >= k_vmm_granularity ? k_vmm_granularity : k_alloc_align;
  for (auto it = a.free_ranges.begin(); it != a.free_ranges.end(); ++it) {
    size_t start = round_up(it->first, align);
    size_t end = it->first + it->second;
    if (start + need > end) continue;
    if (!node_reserve(device, need, a.size)) return CUDA_ERROR_OUT_OF_MEMORY;  // the node is full
    size_t range_off = it->first;
    a.free_ranges.erase(it);
    if (start > range_off) a.free_ranges.emplace(range_off, start - range_off);
    if (start + need < end) a.free_ranges.emplace(start + need, end - start - need);
    a.used += need;
    *offset = start;
    *span = need;
    return CUDA_SUCCESS;
  }
  return CUDA_ERROR_OUT_OF_MEMORY;
}

void arena_release(int device, size_t offset, size_t span) {
  arena& a = get().arenas[static_cast<size_t>(device)];
  if (a.fd >= 0)
    punch(a.fd, offset, span);
  else  // anonymous shared arena (ulimit -f): the same, through the shadow view
    (void)madvise(a.shadow_view + round_up(offset, 4096),
                  (offset + span) / 4096 * 4096 > round_up(offset, 4096)
                      ? (offset + span) / 4096 * 4096 - round_up(offset, 4096)
                      : 0,
                  MADV_REMOVE);
  a.used -= span;
  node_release(device, span);
  auto next = a.free_ranges.lower_bound(offset);
  size_t start = offset, len = span;
  if (next != a.free_ranges.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {
      start = prev->first;
      len += prev->second;
      a.free_ranges.erase(prev);
    }
  }
  if (next != a.free_ranges.end() && next->first == offset + span) {
    len += next->second;
    a.free_ranges.erase(next);
  }
  a.free_ranges.emplace(start, len);
}

region* find_region(uintptr_t p) {
  auto& m = get().regions;
  auto it = m.upper_bound(p);
  if (it == m.begin()) return nullptr;
  --it;
  region& r = it->second;
  // A zero-length lookup at the very end is not inside.
  return p < r.base + (r.size == 0 ? 1 : r.size) ? &r : nullptr;
}

region* find_region_base(uintptr_t p) {
  auto& m = get().regions;
  auto it = m.find(p);
  return it == m.end() ? nullptr : &it->second;
}

CUresult new_device_region(region_kind kind, size_t size, CUcontext ctx, uintptr_t* out) {
  state& g = get();
  size_t off = 0, span = 0;
  if (!count_device_alloc()) return CUDA_ERROR_OUT_OF_MEMORY;
  CUresult r = arena_alloc(ctx->device, size, &off, &span);
  if (r != CUDA_SUCCESS) return r;
  arena& a = g.arenas[static_cast<size_t>(ctx->device)];
  region reg;
  reg.kind = kind;
  reg.base = reinterpret_cast<uintptr_t>(a.device_view + off);
  reg.size = size;
  reg.shadow = a.shadow_view + off;
  reg.device = ctx->device;
  reg.ctx = ctx;
  reg.buffer_id = g.next_buffer_id++;
  reg.arena_offset = off;
  reg.arena_span = span;
  g.regions.emplace(reg.base, std::move(reg));
  *out = reinterpret_cast<uintptr_t>(a.device_view + off);
  return CUDA_SUCCESS;
}

void free_device_region(uintptr_t base) {
  state& g = get();
  auto it = g.regions.find(base);
  if (it == g.regions.end()) return;
  region& r = it->second;
  arena_release(r.device, r.arena_offset, r.arena_span);
  g.regions.erase(it);
}

void free_all_of_context(CUcontext c) {
  state& g = get();
  for (auto it = g.regions.begin(); it != g.regions.end();) {
    region& r = it->second;
    bool owned = r.ctx == c && (r.kind == region_kind::device || r.kind == region_kind::async ||
                                r.kind == region_kind::managed || r.kind == region_kind::host_alloc);
    if (!owned) {
      ++it;
      continue;
    }
    if (r.kind == region_kind::device || r.kind == region_kind::async) {
      arena_release(r.device, r.arena_offset, r.arena_span);
    } else {
      munmap(reinterpret_cast<void*>(r.base), round_up(r.size, 4096));
    }
    it = g.regions.erase(it);
  }
}

CUresult resolve_range(uintptr_t p, size_t n, bool write, int accessing_device, resolved* out) {
  region* r = find_region(p);
  if (r == nullptr) {
    // Not CUDA memory: plain pageable host memory. A pointer inside a device arena that is not
    // allocated is an invalid device pointer.
    for (auto& a : get().arenas) {
      auto* b = a.device_view;
      if (p >= reinterpret_cast<uintptr_t>(b) && p < reinterpret_cast<uintptr_t>(b) + a.size)
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (p == 0) return CUDA_ERROR_INVALID_VALUE;
    *out = resolved{reinterpret_cast<uint8_t*>(p), mem_class::pageable, -1};
    return CUDA_SUCCESS;
  }
  if (n > r->base + r->size - p) return CUDA_ERROR_INVALID_VALUE;  // runs past the allocation
  size_t off = p - r->base;
  switch (r->kind) {
    case region_kind::host_alloc:
    case region_kind::host_registered:
      if (write && (r->flags & CU_MEMHOSTREGISTER_READ_ONLY) && r->kind == region_kind::host_registered)
        return CUDA_ERROR_INVALID_VALUE;
      *out = resolved{r->shadow + off, mem_class::pinned, -1};
      return CUDA_SUCCESS;
    case region_kind::managed:
      *out = resolved{r->shadow + off, mem_class::managed, r->device};
      return CUDA_SUCCESS;
    case region_kind::vmm_mapping: {
      // No access before cuMemSetAccess; the accessing device needs its own grant.
      unsigned bit = 1u << (accessing_device < 0 ? r->device : accessing_device);
      unsigned mask = write ? r->access_rw_mask : r->access_mask;
      if ((mask & bit) == 0) return CUDA_ERROR_INVALID_VALUE;
      *out = resolved{r->shadow + off, mem_class::device, r->device};
      return CUDA_SUCCESS;
    }
    case region_kind::device:
    case region_kind::async:
    case region_kind::ipc_import:
      *out = resolved{r->shadow + off, mem_class::device, r->device};
      return CUDA_SUCCESS;
  }
  return CUDA_ERROR_INVALID_VALUE;
}

}  // namespace sim

// Simulated CUDA driver: allocation entry points (device, pitched, managed, pinned, registered,
// stream-ordered), memory info, address ranges and pointer attributes. Frees of device and
// pinned memory synchronise first, as real cuMemFree/cuMemFreeHost do.
#include <sys/mman.h>

#include <cstring>

#include "sim_node.h"
#include "sim_state.h"

using namespace sim;

namespace {

size_t page_round(size_t v) { return (v + 4095) / 4096 * 4096; }

bool is_device_kind(region_kind k) {
  return k == region_kind::device || k == region_kind::async || k == region_kind::vmm_mapping ||
         k == region_kind::ipc_import;
}

// Host memory the driver hands out (pinned, managed): anonymous, pre-faulted as pinning does.
void* host_pages(size_t size) {
  void* p = mmap(nullptr, page_round(size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

CUresult add_host_region(region_kind kind, void* p, size_t size, unsigned flags, CUcontext ctx) {
  state& g = get();
  region reg;
  reg.kind = kind;
  reg.base = reinterpret_cast<uintptr_t>(p);
  reg.size = size;
  reg.shadow = static_cast<uint8_t*>(p);
  reg.device = ctx ? ctx->device : 0;
  reg.ctx = ctx;
  reg.flags = flags;
  reg.buffer_id = g.next_buffer_id++;
  g.regions.emplace(reg.base, std::move(reg));
  return CUDA_SUCCESS;
}

// Every allocation entry point: output checked, size checked, context current, capture allows it.
CUresult alloc_prologue(const void* out, size_t size, CUcontext* ctx) {
  if (out == nullptr || size == 0) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = require_ctx(ctx); r != CUDA_SUCCESS) return r;
  return check_unsafe_call();
}

}  // namespace

namespace {
CUresult mem_alloc(const char* name, CUdeviceptr* dptr, size_t bytesize) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  std::lock_guard<std::mutex> lk(get().mu);
  CUcontext c = nullptr;
  if (CUresult r = alloc_prologue(dptr, bytesize, &c); r != CUDA_SUCCESS) return r;
  uintptr_t p = 0;
  if (CUresult r = new_device_region(region_kind::device, bytesize, c, &p); r != CUDA_SUCCESS) return r;
  *dptr = p;
  return CUDA_SUCCESS;
}

CUresult mem_alloc_pitch(const char* name, CUdeviceptr* dptr, size_t* pitch, size_t width, size_t height,
                         unsigned int elem) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (pitch == nullptr || width == 0 || height == 0 || (elem != 4 && elem != 8 && elem != 16))
    return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lk(get().mu);
  size_t p_bytes = (width + k_alloc_align - 1) / k_alloc_align * k_alloc_align;
  CUcontext c = nullptr;
  if (CUresult r = alloc_prologue(dptr, p_bytes * height, &c); r != CUDA_SUCCESS) return r;
  uintptr_t p = 0;
  if (CUresult r = new_device_region(region_kind::device, p_bytes * height, c, &p); r != CUDA_SUCCESS) return r;
  *dptr = p;
  *pitch = p_bytes;
  return CUDA_SUCCESS;
}

CUresult mem_free(const char* name, CUdeviceptr dptr) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  // cuMemFree(0) is accepted as a no-op, like cudaFree(NULL). Not stated in cuda.h: GPU to verify.
  if (dptr == 0) return CUDA_SUCCESS;
  state& g = get();
  std::unique_lock<std::mutex> lk(g.mu);
  CUcontext c = nullptr;
  if (CUresult r = require_ctx(&c); r != CUDA_SUCCESS) return r;
  if (CUresult r = check_unsafe_call(); r != CUDA_SUCCESS) return r;
  region* r = find_region_base(dptr);
  // Only the base of a cuMemAlloc/Pitch/AllocAsync/Managed allocation may be freed; an interior
  // pointer, a pinned pointer or a double free is an invalid value.
  if (r == nullptr ||
      !(r->kind == region_kind::device || r->kind == region_kind::async || r->kind == region_kind::managed))
    return CUDA_ERROR_INVALID_VALUE;
  // The implicit synchronisation programs rely on: the device finishes what it was doing.
  int dev = r->device;
  sync_device_locked(lk, dev);
  r = find_region_base(dptr);  // the lock was released while waiting
  if (r == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (r->kind == region_kind::managed) {
    munmap(reinterpret_cast<void*>(r->base), page_round(r->size));
    g.regions.erase(r->base);
  } else {
    free_device_region(dptr);
  }
  return sticky_or(CUDA_SUCCESS);
}
}  // namespace

POOLSHIM_SIM_API CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytesize) {
  return mem_alloc("cuMemAlloc_v2", dptr, bytesize);
}
POOLSHIM_SIM_API CUresult cuMemAllocPitch_v2(CUdeviceptr* dptr, size_t* pitch, size_t width, size_t height,
                                             unsigned int elem) {
  return mem_alloc_pitch("cuMemAllocPitch_v2", dptr, pitch, width, height, elem);
}
POOLSHIM_SIM_API CUresult cuMemFree_v2(CUdeviceptr dptr) { return mem_free("cuMemFree_v2", dptr); }

// The v2000 ABIs (32-bit pointers and sizes; see sim_state.h and tests/sim/README.md, UNV): the
// allocation is made in full, the caller gets its low 32 bits.
POOLSHIM_SIM_API CUresult cuMemAlloc(CUdeviceptr_v1* dptr, unsigned int bytesize) {
  CUdeviceptr p = 0;
  CUresult r = mem_alloc("cuMemAlloc", dptr ? &p : nullptr, bytesize);
  if (r == CUDA_SUCCESS) *dptr = truncate_dptr(p);
  return r;
}
POOLSHIM_SIM_API CUresult cuMemAllocPitch(CUdeviceptr_v1* dptr, unsigned int* pitch, unsigned int width,
                                          unsigned int height, unsigned int elem) {
  CUdeviceptr p = 0;
  size_t pitch64 = 0;
  CUresult r = mem_alloc_pitch("cuMemAllocPitch", dptr ? &p : nullptr, pitch ? &pitch64 : nullptr, width, height, elem);
  if (r == CUDA_SUCCESS) {
    *dptr = truncate_dptr(p);
    *pitch = clamp_u32(pitch64);
  }
  return r;
}
POOLSHIM_SIM_API CUresult cuMemFree(CUdeviceptr_v1 dptr) { return mem_free("cuMemFree", dptr); }

POOLSHIM_SIM_API CUresult cuMemAllocManaged(CUdeviceptr* dptr, size_t bytesize, unsigned int flags) {
  if (CUresult r = api_enter("cuMemAllocManaged"); r != CUDA_SUCCESS) return r;
  if (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lk(get().mu);
  CUcontext c = nullptr;
  if (CUresult r = alloc_prologue(dptr, bytesize, &c); r != CUDA_SUCCESS) return r;
  if (!count_device_alloc()) return CUDA_ERROR_OUT_OF_MEMORY;
  void* p = host_pages(bytesize);
  if (p == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
  add_host_region(region_kind::managed, p, bytesize, flags, c);
  *dptr = reinterpret_cast<CUdeviceptr>(p);
  return CUDA_SUCCESS;
}

// --- pinned and registered host memory --------------------------------------------------------

namespace {
CUresult host_alloc(const char* name, void** pp, size_t bytesize, unsigned int flags) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  constexpr unsigned known = CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_WRITECOMBINED;
  if ((flags & ~known) != 0) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lk(get().mu);
  CUcontext c = nullptr;
  if (CUresult r = alloc_prologue(pp, bytesize, &c); r != CUDA_SUCCESS) return r;
  void* p = host_pages(bytesize);
  if (p == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
  add_host_region(region_kind::host_alloc, p, bytesize, flags, c);
  *pp = p;
  return CUDA_SUCCESS;
}

}  // namespace

POOLSHIM_SIM_API CUresult cuMemHostAlloc(void** pp, size_t bytesize, unsigned int flags) {
  return host_alloc("cuMemHostAlloc", pp, bytesize, flags);
}
POOLSHIM_SIM_API CUresult cuMemAllocHost_v2(void** pp, size_t bytesize) {
  return host_alloc("cuMemAllocHost_v2", pp, bytesize, 0);
}
// v2000: 32-bit size, 64-bit host pointer.
POOLSHIM_SIM_API CUresult cuMemAllocHost(void** pp, unsigned int bytesize) {
  return host_alloc("cuMemAllocHost", pp, bytesize, 0);
}

POOLSHIM_SIM_API CUresult cuMemFreeHost(void* p) {
  if (CUresult r = api_enter("cuMemFreeHost"); r != CUDA_SUCCESS) return r;
  state& g = get();
  std::unique_lock<std::mutex> lk(g.mu);
  if (CUresult r = check_unsafe_call(); r != CUDA_SUCCESS) return r;
  region* r = find_region_base(reinterpret_cast<uintptr_t>(p));
  if (r == nullptr || r->kind != region_kind::host_alloc) return CUDA_ERROR_INVALID_VALUE;
  // Pinned memory may be in flight on any device's copy engines.
  sync_all_locked(lk);
  r = find_region_base(reinterpret_cast<uintptr_t>(p));
  if (r == nullptr) return CUDA_ERROR_INVALID_VALUE;
  munmap(p, page_round(r->size));
  g.regions.erase(r->base);
  return sticky_or(CUDA_SUCCESS);
}

namespace {
CUresult host_get_device_pointer(const char* name, CUdeviceptr* dptr, void* p, unsigned int flags) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (dptr == nullptr || flags != 0) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lk(get().mu);
  CUcontext c = nullptr;
  if (CUresult r = require_ctx(&c); r != CUDA_SUCCESS) return r;
  region* r = find_region(reinterpret_cast<uintptr_t>(p));
  if (r == nullptr || (r->kind != region_kind::host_alloc && r->kind != region_kind::host_registered))
    return CUDA_ERROR_INVALID_VALUE;
  // Unified addressing: the device sees pinned memory at the host address.
  *dptr = reinterpret_cast<CUdeviceptr>(p);
  return CUDA_SUCCESS;
}
}  // namespace

POOLSHIM_SIM_API CUresult cuMemHostGetDevicePointer_v2(CUdeviceptr* dptr, void* p, unsigned int flags) {
  return host_get_device_pointer("cuMemHostGetDevicePointer_v2", dptr, p, flags);
}
// v2020: the device pointer comes out truncated to 32 bits (UNV).
POOLSHIM_SIM_API CUresult cuMemHostGetDevicePointer(CUdeviceptr_v1* dptr, void* p, unsigned int flags) {
  CUdeviceptr d = 0;
  CUresult r = host_get_device_pointer("cuMemHostGetDevicePointer", dptr ? &d : nullptr, p, flags);
  if (r == CUDA_SUCCESS) *dptr = truncate_dptr(d);
  return r;
}

POOLSHIM_SIM_API CUresult cuMemHostGetFlags(unsigned int* flags, void* p) {
  if (CUresult r = api_enter("cuMemHostGetFlags"); r != CUDA_SUCCESS) return r;
  if (flags == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lk(get().mu);
  region* r = find_region(reinterpret_cast<uintptr_t>(p));
  if (r == nullptr || r->kind != region_kind::host_alloc) return CUDA_ERROR_INVALID_VALUE;
  // Under unified addressing every pinned allocation is mapped; that the real driver reports
  // DEVICEMAP for cuMemAllocHost memory is a GPU check still to make.
  *flags = r->flags | CU_MEMHOSTALLOC_DEVICEMAP;
  return CUDA_SUCCESS;
}

namespace {
CUresult host_register(const char* name, void* p, size_t bytesize, unsigned int flags) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  constexpr unsigned known = CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP | CU_MEMHOSTREGISTER_IOMEMORY |
                             CU_MEMHOSTREGISTER_READ_ONLY;
  if (p == nullptr || bytesize == 0 || (flags & ~known) != 0) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lk(get().mu);
  CUcontext c = nullptr;
  if (CUresult r = require_ctx(&c); r != CUDA_SUCCESS) return r;
  auto base = reinterpret_cast<uintptr_t>(p);
  // Any overlap with pinned or registered memory is "already registered" (712).
  auto& m = get().regions;
  auto it = m.lower_bound(base);
  if (it != m.begin()) {
    auto prev = std::prev(it);
    if (prev->second.base + prev->second.size > base) return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
  }
  if (it != m.end() && it->first < base + bytesize) return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
  // Pinning faults every page in; a range that is not mapped fails here, as it would in the kernel.
  auto* bytes = static_cast<volatile const uint8_t*>(p);
  for (size_t off = 0; off < bytesize; off += 4096) (void)bytes[off];
  (void)bytes[bytesize - 1];
  add_host_region(region_kind::host_registered, p, bytesize, flags, c);
  return CUDA_SUCCESS;
}
}  // namespace

POOLSHIM_SIM_API CUresult cuMemHostRegister_v2(void* p, size_t bytesize, unsigned int flags) {
  return host_register("cuMemHostRegister_v2", p, bytesize, flags);
}
// v4000: same ABI; behaves as v2 (UNV: which flags v1 accepted is not documented).
POOLSHIM_SIM_API CUresult cuMemHostRegister(void* p, size_t bytesize, unsigned int flags) {
  return host_register("cuMemHostRegister", p, bytesize, flags);
}

POOLSHIM_SIM_API CUresult cuMemHostUnregister(void* p) {
  if (CUresult r = api_enter("cuMemHostUnregister"); r != CUDA_SUCCESS) return r;
  state& g = get();
  std::unique_lock<std::mutex> lk(g.mu);
  region* r = find_region_base(reinterpret_cast<uintptr_t>(p));
  if (r == nullptr || r->kind != region_kind::host_registered) return CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
  sync_all_locked(lk);
  g.regions.erase(reinterpret_cast<uintptr_t>(p));
  return sticky_or(CUDA_SUCCESS);
}

// --- stream-ordered allocation ----------------------------------------------------------------

namespace {
CUresult alloc_async(CUdeviceptr* dptr, size_t bytesize, CUstream hs, bool ptsz) {
  if (CUresult r = api_enter(ptsz ? "cuMemAllocAsync_ptsz" : "cuMemAllocAsync"); r != CUDA_SUCCESS) return r;
  if (dptr == nullptr || bytesize == 0) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lk(get().mu);
  CUstream s = nullptr;
  if (CUresult r = resolve_stream(hs, ptsz, &s); r != CUDA_SUCCESS) return r;
  // Simplification: the memory is reserved now rather than when the stream reaches the
  // allocation (a captured allocation is owned by the capture's graph in real CUDA).
  uintptr_t p = 0;
  if (CUresult r = new_device_region(region_kind::async, bytesize, s->ctx, &p); r != CUDA_SUCCESS) return r;
  if (CUresult r = enqueue(s, nullptr); r != CUDA_SUCCESS) {
    free_device_region(p);
    return r;
  }
  *dptr = p;
  return CUDA_SUCCESS;
}

CUresult free_async(CUdeviceptr dptr, CUstream hs, bool ptsz) {
  if (CUresult r = api_enter(ptsz ? "cuMemFreeAsync_ptsz" : "cuMemFreeAsync"); r != CUDA_SUCCESS) return r;
  std::lock_guard<std::mutex> lk(get().mu);
  CUstream s = nullptr;
  if (CUresult r = resolve_stream(hs, ptsz, &s); r != CUDA_SUCCESS) return r;
  region* r = find_region_base(dptr);
  if (r == nullptr || (r->kind != region_kind::async && r->kind != region_kind::device))
    return CUDA_ERROR_INVALID_VALUE;
  // The region leaves the registry at once (later API use of the pointer is an error) but its
  // arena span returns to the free list only when the stream reaches the free.
  int dev = r->device;
  size_t off = r->arena_offset, span = r->arena_span;
  CUresult res = enqueue(s, [dev, off, span] {
    std::lock_guard<std::mutex> relk(get().mu);
    arena_release(dev, off, span);
  });
  if (res == CUDA_SUCCESS) get().regions.erase(dptr);
  return res;
}
}  // namespace

POOLSHIM_SIM_API CUresult cuMemAllocAsync(CUdeviceptr* d, size_t n, CUstream s) { return alloc_async(d, n, s, false); }
POOLSHIM_SIM_API CUresult cuMemAllocAsync_ptsz(CUdeviceptr* d, size_t n, CUstream s) {
  return alloc_async(d, n, s, true);
}
POOLSHIM_SIM_API CUresult cuMemFreeAsync(CUdeviceptr d, CUstream s) { return free_async(d, s, false); }
POOLSHIM_SIM_API CUresult cuMemFreeAsync_ptsz(CUdeviceptr d, CUstream s) { return free_async(d, s, true); }

// --- queries ----------------------------------------------------------------------------------

namespace {
CUresult mem_get_info(const char* name, size_t* free_bytes, size_t* total_bytes) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  std::lock_guard<std::mutex> lk(get().mu);
  CUcontext c = nullptr;
  if (CUresult r = require_ctx(&c); r != CUDA_SUCCESS) return r;
  const arena& a = get().arenas[static_cast<size_t>(c->device)];
  // The node's figure when processes share one (sim_node.h), as a GPU's free memory is.
  size_t used = a.used;
  if (size_t node = 0; node_used(c->device, &node)) used = node < a.size ? node : a.size;
  if (free_bytes != nullptr) *free_bytes = a.size - used;
  if (total_bytes != nullptr) *total_bytes = a.size;
  return CUDA_SUCCESS;
}

CUresult mem_get_address_range(const char* name, CUdeviceptr* pbase, size_t* psize, CUdeviceptr dptr) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  std::lock_guard<std::mutex> lk(get().mu);
  region* r = find_region(dptr);
  if (r == nullptr) return CUDA_ERROR_NOT_FOUND;
  // For VMM memory the range is the cuMemMap chunk, not the reservation (CUDA_FACTS §9).
  if (pbase != nullptr) *pbase = r->base;
  if (psize != nullptr) *psize = r->size;
  return CUDA_SUCCESS;
}
}  // namespace

POOLSHIM_SIM_API CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total_bytes) {
  return mem_get_info("cuMemGetInfo_v2", free_bytes, total_bytes);
}
POOLSHIM_SIM_API CUresult cuMemGetAddressRange_v2(CUdeviceptr* pbase, size_t* psize, CUdeviceptr dptr) {
  return mem_get_address_range("cuMemGetAddressRange_v2", pbase, psize, dptr);
}
// v2000: sizes clamped to UINT_MAX, base truncated to 32 bits, dptr zero-extended (UNV).
POOLSHIM_SIM_API CUresult cuMemGetInfo(unsigned int* free_bytes, unsigned int* total_bytes) {
  size_t f = 0, t = 0;
  CUresult r = mem_get_info("cuMemGetInfo", &f, &t);
  if (r == CUDA_SUCCESS) {
    if (free_bytes != nullptr) *free_bytes = clamp_u32(f);
    if (total_bytes != nullptr) *total_bytes = clamp_u32(t);
  }
  return r;
}
POOLSHIM_SIM_API CUresult cuMemGetAddressRange(CUdeviceptr_v1* pbase, unsigned int* psize, CUdeviceptr_v1 dptr) {
  CUdeviceptr b = 0;
  size_t n = 0;
  CUresult r = mem_get_address_range("cuMemGetAddressRange", &b, &n, dptr);
  if (r == CUDA_SUCCESS) {
    if (pbase != nullptr) *pbase = truncate_dptr(b);
    if (psize != nullptr) *psize = clamp_u32(n);
  }
  return r;
}

namespace {

// Writes one attribute of region r (nullptr: not CUDA memory) for pointer p. `strict` is the
// singular query, which fails for memory CUDA does not know; the plural one writes zeros.
CUresult pointer_attribute(void* data, CUpointer_attribute attr, uintptr_t p, const region* r, bool strict) {
  auto put = [data](auto v) { std::memcpy(data, &v, sizeof v); };
  if (r == nullptr) {
    if (strict) return CUDA_ERROR_INVALID_VALUE;
    switch (attr) {
      case CU_POINTER_ATTRIBUTE_CONTEXT:
        put(CUcontext{});
        break;
      case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
        put(0u);
        break;
      case CU_POINTER_ATTRIBUTE_DEVICE_POINTER:
        put(CUdeviceptr{0});
        break;
      case CU_POINTER_ATTRIBUTE_HOST_POINTER:
      case CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR:
        put(static_cast<void*>(nullptr));
        break;
      case CU_POINTER_ATTRIBUTE_BUFFER_ID:
      case CU_POINTER_ATTRIBUTE_MEMORY_BLOCK_ID:
      case CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES:
        put(0ull);
        break;
      case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
        put(-2);
        break;  // what cudart reports as "no device"
      case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR:
        put(CUdeviceptr{0});
        break;
      case CU_POINTER_ATTRIBUTE_RANGE_SIZE:
      case CU_POINTER_ATTRIBUTE_MAPPING_SIZE:
        put(size_t{0});
        break;
      case CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE:
        put(CUmemoryPool{});
        break;
      default:
        put(0);
        break;
    }
    return CUDA_SUCCESS;
  }
  bool device_mem = is_device_kind(r->kind);
  bool host_visible = !device_mem;  // pinned, registered, managed
  switch (attr) {
    case CU_POINTER_ATTRIBUTE_CONTEXT:
      put(r->ctx);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
      // Managed memory reports DEVICE; IS_MANAGED tells it apart (CUDA_FACTS §6).
      put(static_cast<unsigned>(r->kind == region_kind::host_alloc || r->kind == region_kind::host_registered
                                    ? CU_MEMORYTYPE_HOST
                                    : CU_MEMORYTYPE_DEVICE));
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_DEVICE_POINTER:
      put(static_cast<CUdeviceptr>(p));
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_HOST_POINTER:
      if (!host_visible) {
        if (strict) return CUDA_ERROR_INVALID_VALUE;
        put(static_cast<void*>(nullptr));
        return CUDA_SUCCESS;
      }
      put(reinterpret_cast<void*>(p));
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_SYNC_MEMOPS:
      put(0);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_BUFFER_ID:
      put(static_cast<unsigned long long>(r->buffer_id));
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_IS_MANAGED:
      put(r->kind == region_kind::managed ? 1 : 0);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
      put(r->device);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE:
      put(r->kind == region_kind::device ? 1 : 0);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR:
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE: {
      uintptr_t base = r->base;
      size_t size = r->size;
      if (r->kind == region_kind::vmm_mapping) {
        auto& res = get().reservations;
        auto it = res.upper_bound(p);
        if (it != res.begin()) {
          --it;
          base = it->second.base;
          size = it->second.size;
        }
      }
      if (attr == CU_POINTER_ATTRIBUTE_RANGE_START_ADDR)
        put(static_cast<CUdeviceptr>(base));
      else
        put(size);
      return CUDA_SUCCESS;
    }
    case CU_POINTER_ATTRIBUTE_MAPPED:
      put(1);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES:
      put(static_cast<unsigned long long>(r->vmm ? r->vmm->prop.requestedHandleTypes : 0));
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_IS_GPU_DIRECT_RDMA_CAPABLE:
      put(0);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_ACCESS_FLAGS: {
      CUcontext c = current_ctx();
      int dev = c ? c->device : r->device;
      unsigned v = CU_POINTER_ATTRIBUTE_ACCESS_FLAG_READWRITE;
      if (r->kind == region_kind::vmm_mapping)
        v = (r->access_rw_mask >> dev & 1u) ? CU_POINTER_ATTRIBUTE_ACCESS_FLAG_READWRITE
            : (r->access_mask >> dev & 1u)  ? CU_POINTER_ATTRIBUTE_ACCESS_FLAG_READ
                                            : CU_POINTER_ATTRIBUTE_ACCESS_FLAG_NONE;
      put(v);
      return CUDA_SUCCESS;
    }
    case CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE:
      put(CUmemoryPool{});
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_MAPPING_SIZE:
      put(r->size);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR:
      put(reinterpret_cast<void*>(r->base));
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_MEMORY_BLOCK_ID:
      put(static_cast<unsigned long long>(r->buffer_id));
      return CUDA_SUCCESS;
    default:
      return CUDA_ERROR_INVALID_VALUE;  // P2P tokens, decompression: not simulated
  }
}

}  // namespace

POOLSHIM_SIM_API CUresult cuPointerGetAttribute(void* data, CUpointer_attribute attribute, CUdeviceptr ptr) {
  if (CUresult r = api_enter("cuPointerGetAttribute"); r != CUDA_SUCCESS) return r;
  if (data == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lk(get().mu);
  return pointer_attribute(data, attribute, ptr, find_region(ptr), true);
}

POOLSHIM_SIM_API CUresult cuPointerGetAttributes(unsigned int n, CUpointer_attribute* attributes, void** data,
                                                 CUdeviceptr ptr) {
  if (CUresult r = api_enter("cuPointerGetAttributes"); r != CUDA_SUCCESS) return r;
  if (n == 0 || attributes == nullptr || data == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lk(get().mu);
  const region* r = find_region(ptr);
  for (unsigned i = 0; i < n; ++i) {
    if (data[i] == nullptr) return CUDA_ERROR_INVALID_VALUE;
    CUresult res = pointer_attribute(data[i], attributes[i], ptr, r, false);
    // Attributes that do not apply to this kind of memory are reported empty, not as errors.
    if (res != CUDA_SUCCESS) pointer_attribute(data[i], attributes[i], ptr, nullptr, false);
  }
  return CUDA_SUCCESS;
}

// Simulated CUDA driver: virtual memory management (cuMemCreate and friends) and legacy IPC.
// A VMM allocation is one memfd, exported as a dup of that fd; a mapping is PROT_NONE to the host
// and unusable by copies until cuMemSetAccess. A legacy IPC handle names the exporter's pid, its
// device memfd and the allocation's range; the importer maps it through /proc/<pid>/fd/<n>. An IPC
// event handle names the exporter's pid and the memfd of the event's shared state, mapped the same
// way.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <new>

#include "sim_node.h"
#include "sim_state.h"

using namespace sim;

namespace {

constexpr char k_vmm_prefix[] = "/memfd:poolshim-sim-vmm-dev";
constexpr char k_arena_prefix[] = "/memfd:poolshim-sim-device";

bool granular(size_t v) { return v % k_vmm_granularity == 0; }

bool valid_device_location(const CUmemLocation& l) {
  return l.type == CU_MEM_LOCATION_TYPE_DEVICE && l.id >= 0 && l.id < get().cfg.devices;
}

// The memfd's name says what it is; used to refuse descriptors that are not simulated memory.
int memfd_device(int fd, const char* prefix) {
  char link[64], target[256];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n <= 0) return -1;
  target[n] = '\0';
  size_t plen = std::strlen(prefix);
  if (std::strncmp(target, prefix, plen) != 0) return -1;
  return std::atoi(target + plen);
}

void destroy_if_unused(const std::shared_ptr<vmm_allocation>& a) {
  if (a->handle_refs > 0 || a->mapping_refs > 0 || a->fd < 0) return;
  close(a->fd);
  a->fd = -1;
  if (a->counted) {
    get().arenas[static_cast<size_t>(a->device)].used -= a->size;
    node_release(a->device, a->size);
  }
}

CUmemGenericAllocationHandle add_handle(std::shared_ptr<vmm_allocation> a) {
  state& g = get();
  CUmemGenericAllocationHandle h = g.next_vmm_handle++;
  g.vmm_handles.emplace(h, std::move(a));
  return h;
}

// The mappings that exactly tile [base, base+size), or empty if they do not.
std::vector<region*> mappings_covering(uintptr_t base, size_t size) {
  std::vector<region*> out;
  uintptr_t at = base;
  auto& m = get().regions;
  auto it = m.find(base);
  while (at < base + size) {
    if (it == m.end() || it->first != at || it->second.kind != region_kind::vmm_mapping) return {};
    out.push_back(&it->second);
    at += it->second.size;
    ++it;
  }
  if (at != base + size) return {};
  return out;
}

struct ipc_payload {
  char magic[8];
  int32_t pid;
  int32_t fd;
  uint64_t offset;
  uint64_t size;
  uint64_t buffer_id;
  int32_t device;
  uint32_t reserved;
};
static_assert(sizeof(ipc_payload) <= sizeof(CUipcMemHandle));
constexpr char k_ipc_magic[8] = {'P', 'S', 'I', 'M', 'I', 'P', 'C', '1'};

}  // namespace

POOLSHIM_SIM_API CUresult cuMemGetAllocationGranularity(size_t* gran, const CUmemAllocationProp* prop,
                                                        CUmemAllocationGranularity_flags option) {
  if (CUresult r = api_enter("cuMemGetAllocationGranularity"); r != CUDA_SUCCESS) return r;
  if (gran == nullptr || prop == nullptr || prop->type != CU_MEM_ALLOCATION_TYPE_PINNED ||
      !valid_device_location(prop->location) ||
      (option != CU_MEM_ALLOC_GRANULARITY_MINIMUM && option != CU_MEM_ALLOC_GRANULARITY_RECOMMENDED))
    return CUDA_ERROR_INVALID_VALUE;
  *gran = k_vmm_granularity;
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuMemCreate(CUmemGenericAllocationHandle* handle, size_t size,
                                      const CUmemAllocationProp* prop, unsigned long long flags) {
  if (CUresult r = api_enter("cuMemCreate"); r != CUDA_SUCCESS) return r;
  if (handle == nullptr || prop == nullptr || flags != 0 || size == 0 || !granular(size) ||
      prop->type != CU_MEM_ALLOCATION_TYPE_PINNED)
    return CUDA_ERROR_INVALID_VALUE;
  if (!valid_device_location(prop->location)) {
    // Host-located VMM memory exists on real drivers; the simulator does not model it.
    return prop->location.type == CU_MEM_LOCATION_TYPE_DEVICE ? CUDA_ERROR_INVALID_DEVICE : CUDA_ERROR_NOT_SUPPORTED;
  }
  if ((prop->requestedHandleTypes & ~CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) != 0) return CUDA_ERROR_NOT_SUPPORTED;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  if (CUresult r = check_unsafe_call(); r != CUDA_SUCCESS) return r;
  if (!count_device_alloc()) return CUDA_ERROR_OUT_OF_MEMORY;
  arena& ar = g.arenas[static_cast<size_t>(prop->location.id)];
  if (ar.used + size > ar.size) return CUDA_ERROR_OUT_OF_MEMORY;
  if (!node_reserve(prop->location.id, size, ar.size)) return CUDA_ERROR_OUT_OF_MEMORY;  // the node is full
  char name[64];
  std::snprintf(name, sizeof name, "poolshim-sim-vmm-dev%d", prop->location.id);
  int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, static_cast<off_t>(size)) != 0) {
    if (fd >= 0) close(fd);
    node_release(prop->location.id, size);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  auto a = std::make_shared<vmm_allocation>();
  a->fd = fd;
  a->size = size;
  a->device = prop->location.id;
  a->prop = *prop;
  ar.used += size;
  *handle = add_handle(std::move(a));
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuMemRelease(CUmemGenericAllocationHandle handle) {
  if (CUresult r = api_enter("cuMemRelease"); r != CUDA_SUCCESS) return r;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  auto it = g.vmm_handles.find(handle);
  if (it == g.vmm_handles.end()) return CUDA_ERROR_INVALID_VALUE;
  auto a = it->second;
  // Allowed while mapped: the memory goes when the last mapping goes too.
  if (--a->handle_refs == 0) g.vmm_handles.erase(it);
  destroy_if_unused(a);
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuMemExportToShareableHandle(void* shareable, CUmemGenericAllocationHandle handle,
                                                       CUmemAllocationHandleType type, unsigned long long flags) {
  if (CUresult r = api_enter("cuMemExportToShareableHandle"); r != CUDA_SUCCESS) return r;
  if (shareable == nullptr || flags != 0) return CUDA_ERROR_INVALID_VALUE;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  auto it = g.vmm_handles.find(handle);
  if (it == g.vmm_handles.end()) return CUDA_ERROR_INVALID_VALUE;
  if (type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) return CUDA_ERROR_NOT_SUPPORTED;
  // Only handle types requested at cuMemCreate may be exported.
  if ((it->second->prop.requestedHandleTypes & CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) == 0)
    return CUDA_ERROR_INVALID_VALUE;
  int fd = dup(it->second->fd);  // the caller owns and closes it
  if (fd < 0) return CUDA_ERROR_OUT_OF_MEMORY;
  std::memcpy(shareable, &fd, sizeof fd);
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuMemImportFromShareableHandle(CUmemGenericAllocationHandle* handle, void* os_handle,
                                                         CUmemAllocationHandleType type) {
  if (CUresult r = api_enter("cuMemImportFromShareableHandle"); r != CUDA_SUCCESS) return r;
  if (handle == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) return CUDA_ERROR_NOT_SUPPORTED;
  // The fd is passed by value in the pointer argument (CUDA_FACTS §9); the importer keeps its own.
  int fd = static_cast<int>(reinterpret_cast<uintptr_t>(os_handle));
  int dev = memfd_device(fd, k_vmm_prefix);
  struct stat st {};
  if (dev < 0 || dev >= get().cfg.devices || fstat(fd, &st) != 0 || st.st_size <= 0) return CUDA_ERROR_INVALID_VALUE;
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return CUDA_ERROR_INVALID_VALUE;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  auto a = std::make_shared<vmm_allocation>();
  a->fd = own;
  a->size = static_cast<size_t>(st.st_size);
  a->device = dev;
  a->prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  a->prop.location = {CU_MEM_LOCATION_TYPE_DEVICE, dev};
  a->prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  a->counted = false;  // charged to the exporting process
  *handle = add_handle(std::move(a));
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp* prop,
                                                                 CUmemGenericAllocationHandle handle) {
  if (CUresult r = api_enter("cuMemGetAllocationPropertiesFromHandle"); r != CUDA_SUCCESS) return r;
  if (prop == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lk(get().mu);
  auto it = get().vmm_handles.find(handle);
  if (it == get().vmm_handles.end()) return CUDA_ERROR_INVALID_VALUE;
  *prop = it->second->prop;
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuMemAddressReserve(CUdeviceptr* ptr, size_t size, size_t alignment, CUdeviceptr addr,
                                              unsigned long long flags) {
  if (CUresult r = api_enter("cuMemAddressReserve"); r != CUDA_SUCCESS) return r;
  if (ptr == nullptr || size == 0 || size % 4096 != 0 || flags != 0 || addr % 4096 != 0 ||
      (alignment & (alignment - 1)) != 0)
    return CUDA_ERROR_INVALID_VALUE;
  size_t align = alignment < k_vmm_granularity ? k_vmm_granularity : alignment;
  // Over-reserve, then trim to the alignment; `addr` is only a hint.
  void* raw =
      mmap(reinterpret_cast<void*>(addr), size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
  auto start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = (start + align - 1) / align * align;
  if (aligned > start) munmap(raw, aligned - start);
  uintptr_t end = start + size + align;
  if (end > aligned + size) munmap(reinterpret_cast<void*>(aligned + size), end - aligned - size);
  std::lock_guard<std::mutex> lk(get().mu);
  get().reservations.emplace(aligned, reservation{aligned, size});
  *ptr = aligned;
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size) {
  if (CUresult r = api_enter("cuMemAddressFree"); r != CUDA_SUCCESS) return r;
  std::lock_guard<std::mutex> lk(get().mu);
  auto& res = get().reservations;
  auto it = res.find(ptr);
  if (it == res.end() || it->second.size != size) return CUDA_ERROR_INVALID_VALUE;
  // Stricter than documented: freeing a range that still has mappings is refused, so a caller
  // that forgets cuMemUnmap is caught here rather than leaking device memory.
  auto& m = get().regions;
  auto r = m.lower_bound(ptr);
  if (r != m.end() && r->first < ptr + size) return CUDA_ERROR_INVALID_VALUE;
  munmap(reinterpret_cast<void*>(ptr), size);
  res.erase(it);
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                                   unsigned long long flags) {
  if (CUresult r = api_enter("cuMemMap"); r != CUDA_SUCCESS) return r;
  if (flags != 0 || offset != 0 || size == 0 || !granular(size) || !granular(ptr)) return CUDA_ERROR_INVALID_VALUE;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  auto h = g.vmm_handles.find(handle);
  if (h == g.vmm_handles.end()) return CUDA_ERROR_INVALID_VALUE;
  auto a = h->second;
  if (size > a->size) return CUDA_ERROR_INVALID_VALUE;
  auto res = g.reservations.upper_bound(ptr);
  if (res == g.reservations.begin()) return CUDA_ERROR_INVALID_VALUE;
  --res;
  if (ptr + size > res->second.base + res->second.size) return CUDA_ERROR_INVALID_VALUE;
  auto next = g.regions.lower_bound(ptr);
  if (find_region(ptr) != nullptr || (next != g.regions.end() && next->first < ptr + size))
    return CUDA_ERROR_INVALID_VALUE;  // part of the range is already mapped
  void* dv = mmap(reinterpret_cast<void*>(ptr), size, PROT_NONE, MAP_SHARED | MAP_FIXED, a->fd, 0);
  void* sv = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, a->fd, 0);
  if (dv == MAP_FAILED || sv == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
  region reg;
  reg.kind = region_kind::vmm_mapping;
  reg.base = ptr;
  reg.size = size;
  reg.shadow = static_cast<uint8_t*>(sv);
  reg.device = a->device;
  reg.buffer_id = g.next_buffer_id++;
  reg.vmm = a;
  ++a->mapping_refs;
  g.regions.emplace(ptr, std::move(reg));
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuMemUnmap(CUdeviceptr ptr, size_t size) {
  if (CUresult r = api_enter("cuMemUnmap"); r != CUDA_SUCCESS) return r;
  state& g = get();
  std::unique_lock<std::mutex> lk(g.mu);
  std::vector<region*> maps = mappings_covering(ptr, size);
  if (maps.empty()) return CUDA_ERROR_INVALID_VALUE;  // only whole mappings can be unmapped
  // Work already queued may still copy through the shadow views; let it finish first so the
  // simulator itself never touches an unmapped page.
  sync_all_locked(lk);
  maps = mappings_covering(ptr, size);
  if (maps.empty()) return CUDA_ERROR_INVALID_VALUE;
  for (region* r : maps) {
    munmap(r->shadow, r->size);
    mmap(reinterpret_cast<void*>(r->base), r->size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
         -1, 0);
    auto a = r->vmm;
    --a->mapping_refs;
    g.regions.erase(r->base);
    destroy_if_unused(a);
  }
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc* desc, size_t count) {
  if (CUresult r = api_enter("cuMemSetAccess"); r != CUDA_SUCCESS) return r;
  if (desc == nullptr || count == 0) return CUDA_ERROR_INVALID_VALUE;
  for (size_t i = 0; i < count; ++i) {
    if (!valid_device_location(desc[i].location)) return CUDA_ERROR_INVALID_DEVICE;
    auto f = desc[i].flags;
    if (f != CU_MEM_ACCESS_FLAGS_PROT_NONE && f != CU_MEM_ACCESS_FLAGS_PROT_READ &&
        f != CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
      return CUDA_ERROR_INVALID_VALUE;
  }
  std::lock_guard<std::mutex> lk(get().mu);
  // The whole range must be mapped; it may span several mappings.
  std::vector<region*> maps = mappings_covering(ptr, size);
  if (maps.empty()) {
    // Also allowed: a sub-range of one mapping is not; CUDA requires whole mappings here too.
    return CUDA_ERROR_INVALID_VALUE;
  }
  for (region* r : maps) {
    for (size_t i = 0; i < count; ++i) {
      unsigned bit = 1u << desc[i].location.id;
      r->access_mask &= ~bit;
      r->access_rw_mask &= ~bit;
      if (desc[i].flags != CU_MEM_ACCESS_FLAGS_PROT_NONE) r->access_mask |= bit;
      if (desc[i].flags == CU_MEM_ACCESS_FLAGS_PROT_READWRITE) r->access_rw_mask |= bit;
    }
  }
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuMemGetAccess(unsigned long long* flags, const CUmemLocation* location, CUdeviceptr ptr) {
  if (CUresult r = api_enter("cuMemGetAccess"); r != CUDA_SUCCESS) return r;
  if (flags == nullptr || location == nullptr || !valid_device_location(*location)) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lk(get().mu);
  region* r = find_region(ptr);
  if (r == nullptr || r->kind != region_kind::vmm_mapping) return CUDA_ERROR_INVALID_VALUE;
  unsigned bit = 1u << location->id;
  *flags = (r->access_rw_mask & bit) ? CU_MEM_ACCESS_FLAGS_PROT_READWRITE
           : (r->access_mask & bit)  ? CU_MEM_ACCESS_FLAGS_PROT_READ
                                     : CU_MEM_ACCESS_FLAGS_PROT_NONE;
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle* handle, void* addr) {
  if (CUresult r = api_enter("cuMemRetainAllocationHandle"); r != CUDA_SUCCESS) return r;
  if (handle == nullptr) return CUDA_ERROR_INVALID_VALUE;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  region* r = find_region(reinterpret_cast<uintptr_t>(addr));
  if (r == nullptr || r->kind != region_kind::vmm_mapping) return CUDA_ERROR_INVALID_VALUE;
  for (auto& [h, a] : g.vmm_handles) {
    if (a == r->vmm) {
      ++a->handle_refs;
      *handle = h;
      return CUDA_SUCCESS;
    }
  }
  // Every handle was released while the mapping lives on: a new handle names it again.
  r->vmm->handle_refs = 1;
  *handle = add_handle(r->vmm);
  return CUDA_SUCCESS;
}

// --- legacy IPC -------------------------------------------------------------------------------

POOLSHIM_SIM_API CUresult cuIpcGetMemHandle(CUipcMemHandle* handle, CUdeviceptr dptr) {
  if (CUresult r = api_enter("cuIpcGetMemHandle"); r != CUDA_SUCCESS) return r;
  if (handle == nullptr) return CUDA_ERROR_INVALID_VALUE;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  CUcontext c = nullptr;
  if (CUresult r = require_ctx(&c); r != CUDA_SUCCESS) return r;
  region* r = find_region(dptr);
  // Only cuMemAlloc memory has legacy IPC: not VMM, pool, managed or host memory.
  if (r == nullptr || r->kind != region_kind::device) return CUDA_ERROR_INVALID_VALUE;
  // Under ulimit -f the simulator's arena has no fd to share (sim_memory.cpp): a limit of the
  // simulator, not of CUDA.
  if (g.arenas[static_cast<size_t>(r->device)].fd < 0) return CUDA_ERROR_NOT_SUPPORTED;
  // An interior pointer names its allocation: the handle is the base's (CUDA_FACTS §8, UNV).
  ipc_payload p{};
  std::memcpy(p.magic, k_ipc_magic, sizeof p.magic);
  p.pid = getpid();
  p.fd = g.arenas[static_cast<size_t>(r->device)].fd;
  p.offset = r->arena_offset;
  p.size = r->size;
  p.buffer_id = r->buffer_id;
  p.device = r->device;
  std::memset(handle, 0, sizeof *handle);
  std::memcpy(handle->reserved, &p, sizeof p);
  return CUDA_SUCCESS;
}

namespace {
CUresult ipc_open(const char* name, CUdeviceptr* pdptr, const CUipcMemHandle& handle, unsigned int flags) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (pdptr == nullptr || (flags & ~static_cast<unsigned>(CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS)) != 0)
    return CUDA_ERROR_INVALID_VALUE;
  ipc_payload p{};
  std::memcpy(&p, handle.reserved, sizeof p);
  if (std::memcmp(p.magic, k_ipc_magic, sizeof p.magic) != 0 || p.size == 0) return CUDA_ERROR_INVALID_VALUE;
  // Real CUDA refuses to open a handle in the process that exported it (CUDA_FACTS §8).
  if (p.pid == getpid()) return CUDA_ERROR_INVALID_CONTEXT;
  state& g = get();
  std::unique_lock<std::mutex> lk(g.mu);
  CUcontext c = nullptr;
  if (CUresult r = require_ctx(&c); r != CUDA_SUCCESS) return r;
  uint64_t key = (static_cast<uint64_t>(p.pid) << 40) ^ p.buffer_id;
  for (auto& [base, r] : g.regions) {
    if (r.kind == region_kind::ipc_import && r.ipc_key == key && r.ctx == c) {
      ++r.ipc_refs;  // reopening adds a reference and returns the same pointer
      *pdptr = base;
      return CUDA_SUCCESS;
    }
  }
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/fd/%d", p.pid, p.fd);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  // The exporter is gone (or the descriptor is not simulated device memory): the mapping fails.
  if (fd < 0) return CUDA_ERROR_MAP_FAILED;
  if (memfd_device(fd, k_arena_prefix) != p.device) {
    close(fd);
    return CUDA_ERROR_MAP_FAILED;
  }
  size_t page_off = p.offset / 4096 * 4096;
  size_t delta = p.offset - page_off;
  size_t len = (delta + p.size + 4095) / 4096 * 4096;
  void* dv = mmap(nullptr, len, PROT_NONE, MAP_SHARED, fd, static_cast<off_t>(page_off));
  void* sv = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(page_off));
  close(fd);
  if (dv == MAP_FAILED || sv == MAP_FAILED) return CUDA_ERROR_MAP_FAILED;
  region reg;
  reg.kind = region_kind::ipc_import;
  reg.base = reinterpret_cast<uintptr_t>(dv) + delta;
  reg.size = p.size;
  reg.shadow = static_cast<uint8_t*>(sv) + delta;
  reg.device = p.device;
  reg.ctx = c;
  reg.buffer_id = g.next_buffer_id++;
  reg.ipc_refs = 1;
  reg.ipc_key = key;
  reg.map_base = dv;
  reg.map_len = len;
  *pdptr = reg.base;
  g.regions.emplace(reg.base, std::move(reg));
  return CUDA_SUCCESS;
}
}  // namespace

POOLSHIM_SIM_API CUresult cuIpcOpenMemHandle_v2(CUdeviceptr* pdptr, CUipcMemHandle handle, unsigned int flags) {
  return ipc_open("cuIpcOpenMemHandle_v2", pdptr, handle, flags);
}
// v4010: same ABI, behaves as v2 (UNV).
POOLSHIM_SIM_API CUresult cuIpcOpenMemHandle(CUdeviceptr* pdptr, CUipcMemHandle handle, unsigned int flags) {
  return ipc_open("cuIpcOpenMemHandle", pdptr, handle, flags);
}

POOLSHIM_SIM_API CUresult cuIpcCloseMemHandle(CUdeviceptr dptr) {
  if (CUresult r = api_enter("cuIpcCloseMemHandle"); r != CUDA_SUCCESS) return r;
  state& g = get();
  std::unique_lock<std::mutex> lk(g.mu);
  region* r = find_region_base(dptr);
  if (r == nullptr || r->kind != region_kind::ipc_import) return CUDA_ERROR_INVALID_VALUE;
  if (--r->ipc_refs > 0) return CUDA_SUCCESS;
  sync_all_locked(lk);  // queued copies may still read through the shadow view
  r = find_region_base(dptr);
  if (r == nullptr) return CUDA_ERROR_INVALID_VALUE;
  size_t delta = r->base - reinterpret_cast<uintptr_t>(r->map_base);
  munmap(r->map_base, r->map_len);
  munmap(r->shadow - delta, r->map_len);
  g.regions.erase(dptr);
  return CUDA_SUCCESS;
}

// --- IPC events ---------------------------------------------------------------------------------

namespace {
constexpr char k_event_prefix[] = "/memfd:poolshim-sim-event";
constexpr char k_event_magic[8] = {'P', 'S', 'I', 'M', 'E', 'V', 'T', '1'};
struct ipc_event_payload {
  char magic[8];
  int32_t pid;
  int32_t fd;
};
static_assert(sizeof(ipc_event_payload) <= sizeof(CUipcEventHandle));

bool is_event_memfd(int fd) {
  char link[64], target[256];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n <= 0) return false;
  target[n] = '\0';
  return std::strncmp(target, k_event_prefix, sizeof k_event_prefix - 1) == 0;
}
}  // namespace

namespace sim {
ipc_event_state* create_ipc_event_state(int* fd) {
  *fd = memfd_create(k_event_prefix + std::strlen("/memfd:"), MFD_CLOEXEC);
  if (*fd < 0) return nullptr;
  void* p = MAP_FAILED;
  if (ftruncate(*fd, 4096) == 0) p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
  if (p == MAP_FAILED) {
    close(*fd);
    *fd = -1;
    return nullptr;
  }
  auto* st = new (p) ipc_event_state{};
  std::memcpy(st->magic, k_event_magic, sizeof st->magic);
  return st;
}
}  // namespace sim

POOLSHIM_SIM_API CUresult cuIpcGetEventHandle(CUipcEventHandle* handle, CUevent e) {
  if (CUresult r = api_enter("cuIpcGetEventHandle"); r != CUDA_SUCCESS) return r;
  if (handle == nullptr) return CUDA_ERROR_INVALID_VALUE;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  if (e == nullptr || g.events.count(e) == 0 || e->destroyed) return CUDA_ERROR_INVALID_HANDLE;
  // Only an event created with CU_EVENT_INTERPROCESS (and so DISABLE_TIMING) has a handle (UNV: the
  // code real CUDA gives for another event).
  if (e->ipc == nullptr || e->ipc_fd < 0) return CUDA_ERROR_INVALID_VALUE;
  ipc_event_payload p{};
  std::memcpy(p.magic, k_event_magic, sizeof p.magic);
  p.pid = getpid();
  p.fd = e->ipc_fd;
  std::memset(handle, 0, sizeof *handle);
  std::memcpy(handle->reserved, &p, sizeof p);
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuIpcOpenEventHandle(CUevent* ph, CUipcEventHandle handle) {
  if (CUresult r = api_enter("cuIpcOpenEventHandle"); r != CUDA_SUCCESS) return r;
  if (ph == nullptr) return CUDA_ERROR_INVALID_VALUE;
  ipc_event_payload p{};
  std::memcpy(&p, handle.reserved, sizeof p);
  if (std::memcmp(p.magic, k_event_magic, sizeof p.magic) != 0) return CUDA_ERROR_INVALID_VALUE;
  // As for memory handles: not in the process that exported it (UNV for events).
  if (p.pid == getpid()) return CUDA_ERROR_INVALID_CONTEXT;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  CUcontext c = nullptr;
  if (CUresult r = require_ctx(&c); r != CUDA_SUCCESS) return r;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/fd/%d", p.pid, p.fd);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return CUDA_ERROR_MAP_FAILED;  // the exporter is gone
  void* m = is_event_memfd(fd) ? mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
  close(fd);
  if (m == MAP_FAILED) return CUDA_ERROR_MAP_FAILED;
  auto* st = static_cast<ipc_event_state*>(m);
  if (std::memcmp(st->magic, k_event_magic, sizeof st->magic) != 0) {
    munmap(m, 4096);
    return CUDA_ERROR_MAP_FAILED;
  }
  auto* e = new CUevent_st();
  e->ctx = c;
  e->flags = CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS;
  e->ipc = st;
  g.events.insert(e);
  *ph = e;
  return CUDA_SUCCESS;
}

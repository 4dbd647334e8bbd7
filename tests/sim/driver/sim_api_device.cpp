// Simulated CUDA driver: initialisation, devices, contexts (primary and created), peer access.
// A primary context stays the same handle for the life of the process: a reset or the last
// release frees its memory, streams and events, and the next use finds it fresh, which is what
// cudart's "the next call reinitialises" after cudaDeviceReset relies on.
#include <cstdio>
#include <cstring>

#include "sim_state.h"

using namespace sim;

namespace {

CUresult check_device(CUdevice dev) {
  return dev >= 0 && dev < get().cfg.devices ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

CUcontext make_context(int device, bool primary, unsigned flags) {
  state& g = get();
  auto* c = new CUctx_st();
  c->device = device;
  c->primary = primary;
  c->flags = flags;
  c->id = g.next_ctx_id++;
  g.contexts.insert(c);
  c->legacy = new_stream(c, stream_role::legacy, 0, 0);
  return c;
}

// Frees everything the context owns; the caller decides whether the handle lives on.
void teardown_context(std::unique_lock<std::mutex>& lk, CUcontext c) {
  state& g = get();
  sync_context_locked(lk, c);
  free_all_of_context(c);
  std::vector<CUstream> owned;
  for (CUstream s : g.streams)
    if (s->ctx == c) owned.push_back(s);
  for (CUstream s : owned) retire_stream(s);
  for (auto it = g.events.begin(); it != g.events.end();) {
    if ((*it)->ctx == c) {
      (*it)->destroyed = true;
      g.graveyard.push_back(*it);
      it = g.events.erase(it);
    } else {
      ++it;
    }
  }
  c->peers_enabled.clear();
}

int attribute_value(CUdevice_attribute a, int dev) {
  switch (a) {
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR:
      return 9;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR:
      return 0;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT:
      return 132;
    case CU_DEVICE_ATTRIBUTE_WARP_SIZE:
      return 32;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK:
      return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X:
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y:
      return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z:
      return 64;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X:
      return 2147483647;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y:
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z:
      return 65535;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK:
      return 49152;
    case CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY:
      return 65536;
    case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK:
      return 65536;
    case CU_DEVICE_ATTRIBUTE_CLOCK_RATE:
      return 1980000;
    case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE:
      return 2619000;
    case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH:
      return 5120;
    case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE:
      return 50 << 20;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR:
      return 2048;
    case CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT:
      return 512;
    case CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT:
      return 32;
    case CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT:
      return 3;
    case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID:
      return dev + 1;
    case CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID:
    case CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID:
      return 0;
    case CU_DEVICE_ATTRIBUTE_INTEGRATED:
    case CU_DEVICE_ATTRIBUTE_TCC_DRIVER:
      return 0;
    case CU_DEVICE_ATTRIBUTE_KERNEL_EXEC_TIMEOUT:
      return 0;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_MODE:
      return CU_COMPUTEMODE_DEFAULT;
    case CU_DEVICE_ATTRIBUTE_ECC_ENABLED:
      return 1;
    case CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY:
    case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING:
    case CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY:
    case CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS:
    case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS:
    case CU_DEVICE_ATTRIBUTE_STREAM_PRIORITIES_SUPPORTED:
    case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED:
    case CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED:
    case CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED:
    case CU_DEVICE_ATTRIBUTE_CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM:
    case CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED:
    case CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED:
    case CU_DEVICE_ATTRIBUTE_CAN_USE_64_BIT_STREAM_MEM_OPS:
    case CU_DEVICE_ATTRIBUTE_CAN_USE_STREAM_WAIT_VALUE_NOR:
    case CU_DEVICE_ATTRIBUTE_IPC_EVENT_SUPPORTED:
      return 1;
    // Not simulated: RDMA, fabric handles, compression, pageable access, MPS-only features.
    default:
      return 0;
  }
}

}  // namespace

POOLSHIM_SIM_API CUresult cuInit(unsigned int flags) {
  if (CUresult r = api_enter("cuInit", false); r != CUDA_SUCCESS) return r;
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  if (g.initialized) return CUDA_SUCCESS;
  if (CUresult r = init_arenas(); r != CUDA_SUCCESS) return r;
  g.primary.assign(static_cast<size_t>(g.cfg.devices), nullptr);
  g.primary_refs.assign(static_cast<size_t>(g.cfg.devices), 0);
  g.initialized = true;
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuDriverGetVersion(int* version) {
  if (CUresult r = api_enter("cuDriverGetVersion", false); r != CUDA_SUCCESS) return r;
  if (version == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *version = k_driver_version;
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuDeviceGetCount(int* count) {
  if (CUresult r = api_enter("cuDeviceGetCount"); r != CUDA_SUCCESS) return r;
  if (count == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *count = get().cfg.devices;
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuDeviceGet(CUdevice* device, int ordinal) {
  if (CUresult r = api_enter("cuDeviceGet"); r != CUDA_SUCCESS) return r;
  if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = check_device(ordinal); r != CUDA_SUCCESS) return r;
  *device = ordinal;
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuDeviceGetName(char* name, int len, CUdevice dev) {
  if (CUresult r = api_enter("cuDeviceGetName"); r != CUDA_SUCCESS) return r;
  if (name == nullptr || len <= 0) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = check_device(dev); r != CUDA_SUCCESS) return r;
  std::snprintf(name, static_cast<size_t>(len), "poolshim simulated device %d", dev);
  return CUDA_SUCCESS;
}

namespace {
CUresult device_get_uuid(const char* name, CUuuid* uuid, CUdevice dev) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (uuid == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = check_device(dev); r != CUDA_SUCCESS) return r;
  // Stable across processes, like a real GPU's UUID: "poolshim-sim" + the ordinal.
  std::memset(uuid->bytes, 0, sizeof uuid->bytes);
  std::memcpy(uuid->bytes, "poolshim-sim", 12);
  uuid->bytes[15] = static_cast<char>(dev);
  return CUDA_SUCCESS;
}

}  // namespace

// v9020 and v11040 have the same ABI (v2 also reports MIG instances, which are not simulated).
POOLSHIM_SIM_API CUresult cuDeviceGetUuid(CUuuid* uuid, CUdevice dev) {
  return device_get_uuid("cuDeviceGetUuid", uuid, dev);
}
POOLSHIM_SIM_API CUresult cuDeviceGetUuid_v2(CUuuid* uuid, CUdevice dev) {
  return device_get_uuid("cuDeviceGetUuid_v2", uuid, dev);
}

POOLSHIM_SIM_API CUresult cuDeviceGetPCIBusId(char* bus_id, int len, CUdevice dev) {
  if (CUresult r = api_enter("cuDeviceGetPCIBusId"); r != CUDA_SUCCESS) return r;
  if (bus_id == nullptr || len <= 0) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = check_device(dev); r != CUDA_SUCCESS) return r;
  std::snprintf(bus_id, static_cast<size_t>(len), "00000000:%02X:00.0", dev + 1);
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice dev) {
  if (CUresult r = api_enter("cuDeviceTotalMem_v2"); r != CUDA_SUCCESS) return r;
  if (bytes == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = check_device(dev); r != CUDA_SUCCESS) return r;
  *bytes = get().cfg.device_memory;
  return CUDA_SUCCESS;
}

// v2000, 32-bit size: clamped to UINT_MAX (BOINC #1773 saw at most 4 GiB) -- UNV.
POOLSHIM_SIM_API CUresult cuDeviceTotalMem(unsigned int* bytes, CUdevice dev) {
  if (CUresult r = api_enter("cuDeviceTotalMem"); r != CUDA_SUCCESS) return r;
  if (bytes == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = check_device(dev); r != CUDA_SUCCESS) return r;
  *bytes = clamp_u32(get().cfg.device_memory);
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuDeviceGetAttribute(int* value, CUdevice_attribute attrib, CUdevice dev) {
  if (CUresult r = api_enter("cuDeviceGetAttribute"); r != CUDA_SUCCESS) return r;
  if (value == nullptr || attrib <= 0 || attrib >= CU_DEVICE_ATTRIBUTE_MAX) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = check_device(dev); r != CUDA_SUCCESS) return r;
  *value = attribute_value(attrib, dev);
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuDeviceCanAccessPeer(int* can, CUdevice dev, CUdevice peer) {
  if (CUresult r = api_enter("cuDeviceCanAccessPeer"); r != CUDA_SUCCESS) return r;
  if (can == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (check_device(dev) != CUDA_SUCCESS || check_device(peer) != CUDA_SUCCESS) return CUDA_ERROR_INVALID_DEVICE;
  *can = dev != peer ? 1 : 0;  // a device is not its own peer
  return CUDA_SUCCESS;
}

// --- primary contexts -----------------------------------------------------------------------

POOLSHIM_SIM_API CUresult cuDevicePrimaryCtxRetain(CUcontext* pctx, CUdevice dev) {
  if (CUresult r = api_enter("cuDevicePrimaryCtxRetain"); r != CUDA_SUCCESS) return r;
  if (pctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = check_device(dev); r != CUDA_SUCCESS) return r;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  auto d = static_cast<size_t>(dev);
  if (g.primary[d] == nullptr) g.primary[d] = make_context(dev, true, 0);
  if (g.primary[d]->legacy->destroyed) g.primary[d]->legacy = new_stream(g.primary[d], stream_role::legacy, 0, 0);
  ++g.primary_refs[d];
  *pctx = g.primary[d];
  return CUDA_SUCCESS;
}

namespace {
CUresult reset_primary(CUdevice dev, bool release_one) {
  state& g = get();
  std::unique_lock<std::mutex> lk(g.mu);
  auto d = static_cast<size_t>(dev);
  CUcontext c = g.primary[d];
  // A reset frees the context's state but does not release it: the retain count stays.
  if (release_one) {
    if (c == nullptr || g.primary_refs[d] == 0) return CUDA_ERROR_INVALID_CONTEXT;
    if (--g.primary_refs[d] > 0) return CUDA_SUCCESS;
  }
  if (c == nullptr) return CUDA_SUCCESS;
  teardown_context(lk, c);
  c->legacy = new_stream(c, stream_role::legacy, 0, 0);
  return CUDA_SUCCESS;
}
}  // namespace

namespace {
CUresult primary_release(const char* name, CUdevice dev) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (CUresult r = check_device(dev); r != CUDA_SUCCESS) return r;
  return reset_primary(dev, true);
}
CUresult primary_reset(const char* name, CUdevice dev) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (CUresult r = check_device(dev); r != CUDA_SUCCESS) return r;
  return reset_primary(dev, false);
}
}  // namespace

// The v7000 variants (cuDevicePrimaryCtxRelease/Reset/SetFlags) have the v11000 ABI and behave
// as the v2 ones here -- UNV (what v2 changed is not documented; cudart 13.0 still releases its
// primary contexts through cuDevicePrimaryCtxRelease@7000 at exit).
POOLSHIM_SIM_API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
  return primary_release("cuDevicePrimaryCtxRelease_v2", dev);
}
POOLSHIM_SIM_API CUresult cuDevicePrimaryCtxRelease(CUdevice dev) {
  return primary_release("cuDevicePrimaryCtxRelease", dev);
}

POOLSHIM_SIM_API CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev) {
  return primary_reset("cuDevicePrimaryCtxReset_v2", dev);
}
POOLSHIM_SIM_API CUresult cuDevicePrimaryCtxReset(CUdevice dev) {
  return primary_reset("cuDevicePrimaryCtxReset", dev);
}

POOLSHIM_SIM_API CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int* flags, int* active) {
  if (CUresult r = api_enter("cuDevicePrimaryCtxGetState"); r != CUDA_SUCCESS) return r;
  if (flags == nullptr || active == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = check_device(dev); r != CUDA_SUCCESS) return r;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  auto d = static_cast<size_t>(dev);
  *active = g.primary_refs[d] > 0 ? 1 : 0;
  *flags = g.primary[d] ? g.primary[d]->flags : 0;
  return CUDA_SUCCESS;
}

namespace {
CUresult primary_set_flags(const char* name, CUdevice dev, unsigned int flags) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (CUresult r = check_device(dev); r != CUDA_SUCCESS) return r;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  auto d = static_cast<size_t>(dev);
  if (g.primary[d] == nullptr) g.primary[d] = make_context(dev, true, flags);
  g.primary[d]->flags = flags;
  return CUDA_SUCCESS;
}
}  // namespace

POOLSHIM_SIM_API CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags) {
  return primary_set_flags("cuDevicePrimaryCtxSetFlags_v2", dev, flags);
}
POOLSHIM_SIM_API CUresult cuDevicePrimaryCtxSetFlags(CUdevice dev, unsigned int flags) {
  return primary_set_flags("cuDevicePrimaryCtxSetFlags", dev, flags);
}

// --- created contexts and the per-thread stack ------------------------------------------------

namespace {
CUresult ctx_create(const char* name, CUcontext* pctx, unsigned int flags, CUdevice dev) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (pctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = check_device(dev); r != CUDA_SUCCESS) return r;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  *pctx = make_context(dev, false, flags);
  this_thread().ctx_stack.push_back(*pctx);
  return CUDA_SUCCESS;
}

}  // namespace

POOLSHIM_SIM_API CUresult cuCtxCreate_v4(CUcontext* pctx, CUctxCreateParams* /*params*/, unsigned int flags,
                                         CUdevice dev) {
  return ctx_create("cuCtxCreate_v4", pctx, flags, dev);
}
// v11040: execution-affinity parameters, ignored (green contexts/MPS are not simulated).
POOLSHIM_SIM_API CUresult cuCtxCreate_v3(CUcontext* pctx, CUexecAffinityParam* /*params*/, int /*num*/,
                                         unsigned int flags, CUdevice dev) {
  return ctx_create("cuCtxCreate_v3", pctx, flags, dev);
}
// The pre-12.5 ABI (flags, device), still what an old program's cudaVersion selects.
POOLSHIM_SIM_API CUresult cuCtxCreate_v2(CUcontext* pctx, unsigned int flags, CUdevice dev) {
  return ctx_create("cuCtxCreate_v2", pctx, flags, dev);
}
// v2000: same arguments as v2 (the 32-bit era's context; nothing in it is 32-bit) -- UNV.
POOLSHIM_SIM_API CUresult cuCtxCreate(CUcontext* pctx, unsigned int flags, CUdevice dev) {
  return ctx_create("cuCtxCreate", pctx, flags, dev);
}

namespace {
CUresult ctx_destroy(const char* name, CUcontext ctx) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  state& g = get();
  std::unique_lock<std::mutex> lk(g.mu);
  if (!ctx_alive(ctx) || ctx->primary) return CUDA_ERROR_INVALID_CONTEXT;
  teardown_context(lk, ctx);
  ctx->alive = false;
  g.contexts.erase(ctx);
  g.graveyard.push_back(ctx);
  auto& st = this_thread().ctx_stack;
  if (!st.empty() && st.back() == ctx) st.pop_back();
  return CUDA_SUCCESS;
}
}  // namespace

// cuCtxDestroy, cuCtxPushCurrent, cuCtxPopCurrent v2000 behave as their v4000 (_v2) ABI -- UNV.
POOLSHIM_SIM_API CUresult cuCtxDestroy_v2(CUcontext ctx) { return ctx_destroy("cuCtxDestroy_v2", ctx); }
POOLSHIM_SIM_API CUresult cuCtxDestroy(CUcontext ctx) { return ctx_destroy("cuCtxDestroy", ctx); }

POOLSHIM_SIM_API CUresult cuCtxGetCurrent(CUcontext* pctx) {
  if (CUresult r = api_enter("cuCtxGetCurrent"); r != CUDA_SUCCESS) return r;
  if (pctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *pctx = current_ctx();
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuCtxSetCurrent(CUcontext ctx) {
  if (CUresult r = api_enter("cuCtxSetCurrent"); r != CUDA_SUCCESS) return r;
  auto& st = this_thread().ctx_stack;
  if (ctx == nullptr) {
    if (!st.empty()) st.pop_back();
    return CUDA_SUCCESS;
  }
  {
    std::lock_guard<std::mutex> lk(get().mu);
    if (!ctx_alive(ctx)) return CUDA_ERROR_INVALID_CONTEXT;
  }
  if (st.empty())
    st.push_back(ctx);
  else
    st.back() = ctx;
  return CUDA_SUCCESS;
}

namespace {
CUresult ctx_push(const char* name, CUcontext ctx) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  {
    std::lock_guard<std::mutex> lk(get().mu);
    if (!ctx_alive(ctx)) return CUDA_ERROR_INVALID_CONTEXT;
  }
  this_thread().ctx_stack.push_back(ctx);
  return CUDA_SUCCESS;
}

CUresult ctx_pop(const char* name, CUcontext* pctx) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  auto& st = this_thread().ctx_stack;
  if (st.empty()) return CUDA_ERROR_INVALID_CONTEXT;
  if (pctx != nullptr) *pctx = st.back();
  st.pop_back();
  return CUDA_SUCCESS;
}
}  // namespace

POOLSHIM_SIM_API CUresult cuCtxPushCurrent_v2(CUcontext ctx) { return ctx_push("cuCtxPushCurrent_v2", ctx); }
POOLSHIM_SIM_API CUresult cuCtxPushCurrent(CUcontext ctx) { return ctx_push("cuCtxPushCurrent", ctx); }
POOLSHIM_SIM_API CUresult cuCtxPopCurrent_v2(CUcontext* pctx) { return ctx_pop("cuCtxPopCurrent_v2", pctx); }
POOLSHIM_SIM_API CUresult cuCtxPopCurrent(CUcontext* pctx) { return ctx_pop("cuCtxPopCurrent", pctx); }

// CUDA 13 ABI: the context is an argument; NULL means the current one.
namespace {
CUresult ctx_get_device(const char* name, CUdevice* device, CUcontext ctx) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lk(get().mu);
  if (ctx == nullptr) {
    if (CUresult r = require_ctx(&ctx); r != CUDA_SUCCESS) return r;
  } else if (!ctx_alive(ctx)) {
    return CUDA_ERROR_INVALID_CONTEXT;
  }
  *device = ctx->device;
  return CUDA_SUCCESS;
}

}  // namespace

POOLSHIM_SIM_API CUresult cuCtxGetDevice_v2(CUdevice* device, CUcontext ctx) {
  return ctx_get_device("cuCtxGetDevice_v2", device, ctx);
}
POOLSHIM_SIM_API CUresult cuCtxGetDevice(CUdevice* device) { return ctx_get_device("cuCtxGetDevice", device, nullptr); }

POOLSHIM_SIM_API CUresult cuCtxGetId(CUcontext ctx, unsigned long long* id) {
  if (CUresult r = api_enter("cuCtxGetId"); r != CUDA_SUCCESS) return r;
  if (id == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lk(get().mu);
  if (ctx == nullptr && require_ctx(&ctx) != CUDA_SUCCESS) return CUDA_ERROR_INVALID_CONTEXT;
  if (!ctx_alive(ctx)) return CUDA_ERROR_INVALID_CONTEXT;
  *id = ctx->id;
  return CUDA_SUCCESS;
}

namespace {
CUresult ctx_synchronize(const char* name, CUcontext ctx) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  state& g = get();
  std::unique_lock<std::mutex> lk(g.mu);
  if (ctx == nullptr) {
    if (CUresult r = require_ctx(&ctx); r != CUDA_SUCCESS) return r;
  } else if (!ctx_alive(ctx)) {
    return CUDA_ERROR_INVALID_CONTEXT;
  }
  if (CUresult r = check_unsafe_call(); r != CUDA_SUCCESS) return r;
  sync_context_locked(lk, ctx);
  return sticky_or(CUDA_SUCCESS);
}

}  // namespace

POOLSHIM_SIM_API CUresult cuCtxSynchronize_v2(CUcontext ctx) { return ctx_synchronize("cuCtxSynchronize_v2", ctx); }
POOLSHIM_SIM_API CUresult cuCtxSynchronize() { return ctx_synchronize("cuCtxSynchronize", nullptr); }

POOLSHIM_SIM_API CUresult cuCtxEnablePeerAccess(CUcontext peer, unsigned int flags) {
  if (CUresult r = api_enter("cuCtxEnablePeerAccess"); r != CUDA_SUCCESS) return r;
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lk(get().mu);
  CUcontext c = nullptr;
  if (CUresult r = require_ctx(&c); r != CUDA_SUCCESS) return r;
  if (!ctx_alive(peer)) return CUDA_ERROR_INVALID_CONTEXT;
  if (peer->device == c->device) return CUDA_ERROR_INVALID_DEVICE;
  if (!c->peers_enabled.insert(peer->device).second) return CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED;
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuCtxDisablePeerAccess(CUcontext peer) {
  if (CUresult r = api_enter("cuCtxDisablePeerAccess"); r != CUDA_SUCCESS) return r;
  std::lock_guard<std::mutex> lk(get().mu);
  CUcontext c = nullptr;
  if (CUresult r = require_ctx(&c); r != CUDA_SUCCESS) return r;
  if (!ctx_alive(peer)) return CUDA_ERROR_INVALID_CONTEXT;
  if (c->peers_enabled.erase(peer->device) == 0) return CUDA_ERROR_PEER_ACCESS_NOT_ENABLED;
  return CUDA_SUCCESS;
}

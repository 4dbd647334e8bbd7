// What each driver hook does (driver_hooks.h): count the call, let the routers serve what is the
// pools' business in POOLSHIM_MODE=pool (route/), forward everything else to the real driver,
// count what succeeded and record it for the call-site statistics (stats/). POOLSHIM_MODE=off
// forwards without counting. Warnings are said once per process (log.h), never on the hit path.
#include "dispatch/driver_hooks.h"

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "base/log.h"
#include "base/process.h"
#include "base/real_driver.h"
#include "dispatch/summary.h"
#include "intercept/counters.h"
#include "route/capture_state.h"
#include "route/device_router.h"
#include "route/fence_tracker.h"
#include "route/host_router.h"
#include "route/ipc_router.h"
#include "stats/recorder.h"

namespace poolshim::driver_hooks {

using base::tracking;
using intercept::bump;
using intercept::count_call;
using intercept::g_counters;
using intercept::hook_id;

namespace {
constexpr bool ok(CUresult r) noexcept { return r == CUDA_SUCCESS; }

// Call-site statistics (POOLSHIM_STATS=native): the allocation once it succeeded, with the current
// device; a free before the real free, so that the address cannot be another thread's allocation
// by the time it is recorded.
// The pools' hit figures reach the file after each of a thread's first 16 allocations, then every
// 256 (and at exit): a short program that is killed, or one read while it runs, shows them too.
[[gnu::tls_model("initial-exec")]] thread_local unsigned tl_until_pool_figures = 0;
[[gnu::tls_model("initial-exec")]] thread_local unsigned tl_pool_figures_sent = 0;
// `device`: the pool's, when it served the allocation (else asked of the driver). `stream`: a
// stream-ordered allocation's (the memory_viz snapshot shows it).
void note_alloc(stats::kind k, std::uint64_t ptr, std::size_t bytes, int device = -1,
                CUstream stream = nullptr) noexcept {
  if (!stats::recording()) return;
  CUdevice dev = device;
  if (dev < 0 && real().cuCtxGetDevice(&dev) != CUDA_SUCCESS) dev = 0;
  stats::record_alloc(k, dev, ptr, bytes, reinterpret_cast<std::uintptr_t>(stream));
  if (tl_until_pool_figures-- == 0) {
    tl_until_pool_figures = ++tl_pool_figures_sent < 16 ? 0 : 255;
    dispatch::mirror_pool_figures();
  }
}
void note_free(stats::kind k, std::uint64_t ptr, CUstream stream = nullptr) noexcept {
  if (stats::recording()) stats::record_free(k, ptr, reinterpret_cast<std::uintptr_t>(stream));
}
// An allocation that failed for want of memory: its stack and size for the memory_viz timeline
// ("oom"), with the driver's free bytes then. Out of line: never on the path of one that succeeds.
[[gnu::noinline]] void note_oom(stats::kind k, std::size_t bytes, CUstream stream = nullptr) noexcept {
  if (!stats::recording()) return;
  const real_driver& d = real();
  CUdevice dev = 0;
  if (d.cuCtxGetDevice(&dev) != CUDA_SUCCESS) dev = 0;
  std::size_t free = 0, total = 0;
  if (d.cuMemGetInfo_v2(&free, &total) != CUDA_SUCCESS) free = 0;
  stats::record_oom(k, dev, bytes, free, reinterpret_cast<std::uintptr_t>(stream));
}
std::uint64_t as_u64(const void* p) noexcept { return reinterpret_cast<std::uintptr_t>(p); }
}  // namespace

CUresult mem_alloc(CUdeviceptr* dptr, std::size_t bytes) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuMemAlloc_v2(dptr, bytes);
  count_call(hook_id::mem_alloc);
  CUresult r = CUDA_SUCCESS;
  int dev = -1;
  if (!device_router::try_alloc(dptr, bytes, &r, &dev)) r = d.cuMemAlloc_v2(dptr, bytes);
  if (ok(r)) bump(g_counters.device_allocs), bump(g_counters.device_alloc_bytes, bytes);
  if (ok(r)) note_alloc(stats::kind::device, *dptr, bytes, dev);
  if (r == CUDA_ERROR_OUT_OF_MEMORY) [[unlikely]]
    note_oom(stats::kind::device, bytes);
  return r;
}

CUresult mem_alloc_pitch(CUdeviceptr* dptr, std::size_t* pitch, std::size_t width, std::size_t height,
                         unsigned element_bytes) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuMemAllocPitch_v2(dptr, pitch, width, height, element_bytes);
  count_call(hook_id::mem_alloc_pitch);
  CUresult r = d.cuMemAllocPitch_v2(dptr, pitch, width, height, element_bytes);
  if (ok(r)) bump(g_counters.device_allocs), bump(g_counters.device_alloc_bytes, *pitch * height);
  if (ok(r)) note_alloc(stats::kind::device, *dptr, *pitch * height);
  return r;
}

CUresult mem_free(CUdeviceptr dptr) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuMemFree_v2(dptr);
  count_call(hook_id::mem_free);
  // An exported block's token ends before the block can be anyone else's.
  ipc_router::forget_export(dptr);
  note_free(stats::kind::device, dptr);
  CUresult r = CUDA_SUCCESS;
  if (!device_router::try_free(dptr, &r)) r = d.cuMemFree_v2(dptr);
  if (ok(r)) bump(g_counters.device_frees);
  return r;
}

namespace {
// cuMemAllocHost_v2 (size_t) or its CUDA 2.0 variant (unsigned int: `bytes` came from one, so it
// fits). Both return an ordinary 64-bit host pointer.
CUresult real_mem_alloc_host(const real_driver& d, void** pp, std::size_t bytes, abi a) noexcept {
  return a == abi::v1 ? d.cuMemAllocHost_v1(pp, static_cast<unsigned>(bytes)) : d.cuMemAllocHost_v2(pp, bytes);
}
}  // namespace

// The CUDA 2.0 variant differs only in the width of its size argument, and its pointer is a normal
// host pointer that cuMemFreeHost (one ABI) frees: the host pool serves it exactly as _v2.
CUresult mem_alloc_host(void** pp, std::size_t bytes, abi a) noexcept {
  const real_driver& d = real();
  if (!tracking()) return real_mem_alloc_host(d, pp, bytes, a);
  count_call(a == abi::v1 ? hook_id::mem_alloc_host_v1 : hook_id::mem_alloc_host);
  CUresult r = CUDA_SUCCESS;
  if (!host_router::try_alloc(pp, bytes, 0, &r)) r = real_mem_alloc_host(d, pp, bytes, a);
  if (ok(r)) bump(g_counters.host_allocs), bump(g_counters.host_alloc_bytes, bytes);
  if (ok(r)) note_alloc(stats::kind::pinned, as_u64(*pp), bytes);
  return r;
}

CUresult mem_host_alloc(void** pp, std::size_t bytes, unsigned flags) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuMemHostAlloc(pp, bytes, flags);
  count_call(hook_id::mem_host_alloc);
  CUresult r = CUDA_SUCCESS;
  if (!host_router::try_alloc(pp, bytes, flags, &r)) r = d.cuMemHostAlloc(pp, bytes, flags);
  if (ok(r)) bump(g_counters.host_allocs), bump(g_counters.host_alloc_bytes, bytes);
  if (ok(r)) note_alloc(stats::kind::pinned, as_u64(*pp), bytes);
  return r;
}

CUresult mem_free_host(void* p) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuMemFreeHost(p);
  count_call(hook_id::mem_free_host);
  note_free(stats::kind::pinned, as_u64(p));
  CUresult r = CUDA_SUCCESS;
  if (!host_router::try_free(p, &r)) r = d.cuMemFreeHost(p);
  if (ok(r)) bump(g_counters.host_frees);
  return r;
}

CUresult mem_host_get_device_pointer(CUdeviceptr* dptr, void* p, unsigned flags) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuMemHostGetDevicePointer_v2(dptr, p, flags);
  count_call(hook_id::mem_host_get_device_pointer);
  CUresult r = CUDA_SUCCESS;
  if (host_router::try_get_device_pointer(dptr, p, flags, &r)) return r;
  return d.cuMemHostGetDevicePointer_v2(dptr, p, flags);
}

CUresult mem_host_get_flags(unsigned* flags, void* p) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuMemHostGetFlags(flags, p);
  count_call(hook_id::mem_host_get_flags);
  CUresult r = CUDA_SUCCESS;
  if (host_router::try_get_flags(flags, p, &r)) return r;
  return d.cuMemHostGetFlags(flags, p);
}

namespace {
// What this process's pool holds idle is free for this process: the driver's free figure plus
// that, never above the total (the daemon's idle memory for everyone is not counted). For both
// ABIs: in the 32-bit one the driver's figures are already clamped, and so is the sum.
template <class Size>
Size free_with_idle(Size free, Size total) noexcept {
  const std::uint64_t idle = device_router::idle_bytes_of_current_device();
  const std::uint64_t room = total - std::min(free, total);
  return idle > room ? total : static_cast<Size>(free + idle);
}
}  // namespace

CUresult mem_get_info(std::size_t* free, std::size_t* total) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuMemGetInfo_v2(free, total);
  count_call(hook_id::mem_get_info);
  std::size_t f = 0, t = 0;
  CUresult r = d.cuMemGetInfo_v2(&f, &t);
  if (r != CUDA_SUCCESS) return r;
  if (free != nullptr) *free = free_with_idle(f, t);
  if (total != nullptr) *total = t;
  return r;
}

CUresult mem_alloc_managed(CUdeviceptr* dptr, std::size_t bytes, unsigned flags) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuMemAllocManaged(dptr, bytes, flags);
  count_call(hook_id::mem_alloc_managed);
  CUresult r = d.cuMemAllocManaged(dptr, bytes, flags);
  if (ok(r)) bump(g_counters.managed_allocs), bump(g_counters.managed_alloc_bytes, bytes);
  if (ok(r)) note_alloc(stats::kind::managed, *dptr, bytes);
  if (r == CUDA_ERROR_OUT_OF_MEMORY) [[unlikely]]
    note_oom(stats::kind::managed, bytes);
  return r;
}

CUresult mem_alloc_async(CUdeviceptr* dptr, std::size_t bytes, CUstream stream, default_stream s) noexcept {
  const real_driver& d = real();
  auto fn = s == default_stream::per_thread ? d.cuMemAllocAsync_ptsz : d.cuMemAllocAsync;
  if (!tracking()) return fn(dptr, bytes, stream);
  count_call(s == default_stream::per_thread ? hook_id::mem_alloc_async_ptsz : hook_id::mem_alloc_async);
  CUresult r = fn(dptr, bytes, stream);
  if (ok(r)) bump(g_counters.async_allocs), bump(g_counters.async_alloc_bytes, bytes);
  if (ok(r)) note_alloc(stats::kind::async, *dptr, bytes, -1, stream);
  if (r == CUDA_ERROR_OUT_OF_MEMORY) [[unlikely]]
    note_oom(stats::kind::async, bytes, stream);
  return r;
}

CUresult mem_free_async(CUdeviceptr dptr, CUstream stream, default_stream s) noexcept {
  const real_driver& d = real();
  auto fn = s == default_stream::per_thread ? d.cuMemFreeAsync_ptsz : d.cuMemFreeAsync;
  if (!tracking()) return fn(dptr, stream);
  count_call(s == default_stream::per_thread ? hook_id::mem_free_async_ptsz : hook_id::mem_free_async);
  // A pooled block freed stream-ordered goes back to its pool under the free semantics of
  // POOLSHIM_FREE_SYNC (both at least as strong as the stream order); the driver never sees it.
  ipc_router::forget_export(dptr);
  note_free(stats::kind::async, dptr, stream);
  CUresult r = CUDA_SUCCESS;
  if (!device_router::try_free(dptr, &r)) r = fn(dptr, stream);
  if (ok(r)) bump(g_counters.async_frees);
  return r;
}

CUresult mem_create(CUmemGenericAllocationHandle* handle, std::size_t bytes, const CUmemAllocationProp* prop,
                    unsigned long long flags) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuMemCreate(handle, bytes, prop, flags);
  count_call(hook_id::mem_create);
  CUresult r = d.cuMemCreate(handle, bytes, prop, flags);
  if (ok(r)) bump(g_counters.vmm_creates), bump(g_counters.vmm_create_bytes, bytes);
  return r;
}

CUresult mem_release(CUmemGenericAllocationHandle handle) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuMemRelease(handle);
  count_call(hook_id::mem_release);
  CUresult r = d.cuMemRelease(handle);
  if (ok(r)) bump(g_counters.vmm_releases);
  return r;
}

CUresult ipc_get_mem_handle(CUipcMemHandle* handle, CUdeviceptr dptr) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuIpcGetMemHandle(handle, dptr);
  count_call(hook_id::ipc_get_mem_handle);
  if (device_router::refuses_ipc(dptr)) {
    // A small block: a poolshim handle when a trusted daemon answers.
    CUresult r = CUDA_SUCCESS;
    if (ipc_router::try_export(handle, dptr, &r)) {
      if (ok(r)) bump(g_counters.ipc_exports);
      return r;
    }
    // Never a handle that opens the wrong bytes: CUDA's invalid-value error, said once.
    POOLSHIM_LOG_WARN_ONCE(
        "cudaIpcGetMemHandle on a pooled block smaller than {} bytes (or inside one) is refused "
        "(invalid value) without a poolshimd to resolve poolshim handles; POOLSHIM_MODE=observe "
        "exports it unchanged",
        base::current_config().small_limit);
    return CUDA_ERROR_INVALID_VALUE;
  }
  CUresult r = d.cuIpcGetMemHandle(handle, dptr);
  if (ok(r)) bump(g_counters.ipc_exports);
  return r;
}

CUresult ipc_open_mem_handle(CUdeviceptr* dptr, CUipcMemHandle handle, unsigned flags, abi a) noexcept {
  const real_driver& d = real();
  auto fn = a == abi::v1 ? d.cuIpcOpenMemHandle_v1 : d.cuIpcOpenMemHandle_v2;
  if (!tracking()) return fn(dptr, handle, flags);
  count_call(a == abi::v1 ? hook_id::ipc_open_mem_handle_v1 : hook_id::ipc_open_mem_handle);
  CUresult r = CUDA_SUCCESS;
  // A poolshim token is resolved here whichever variant it came through; never handed to the driver.
  if (!ipc_router::try_open(dptr, handle, flags, &r)) r = fn(dptr, handle, flags);
  if (ok(r)) bump(g_counters.ipc_opens);
  return r;
}

CUresult ipc_close_mem_handle(CUdeviceptr dptr) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuIpcCloseMemHandle(dptr);
  count_call(hook_id::ipc_close_mem_handle);
  CUresult r = CUDA_SUCCESS;
  if (!ipc_router::try_close(dptr, &r)) r = d.cuIpcCloseMemHandle(dptr);
  if (ok(r)) bump(g_counters.ipc_closes);
  return r;
}

CUresult stream_create(CUstream* stream, unsigned flags) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuStreamCreate(stream, flags);
  count_call(hook_id::stream_create);
  CUresult r = d.cuStreamCreate(stream, flags);
  if (ok(r)) bump(g_counters.streams_created), fence_tracker::note_stream_created(*stream, flags);
  return r;
}

CUresult stream_create_with_priority(CUstream* stream, unsigned flags, int priority) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuStreamCreateWithPriority(stream, flags, priority);
  count_call(hook_id::stream_create_with_priority);
  CUresult r = d.cuStreamCreateWithPriority(stream, flags, priority);
  if (ok(r)) bump(g_counters.streams_created), fence_tracker::note_stream_created(*stream, flags);
  return r;
}

CUresult stream_destroy(CUstream stream, abi a) noexcept {
  const real_driver& d = real();
  auto fn = a == abi::v1 ? d.cuStreamDestroy_v1 : d.cuStreamDestroy_v2;
  if (!tracking()) return fn(stream);
  count_call(a == abi::v1 ? hook_id::stream_destroy_v1 : hook_id::stream_destroy);
  fence_tracker::note_stream_destroying(stream);  // its pending work stays covered
  CUresult r = fn(stream);
  if (ok(r)) bump(g_counters.streams_destroyed);
  return r;
}

CUresult ctx_create_v2(CUcontext* ctx, unsigned flags, CUdevice dev, abi a) noexcept {
  const real_driver& d = real();
  auto fn = a == abi::v1 ? d.cuCtxCreate_v1 : d.cuCtxCreate_v2;
  if (!tracking()) return fn(ctx, flags, dev);
  count_call(a == abi::v1 ? hook_id::ctx_create_v1 : hook_id::ctx_create_v2);
  CUresult r = fn(ctx, flags, dev);
  if (ok(r)) bump(g_counters.contexts_created), fence_tracker::note_context(*ctx);
  return r;
}

CUresult ctx_create_v3(CUcontext* ctx, CUexecAffinityParam* params, int num_params, unsigned flags,
                       CUdevice dev) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuCtxCreate_v3(ctx, params, num_params, flags, dev);
  count_call(hook_id::ctx_create_v3);
  CUresult r = d.cuCtxCreate_v3(ctx, params, num_params, flags, dev);
  if (ok(r)) bump(g_counters.contexts_created), fence_tracker::note_context(*ctx);
  return r;
}

CUresult ctx_create_v4(CUcontext* ctx, CUctxCreateParams* params, unsigned flags, CUdevice dev) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuCtxCreate_v4(ctx, params, flags, dev);
  count_call(hook_id::ctx_create_v4);
  CUresult r = d.cuCtxCreate_v4(ctx, params, flags, dev);
  if (ok(r)) bump(g_counters.contexts_created), fence_tracker::note_context(*ctx);
  return r;
}

CUresult ctx_destroy(CUcontext ctx, abi a) noexcept {
  const real_driver& d = real();
  auto fn = a == abi::v1 ? d.cuCtxDestroy_v1 : d.cuCtxDestroy_v2;
  if (!tracking()) return fn(ctx);
  count_call(a == abi::v1 ? hook_id::ctx_destroy_v1 : hook_id::ctx_destroy);
  device_router::pause_maintenance(ctx);  // no trim frees its memory while (or after) it goes
  CUresult r = fn(ctx);
  if (ok(r))
    device_router::forget_context(ctx), fence_tracker::forget_context(ctx);  // its memory went with it
  else
    device_router::resume_maintenance(ctx);
  if (ok(r)) bump(g_counters.contexts_destroyed);
  return r;
}

namespace {
// The primary context of `dev`, without changing its retain count in the end.
CUcontext primary_of(const real_driver& d, CUdevice dev) noexcept {
  CUcontext ctx = nullptr;
  if (d.cuDevicePrimaryCtxRetain(&ctx, dev) != CUDA_SUCCESS) return nullptr;
  (void)d.cuDevicePrimaryCtxRelease_v2(dev);
  return ctx;
}
}  // namespace

CUresult primary_ctx_release(CUdevice dev, abi a) noexcept {
  const real_driver& d = real();
  auto fn = a == abi::v1 ? d.cuDevicePrimaryCtxRelease_v1 : d.cuDevicePrimaryCtxRelease_v2;
  if (!tracking()) return fn(dev);
  count_call(a == abi::v1 ? hook_id::primary_ctx_release_v1 : hook_id::primary_ctx_release);
  CUcontext ctx = primary_of(d, dev);
  if (ctx != nullptr) device_router::pause_maintenance(ctx);  // it may be the last release
  CUresult r = fn(dev);
  // The last release destroys the primary context and every allocation in it.
  unsigned flags = 0;
  int active = 1;
  if (ok(r) && ctx != nullptr && d.cuDevicePrimaryCtxGetState(dev, &flags, &active) == CUDA_SUCCESS && !active)
    device_router::forget_context(ctx), fence_tracker::forget_context(ctx);
  else if (ctx != nullptr)
    device_router::resume_maintenance(ctx);
  return r;
}

CUresult primary_ctx_retain(CUcontext* ctx, CUdevice dev) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuDevicePrimaryCtxRetain(ctx, dev);
  count_call(hook_id::primary_ctx_retain);
  CUresult r = d.cuDevicePrimaryCtxRetain(ctx, dev);
  if (ok(r)) fence_tracker::note_context(*ctx);  // a context whose streams may read pooled memory
  return r;
}

CUresult primary_ctx_reset(CUdevice dev, abi a) noexcept {
  const real_driver& d = real();
  auto fn = a == abi::v1 ? d.cuDevicePrimaryCtxReset_v1 : d.cuDevicePrimaryCtxReset_v2;
  if (!tracking()) return fn(dev);
  count_call(a == abi::v1 ? hook_id::primary_ctx_reset_v1 : hook_id::primary_ctx_reset);
  // cudaDeviceReset frees every allocation of the primary context, the pool's segments included,
  // so the pool is forgotten first (a block handed out later would be freed memory).
  if (CUcontext ctx = primary_of(d, dev)) device_router::forget_context(ctx), fence_tracker::forget_context(ctx);
  return fn(dev);
}

namespace {
CUresult real_begin_capture(const real_driver& d, CUstream stream, CUstreamCaptureMode mode, default_stream s,
                            abi a) noexcept {
  const bool pt = s == default_stream::per_thread;
  if (a == abi::v1) return (pt ? d.cuStreamBeginCapture_v1_ptsz : d.cuStreamBeginCapture_v1)(stream);
  return (pt ? d.cuStreamBeginCapture_v2_ptsz : d.cuStreamBeginCapture_v2)(stream, mode);
}
hook_id begin_capture_hook(default_stream s, abi a) noexcept {
  if (a == abi::v1)
    return s == default_stream::per_thread ? hook_id::stream_begin_capture_v1_ptsz : hook_id::stream_begin_capture_v1;
  return s == default_stream::per_thread ? hook_id::stream_begin_capture_ptsz : hook_id::stream_begin_capture;
}
}  // namespace

CUresult stream_begin_capture(CUstream stream, CUstreamCaptureMode capture_mode, default_stream s, abi a) noexcept {
  const real_driver& d = real();
  if (!tracking()) return real_begin_capture(d, stream, capture_mode, s, a);
  count_call(begin_capture_hook(s, a));
  fence_tracker::capture_gate gate;  // no capture starts between a fence's records
  CUresult r = real_begin_capture(d, stream, capture_mode, s, a);
  if (ok(r)) bump(g_counters.captures_begun), capture_state::note_capture(+1);
  return r;
}

CUresult stream_end_capture(CUstream stream, CUgraph* graph, default_stream s) noexcept {
  const real_driver& d = real();
  auto fn = s == default_stream::per_thread ? d.cuStreamEndCapture_ptsz : d.cuStreamEndCapture;
  if (!tracking()) return fn(stream, graph);
  count_call(s == default_stream::per_thread ? hook_id::stream_end_capture_ptsz : hook_id::stream_end_capture);
  CUresult r = fn(stream, graph);
  // An invalidated capture has ended too.
  if (ok(r) || r == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED) capture_state::note_capture(-1);
  if (ok(r)) bump(g_counters.captures_ended);
  return r;
}

// The 32-bit ABIs: the pool hands out nothing through them (a block's address need not fit), so
// they reach the real old export; what they allocate is counted and recorded like any driver
// allocation.
CUresult mem_alloc_v1(unsigned* dptr, unsigned bytes) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuMemAlloc_v1(dptr, bytes);
  count_call(hook_id::mem_alloc_v1);
  CUresult r = d.cuMemAlloc_v1(dptr, bytes);
  if (ok(r)) bump(g_counters.device_allocs), bump(g_counters.device_alloc_bytes, bytes);
  if (ok(r)) note_alloc(stats::kind::device, *dptr, bytes);
  return r;
}

CUresult mem_alloc_pitch_v1(unsigned* dptr, unsigned* pitch, unsigned width, unsigned height,
                            unsigned element_bytes) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuMemAllocPitch_v1(dptr, pitch, width, height, element_bytes);
  count_call(hook_id::mem_alloc_pitch_v1);
  CUresult r = d.cuMemAllocPitch_v1(dptr, pitch, width, height, element_bytes);
  const std::size_t bytes = ok(r) ? std::size_t{*pitch} * height : 0;
  if (ok(r)) bump(g_counters.device_allocs), bump(g_counters.device_alloc_bytes, bytes);
  if (ok(r)) note_alloc(stats::kind::device, *dptr, bytes);
  return r;
}

CUresult mem_free_v1(unsigned dptr) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuMemFree_v1(dptr);
  count_call(hook_id::mem_free_v1);
  note_free(stats::kind::device, dptr);
  CUresult r = d.cuMemFree_v1(dptr);
  if (ok(r)) bump(g_counters.device_frees);
  return r;
}

CUresult mem_host_get_device_pointer_v1(unsigned* dptr, void* p, unsigned flags) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuMemHostGetDevicePointer_v1(dptr, p, flags);
  count_call(hook_id::mem_host_get_device_pointer_v1);
  return d.cuMemHostGetDevicePointer_v1(dptr, p, flags);
}

CUresult mem_get_info_v1(unsigned* free, unsigned* total) noexcept {
  const real_driver& d = real();
  if (!tracking()) return d.cuMemGetInfo_v1(free, total);
  count_call(hook_id::mem_get_info_v1);
  unsigned f = 0, t = 0;
  CUresult r = d.cuMemGetInfo_v1(&f, &t);
  if (r != CUDA_SUCCESS) return r;
  if (free != nullptr) *free = free_with_idle(f, t);
  if (total != nullptr) *total = t;
  return r;
}

}  // namespace poolshim::driver_hooks

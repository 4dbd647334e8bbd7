// libpoolshim.so's driver hooks: one exported extern "C" definition per hooked ABI variant, with
// the exact prototype cuda.h gives it (every variant is declared: __CUDA_API_VERSION_INTERNAL, as
// the driver itself is built). Each takes the re-entry guard and calls the seam in
// dispatch/driver_hooks.h; a nested call (our own, or the driver calling an export through its
// PLT) goes straight to the real function. No logic here.
#define __CUDA_API_VERSION_INTERNAL 1  // NOLINT(readability-identifier-naming): cuda.h's switch
#include <cuda.h>

#include <type_traits>

#include "base/real_driver.h"
#include "base/reentry_guard.h"
#include "dispatch/driver_hooks.h"
#include "intercept/hook_list.h"
#include "intercept/proc_address.h"

// real_driver.h spells out the old variants' pointer types (cudaTypedefs.h has them only under
// __CUDA_API_VERSION_INTERNAL, which this file defines): they must be NVIDIA's.
namespace old_abi = poolshim::old_abi;
static_assert(std::is_same_v<old_abi::deviceptr_v1, CUdeviceptr_v1>);
static_assert(std::is_same_v<old_abi::pfn_cuMemAlloc_v2000, PFN_cuMemAlloc_v2000>);
static_assert(std::is_same_v<old_abi::pfn_cuMemAllocPitch_v2000, PFN_cuMemAllocPitch_v2000>);
static_assert(std::is_same_v<old_abi::pfn_cuMemFree_v2000, PFN_cuMemFree_v2000>);
static_assert(std::is_same_v<old_abi::pfn_cuMemAllocHost_v2000, PFN_cuMemAllocHost_v2000>);
static_assert(std::is_same_v<old_abi::pfn_cuMemHostGetDevicePointer_v2020, PFN_cuMemHostGetDevicePointer_v2020>);
static_assert(std::is_same_v<old_abi::pfn_cuMemGetInfo_v2000, PFN_cuMemGetInfo_v2000>);
static_assert(std::is_same_v<old_abi::pfn_cuIpcOpenMemHandle_v4010, PFN_cuIpcOpenMemHandle_v4010>);
static_assert(std::is_same_v<old_abi::pfn_cuStreamDestroy_v2000, PFN_cuStreamDestroy_v2000>);
static_assert(std::is_same_v<old_abi::pfn_cuCtxCreate_v2000, PFN_cuCtxCreate_v2000>);
static_assert(std::is_same_v<old_abi::pfn_cuCtxDestroy_v2000, PFN_cuCtxDestroy_v2000>);
static_assert(std::is_same_v<old_abi::pfn_cuDevicePrimaryCtxRelease_v7000, PFN_cuDevicePrimaryCtxRelease_v7000>);
static_assert(std::is_same_v<old_abi::pfn_cuDevicePrimaryCtxReset_v7000, PFN_cuDevicePrimaryCtxReset_v7000>);
static_assert(std::is_same_v<old_abi::pfn_cuStreamBeginCapture_v10000, PFN_cuStreamBeginCapture_v10000>);
static_assert(std::is_same_v<old_abi::pfn_cuStreamBeginCapture_v10000_ptsz, PFN_cuStreamBeginCapture_v10000_ptsz>);

#define POOLSHIM_HOOK extern "C" __attribute__((visibility("default")))

using poolshim::real;
using poolshim::base::reentry_guard;
using poolshim::driver_hooks::abi;
using poolshim::driver_hooks::default_stream;
namespace driver_hooks = poolshim::driver_hooks;
namespace intercept = poolshim::intercept;

POOLSHIM_HOOK CUresult CUDAAPI cuMemAlloc(CUdeviceptr_v1* dptr, unsigned int bytesize) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemAlloc_v1(dptr, bytesize);
  return driver_hooks::mem_alloc_v1(dptr, bytesize);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytesize) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemAlloc_v2(dptr, bytesize);
  return driver_hooks::mem_alloc(dptr, bytesize);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemAllocPitch(CUdeviceptr_v1* dptr, unsigned int* pPitch, unsigned int WidthInBytes,
                                               unsigned int Height, unsigned int ElementSizeBytes) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemAllocPitch_v1(dptr, pPitch, WidthInBytes, Height, ElementSizeBytes);
  return driver_hooks::mem_alloc_pitch_v1(dptr, pPitch, WidthInBytes, Height, ElementSizeBytes);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemAllocPitch_v2(CUdeviceptr* dptr, size_t* pPitch, size_t WidthInBytes, size_t Height,
                                                  unsigned int ElementSizeBytes) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemAllocPitch_v2(dptr, pPitch, WidthInBytes, Height, ElementSizeBytes);
  return driver_hooks::mem_alloc_pitch(dptr, pPitch, WidthInBytes, Height, ElementSizeBytes);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemFree(CUdeviceptr_v1 dptr) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemFree_v1(dptr);
  return driver_hooks::mem_free_v1(dptr);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemFree_v2(CUdeviceptr dptr) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemFree_v2(dptr);
  return driver_hooks::mem_free(dptr);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemAllocHost(void** pp, unsigned int bytesize) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemAllocHost_v1(pp, bytesize);
  return driver_hooks::mem_alloc_host(pp, bytesize, abi::v1);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemAllocHost_v2(void** pp, size_t bytesize) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemAllocHost_v2(pp, bytesize);
  return driver_hooks::mem_alloc_host(pp, bytesize, abi::current);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemHostAlloc(void** pp, size_t bytesize, unsigned int Flags) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemHostAlloc(pp, bytesize, Flags);
  return driver_hooks::mem_host_alloc(pp, bytesize, Flags);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemFreeHost(void* p) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemFreeHost(p);
  return driver_hooks::mem_free_host(p);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemHostGetDevicePointer(CUdeviceptr_v1* pdptr, void* p, unsigned int Flags) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemHostGetDevicePointer_v1(pdptr, p, Flags);
  return driver_hooks::mem_host_get_device_pointer_v1(pdptr, p, Flags);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemHostGetDevicePointer_v2(CUdeviceptr* pdptr, void* p, unsigned int Flags) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemHostGetDevicePointer_v2(pdptr, p, Flags);
  return driver_hooks::mem_host_get_device_pointer(pdptr, p, Flags);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemHostGetFlags(unsigned int* pFlags, void* p) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemHostGetFlags(pFlags, p);
  return driver_hooks::mem_host_get_flags(pFlags, p);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemGetInfo(unsigned int* free, unsigned int* total) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemGetInfo_v1(free, total);
  return driver_hooks::mem_get_info_v1(free, total);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemGetInfo_v2(size_t* free, size_t* total) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemGetInfo_v2(free, total);
  return driver_hooks::mem_get_info(free, total);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemAllocManaged(CUdeviceptr* dptr, size_t bytesize, unsigned int flags) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemAllocManaged(dptr, bytesize, flags);
  return driver_hooks::mem_alloc_managed(dptr, bytesize, flags);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemAllocAsync(CUdeviceptr* dptr, size_t bytesize, CUstream hStream) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemAllocAsync(dptr, bytesize, hStream);
  return driver_hooks::mem_alloc_async(dptr, bytesize, hStream, default_stream::legacy);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemAllocAsync_ptsz(CUdeviceptr* dptr, size_t bytesize, CUstream hStream) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemAllocAsync_ptsz(dptr, bytesize, hStream);
  return driver_hooks::mem_alloc_async(dptr, bytesize, hStream, default_stream::per_thread);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemFreeAsync(dptr, hStream);
  return driver_hooks::mem_free_async(dptr, hStream, default_stream::legacy);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hStream) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemFreeAsync_ptsz(dptr, hStream);
  return driver_hooks::mem_free_async(dptr, hStream, default_stream::per_thread);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemCreate(CUmemGenericAllocationHandle* handle, size_t size,
                                           const CUmemAllocationProp* prop, unsigned long long flags) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemCreate(handle, size, prop, flags);
  return driver_hooks::mem_create(handle, size, prop, flags);
}

POOLSHIM_HOOK CUresult CUDAAPI cuMemRelease(CUmemGenericAllocationHandle handle) {
  reentry_guard guard;
  if (guard.nested()) return real().cuMemRelease(handle);
  return driver_hooks::mem_release(handle);
}

POOLSHIM_HOOK CUresult CUDAAPI cuIpcGetMemHandle(CUipcMemHandle* pHandle, CUdeviceptr dptr) {
  reentry_guard guard;
  if (guard.nested()) return real().cuIpcGetMemHandle(pHandle, dptr);
  return driver_hooks::ipc_get_mem_handle(pHandle, dptr);
}

POOLSHIM_HOOK CUresult CUDAAPI cuIpcOpenMemHandle(CUdeviceptr* pdptr, CUipcMemHandle handle, unsigned int Flags) {
  reentry_guard guard;
  if (guard.nested()) return real().cuIpcOpenMemHandle_v1(pdptr, handle, Flags);
  return driver_hooks::ipc_open_mem_handle(pdptr, handle, Flags, abi::v1);
}

POOLSHIM_HOOK CUresult CUDAAPI cuIpcOpenMemHandle_v2(CUdeviceptr* pdptr, CUipcMemHandle handle, unsigned int Flags) {
  reentry_guard guard;
  if (guard.nested()) return real().cuIpcOpenMemHandle_v2(pdptr, handle, Flags);
  return driver_hooks::ipc_open_mem_handle(pdptr, handle, Flags, abi::current);
}

POOLSHIM_HOOK CUresult CUDAAPI cuIpcCloseMemHandle(CUdeviceptr dptr) {
  reentry_guard guard;
  if (guard.nested()) return real().cuIpcCloseMemHandle(dptr);
  return driver_hooks::ipc_close_mem_handle(dptr);
}

POOLSHIM_HOOK CUresult CUDAAPI cuStreamCreate(CUstream* phStream, unsigned int Flags) {
  reentry_guard guard;
  if (guard.nested()) return real().cuStreamCreate(phStream, Flags);
  return driver_hooks::stream_create(phStream, Flags);
}

POOLSHIM_HOOK CUresult CUDAAPI cuStreamCreateWithPriority(CUstream* phStream, unsigned int flags, int priority) {
  reentry_guard guard;
  if (guard.nested()) return real().cuStreamCreateWithPriority(phStream, flags, priority);
  return driver_hooks::stream_create_with_priority(phStream, flags, priority);
}

POOLSHIM_HOOK CUresult CUDAAPI cuStreamDestroy(CUstream hStream) {
  reentry_guard guard;
  if (guard.nested()) return real().cuStreamDestroy_v1(hStream);
  return driver_hooks::stream_destroy(hStream, abi::v1);
}

POOLSHIM_HOOK CUresult CUDAAPI cuStreamDestroy_v2(CUstream hStream) {
  reentry_guard guard;
  if (guard.nested()) return real().cuStreamDestroy_v2(hStream);
  return driver_hooks::stream_destroy(hStream, abi::current);
}

POOLSHIM_HOOK CUresult CUDAAPI cuCtxCreate(CUcontext* pctx, unsigned int flags, CUdevice dev) {
  reentry_guard guard;
  if (guard.nested()) return real().cuCtxCreate_v1(pctx, flags, dev);
  return driver_hooks::ctx_create_v2(pctx, flags, dev, abi::v1);
}

POOLSHIM_HOOK CUresult CUDAAPI cuCtxCreate_v2(CUcontext* pctx, unsigned int flags, CUdevice dev) {
  reentry_guard guard;
  if (guard.nested()) return real().cuCtxCreate_v2(pctx, flags, dev);
  return driver_hooks::ctx_create_v2(pctx, flags, dev, abi::current);
}

POOLSHIM_HOOK CUresult CUDAAPI cuCtxCreate_v3(CUcontext* pctx, CUexecAffinityParam* paramsArray, int numParams,
                                              unsigned int flags, CUdevice dev) {
  reentry_guard guard;
  if (guard.nested()) return real().cuCtxCreate_v3(pctx, paramsArray, numParams, flags, dev);
  return driver_hooks::ctx_create_v3(pctx, paramsArray, numParams, flags, dev);
}

POOLSHIM_HOOK CUresult CUDAAPI cuCtxCreate_v4(CUcontext* pctx, CUctxCreateParams* ctxCreateParams, unsigned int flags,
                                              CUdevice dev) {
  reentry_guard guard;
  if (guard.nested()) return real().cuCtxCreate_v4(pctx, ctxCreateParams, flags, dev);
  return driver_hooks::ctx_create_v4(pctx, ctxCreateParams, flags, dev);
}

POOLSHIM_HOOK CUresult CUDAAPI cuCtxDestroy(CUcontext ctx) {
  reentry_guard guard;
  if (guard.nested()) return real().cuCtxDestroy_v1(ctx);
  return driver_hooks::ctx_destroy(ctx, abi::v1);
}

POOLSHIM_HOOK CUresult CUDAAPI cuCtxDestroy_v2(CUcontext ctx) {
  reentry_guard guard;
  if (guard.nested()) return real().cuCtxDestroy_v2(ctx);
  return driver_hooks::ctx_destroy(ctx, abi::current);
}

POOLSHIM_HOOK CUresult CUDAAPI cuDevicePrimaryCtxRetain(CUcontext* pctx, CUdevice dev) {
  reentry_guard guard;
  if (guard.nested()) return real().cuDevicePrimaryCtxRetain(pctx, dev);
  return driver_hooks::primary_ctx_retain(pctx, dev);
}

POOLSHIM_HOOK CUresult CUDAAPI cuDevicePrimaryCtxRelease(CUdevice dev) {
  reentry_guard guard;
  if (guard.nested()) return real().cuDevicePrimaryCtxRelease_v1(dev);
  return driver_hooks::primary_ctx_release(dev, abi::v1);
}

POOLSHIM_HOOK CUresult CUDAAPI cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
  reentry_guard guard;
  if (guard.nested()) return real().cuDevicePrimaryCtxRelease_v2(dev);
  return driver_hooks::primary_ctx_release(dev, abi::current);
}

POOLSHIM_HOOK CUresult CUDAAPI cuDevicePrimaryCtxReset(CUdevice dev) {
  reentry_guard guard;
  if (guard.nested()) return real().cuDevicePrimaryCtxReset_v1(dev);
  return driver_hooks::primary_ctx_reset(dev, abi::v1);
}

POOLSHIM_HOOK CUresult CUDAAPI cuDevicePrimaryCtxReset_v2(CUdevice dev) {
  reentry_guard guard;
  if (guard.nested()) return real().cuDevicePrimaryCtxReset_v2(dev);
  return driver_hooks::primary_ctx_reset(dev, abi::current);
}

// CUDA 10.0's variants take no mode: such a capture is a global-mode one (what the simulator does;
// unverified on a GPU), which is what the capture bookkeeping is told.
POOLSHIM_HOOK CUresult CUDAAPI cuStreamBeginCapture(CUstream hStream) {
  reentry_guard guard;
  if (guard.nested()) return real().cuStreamBeginCapture_v1(hStream);
  return driver_hooks::stream_begin_capture(hStream, CU_STREAM_CAPTURE_MODE_GLOBAL, default_stream::legacy, abi::v1);
}

POOLSHIM_HOOK CUresult CUDAAPI cuStreamBeginCapture_ptsz(CUstream hStream) {
  reentry_guard guard;
  if (guard.nested()) return real().cuStreamBeginCapture_v1_ptsz(hStream);
  return driver_hooks::stream_begin_capture(hStream, CU_STREAM_CAPTURE_MODE_GLOBAL, default_stream::per_thread,
                                            abi::v1);
}

POOLSHIM_HOOK CUresult CUDAAPI cuStreamBeginCapture_v2(CUstream hStream, CUstreamCaptureMode mode) {
  reentry_guard guard;
  if (guard.nested()) return real().cuStreamBeginCapture_v2(hStream, mode);
  return driver_hooks::stream_begin_capture(hStream, mode, default_stream::legacy, abi::current);
}

POOLSHIM_HOOK CUresult CUDAAPI cuStreamBeginCapture_v2_ptsz(CUstream hStream, CUstreamCaptureMode mode) {
  reentry_guard guard;
  if (guard.nested()) return real().cuStreamBeginCapture_v2_ptsz(hStream, mode);
  return driver_hooks::stream_begin_capture(hStream, mode, default_stream::per_thread, abi::current);
}

POOLSHIM_HOOK CUresult CUDAAPI cuStreamEndCapture(CUstream hStream, CUgraph* phGraph) {
  reentry_guard guard;
  if (guard.nested()) return real().cuStreamEndCapture(hStream, phGraph);
  return driver_hooks::stream_end_capture(hStream, phGraph, default_stream::legacy);
}

POOLSHIM_HOOK CUresult CUDAAPI cuStreamEndCapture_ptsz(CUstream hStream, CUgraph* phGraph) {
  reentry_guard guard;
  if (guard.nested()) return real().cuStreamEndCapture_ptsz(hStream, phGraph);
  return driver_hooks::stream_end_capture(hStream, phGraph, default_stream::per_thread);
}

POOLSHIM_HOOK CUresult CUDAAPI cuGetProcAddress(const char* symbol, void** pfn, int cudaVersion, cuuint64_t flags) {
  reentry_guard guard;
  if (guard.nested()) return real().cuGetProcAddress_v1(symbol, pfn, cudaVersion, flags);
  return intercept::get_proc_address_v1(symbol, pfn, cudaVersion, flags);
}

POOLSHIM_HOOK CUresult CUDAAPI cuGetProcAddress_v2(const char* symbol, void** pfn, int cudaVersion, cuuint64_t flags,
                                                   CUdriverProcAddressQueryResult* symbolStatus) {
  reentry_guard guard;
  if (guard.nested()) return real().cuGetProcAddress_v2(symbol, pfn, cudaVersion, flags, symbolStatus);
  return intercept::get_proc_address_v2(symbol, pfn, cudaVersion, flags, symbolStatus);
}

// What dlsym and cuGetProcAddress hand out, by hook id (the order of POOLSHIM_DRIVER_HOOKS).
void* const poolshim::intercept::k_hook_wrappers[poolshim::intercept::k_hook_count] = {
// NOLINTNEXTLINE(bugprone-macro-parentheses): the argument is a function name
#define POOLSHIM_HOOK_WRAPPER(id, fn, base, version, per_thread) reinterpret_cast<void*>(&fn),
    POOLSHIM_DRIVER_HOOKS(POOLSHIM_HOOK_WRAPPER)
#undef POOLSHIM_HOOK_WRAPPER
};

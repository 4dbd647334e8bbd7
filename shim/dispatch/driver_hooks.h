// The seam between the exported hooks (hooks_driver.cpp) and what the shim does with each call.
// Every function counts the call (unless POOLSHIM_MODE=off); in POOLSHIM_MODE=pool the device
// calls go through route/device_router (the caching pool), everything else to the real driver. Each one has the real
// function's contract: same arguments (NULL out-arguments included), same return codes, no exception; `s` says which
// default stream a null stream means for the entry points that have a _ptsz variant.
#pragma once

#include <cuda.h>

#include <cstddef>

namespace poolshim::driver_hooks {

enum class default_stream { legacy, per_thread };

// Which ABI variant of a name the call came through, for the names whose old variant takes the
// same arguments as the current one (or, for cuMemAllocHost and cuStreamBeginCapture, arguments
// the seam widens): `current` is the export cuda.h names today (cuCtxDestroy_v2,
// cuIpcOpenMemHandle_v2, ...), `v1` the older export (cuCtxDestroy, cuIpcOpenMemHandle, ...) that a
// caller asking cuGetProcAddress for an old cudaVersion gets. The shim's logic is the same for
// both; the call is counted under that variant's hook row and the real call goes to that export.
enum class abi { current, v1 };

CUresult mem_alloc(CUdeviceptr* dptr, std::size_t bytes) noexcept;
CUresult mem_alloc_pitch(CUdeviceptr* dptr, std::size_t* pitch, std::size_t width, std::size_t height,
                         unsigned element_bytes) noexcept;
CUresult mem_free(CUdeviceptr dptr) noexcept;
CUresult mem_alloc_host(void** pp, std::size_t bytes, abi a) noexcept;
CUresult mem_host_alloc(void** pp, std::size_t bytes, unsigned flags) noexcept;
CUresult mem_free_host(void* p) noexcept;
CUresult mem_host_get_device_pointer(CUdeviceptr* dptr, void* p, unsigned flags) noexcept;
CUresult mem_host_get_flags(unsigned* flags, void* p) noexcept;
CUresult mem_get_info(std::size_t* free, std::size_t* total) noexcept;
CUresult mem_alloc_managed(CUdeviceptr* dptr, std::size_t bytes, unsigned flags) noexcept;
CUresult mem_alloc_async(CUdeviceptr* dptr, std::size_t bytes, CUstream stream, default_stream s) noexcept;
CUresult mem_free_async(CUdeviceptr dptr, CUstream stream, default_stream s) noexcept;
CUresult mem_create(CUmemGenericAllocationHandle* handle, std::size_t bytes, const CUmemAllocationProp* prop,
                    unsigned long long flags) noexcept;
CUresult mem_release(CUmemGenericAllocationHandle handle) noexcept;
CUresult ipc_get_mem_handle(CUipcMemHandle* handle, CUdeviceptr dptr) noexcept;
CUresult ipc_open_mem_handle(CUdeviceptr* dptr, CUipcMemHandle handle, unsigned flags, abi a) noexcept;
CUresult ipc_close_mem_handle(CUdeviceptr dptr) noexcept;
CUresult stream_create(CUstream* stream, unsigned flags) noexcept;
CUresult stream_create_with_priority(CUstream* stream, unsigned flags, int priority) noexcept;
CUresult stream_destroy(CUstream stream, abi a) noexcept;
CUresult ctx_create_v2(CUcontext* ctx, unsigned flags, CUdevice dev, abi a) noexcept;  // v1: cuCtxCreate
CUresult ctx_create_v3(CUcontext* ctx, CUexecAffinityParam* params, int num_params, unsigned flags,
                       CUdevice dev) noexcept;
CUresult ctx_create_v4(CUcontext* ctx, CUctxCreateParams* params, unsigned flags, CUdevice dev) noexcept;
CUresult ctx_destroy(CUcontext ctx, abi a) noexcept;
CUresult primary_ctx_retain(CUcontext* ctx, CUdevice dev) noexcept;
CUresult primary_ctx_release(CUdevice dev, abi a) noexcept;
CUresult primary_ctx_reset(CUdevice dev, abi a) noexcept;
// v1 (cuStreamBeginCapture[_ptsz] of CUDA 10.0) has no mode argument: pass
// CU_STREAM_CAPTURE_MODE_GLOBAL, the mode such a capture has; the real call takes none.
CUresult stream_begin_capture(CUstream stream, CUstreamCaptureMode capture_mode, default_stream s, abi a) noexcept;
CUresult stream_end_capture(CUstream stream, CUgraph* graph, default_stream s) noexcept;

// The 32-bit device-pointer ABIs of CUDA 2.x (cuMemAlloc, cuMemAllocPitch, cuMemFree,
// cuMemHostGetDevicePointer, cuMemGetInfo with unsigned int sizes): counted, recorded and passed
// to the real old export. The pool never hands out memory through them, so a v1 free is never a
// pooled block. cuMemGetInfo v1 adds the pool's idle memory to free as _v2 does, within the
// driver's (clamped) 32-bit total.
CUresult mem_alloc_v1(unsigned* dptr, unsigned bytes) noexcept;
CUresult mem_alloc_pitch_v1(unsigned* dptr, unsigned* pitch, unsigned width, unsigned height,
                            unsigned element_bytes) noexcept;
CUresult mem_free_v1(unsigned dptr) noexcept;
CUresult mem_host_get_device_pointer_v1(unsigned* dptr, void* p, unsigned flags) noexcept;
CUresult mem_get_info_v1(unsigned* free, unsigned* total) noexcept;

}  // namespace poolshim::driver_hooks

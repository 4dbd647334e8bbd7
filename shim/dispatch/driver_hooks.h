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

CUresult mem_alloc(CUdeviceptr* dptr, std::size_t bytes) noexcept;
CUresult mem_alloc_pitch(CUdeviceptr* dptr, std::size_t* pitch, std::size_t width, std::size_t height,
                         unsigned element_bytes) noexcept;
CUresult mem_free(CUdeviceptr dptr) noexcept;
CUresult mem_alloc_host(void** pp, std::size_t bytes) noexcept;
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
CUresult ipc_open_mem_handle(CUdeviceptr* dptr, CUipcMemHandle handle, unsigned flags) noexcept;
CUresult ipc_close_mem_handle(CUdeviceptr dptr) noexcept;
CUresult stream_create(CUstream* stream, unsigned flags) noexcept;
CUresult stream_create_with_priority(CUstream* stream, unsigned flags, int priority) noexcept;
CUresult stream_destroy(CUstream stream) noexcept;
CUresult ctx_create_v2(CUcontext* ctx, unsigned flags, CUdevice dev) noexcept;
CUresult ctx_create_v3(CUcontext* ctx, CUexecAffinityParam* params, int num_params, unsigned flags,
                       CUdevice dev) noexcept;
CUresult ctx_create_v4(CUcontext* ctx, CUctxCreateParams* params, unsigned flags, CUdevice dev) noexcept;
CUresult ctx_destroy(CUcontext ctx) noexcept;
CUresult primary_ctx_retain(CUcontext* ctx, CUdevice dev) noexcept;
CUresult primary_ctx_release(CUdevice dev) noexcept;
CUresult primary_ctx_reset(CUdevice dev) noexcept;
CUresult stream_begin_capture(CUstream stream, CUstreamCaptureMode capture_mode, default_stream s) noexcept;
CUresult stream_end_capture(CUstream stream, CUgraph* graph, default_stream s) noexcept;

}  // namespace poolshim::driver_hooks

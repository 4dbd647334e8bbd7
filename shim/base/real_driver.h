// The real driver's entry points (libcuda.so.1's own exports, never our wrappers), resolved once,
// lazily, on the first CUDA call the shim sees: before that the shim is inert. Hooks forward here,
// and the pool reaches the driver only through this table, so its own calls never re-enter a hook.
// A missing entry point is a stub that returns CUDA_ERROR_NOT_FOUND, so callers never check null.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>

namespace poolshim {

// The old ABI variants' pointer types. cudaTypedefs.h declares them (PFN_cuMemAlloc_v2000, ...) only
// under __CUDA_API_VERSION_INTERNAL, and cuda.h's CUdeviceptr_v1 (32-bit device pointer) too, so
// they are spelt out here; hooks_driver.cpp, which sees the internal declarations, checks that
// they are the same types.
namespace old_abi {
using deviceptr_v1 = unsigned int;  // CUdeviceptr_v1: the CUDA 2.x 32-bit device pointer
using pfn_cuMemAlloc_v2000 = CUresult(CUDAAPI*)(deviceptr_v1* dptr, unsigned int bytesize);
using pfn_cuMemAllocPitch_v2000 = CUresult(CUDAAPI*)(deviceptr_v1* dptr, unsigned int* pPitch,
                                                     unsigned int WidthInBytes, unsigned int Height,
                                                     unsigned int ElementSizeBytes);
using pfn_cuMemFree_v2000 = CUresult(CUDAAPI*)(deviceptr_v1 dptr);
using pfn_cuMemAllocHost_v2000 = CUresult(CUDAAPI*)(void** pp, unsigned int bytesize);
using pfn_cuMemHostGetDevicePointer_v2020 = CUresult(CUDAAPI*)(deviceptr_v1* pdptr, void* p, unsigned int Flags);
using pfn_cuMemGetInfo_v2000 = CUresult(CUDAAPI*)(unsigned int* free, unsigned int* total);
using pfn_cuIpcOpenMemHandle_v4010 = CUresult(CUDAAPI*)(CUdeviceptr* pdptr, CUipcMemHandle handle, unsigned int Flags);
using pfn_cuStreamDestroy_v2000 = CUresult(CUDAAPI*)(CUstream hStream);
using pfn_cuCtxCreate_v2000 = CUresult(CUDAAPI*)(CUcontext* pctx, unsigned int flags, CUdevice dev);
using pfn_cuCtxDestroy_v2000 = CUresult(CUDAAPI*)(CUcontext ctx);
using pfn_cuDevicePrimaryCtxRelease_v7000 = CUresult(CUDAAPI*)(CUdevice dev);
using pfn_cuDevicePrimaryCtxReset_v7000 = CUresult(CUDAAPI*)(CUdevice dev);
using pfn_cuStreamBeginCapture_v10000 = CUresult(CUDAAPI*)(CUstream hStream);  // no mode: GLOBAL
using pfn_cuStreamBeginCapture_v10000_ptsz = CUresult(CUDAAPI*)(CUstream hStream);
}  // namespace old_abi

// X(member, export name, PFN type). The member is the export name, except the 4-argument
// cuGetProcAddress (cuda.h renames that name to its _v2) and the old ABI variants, whose export
// names cuda.h turns into macros for the new ones (cuMemAlloc -> cuMemAlloc_v2): their members
// end in _v1 (cuMemAlloc_v1 is the export "cuMemAlloc"), a name no cuda.h macro touches.
#define POOLSHIM_REAL_DRIVER_ENTRIES(X)                                                                          \
  X(cuMemAlloc_v1, "cuMemAlloc", old_abi::pfn_cuMemAlloc_v2000)                                                  \
  X(cuMemAllocPitch_v1, "cuMemAllocPitch", old_abi::pfn_cuMemAllocPitch_v2000)                                   \
  X(cuMemFree_v1, "cuMemFree", old_abi::pfn_cuMemFree_v2000)                                                     \
  X(cuMemAllocHost_v1, "cuMemAllocHost", old_abi::pfn_cuMemAllocHost_v2000)                                      \
  X(cuMemHostGetDevicePointer_v1, "cuMemHostGetDevicePointer", old_abi::pfn_cuMemHostGetDevicePointer_v2020)     \
  X(cuMemGetInfo_v1, "cuMemGetInfo", old_abi::pfn_cuMemGetInfo_v2000)                                            \
  X(cuIpcOpenMemHandle_v1, "cuIpcOpenMemHandle", old_abi::pfn_cuIpcOpenMemHandle_v4010)                          \
  X(cuStreamDestroy_v1, "cuStreamDestroy", old_abi::pfn_cuStreamDestroy_v2000)                                   \
  X(cuCtxCreate_v1, "cuCtxCreate", old_abi::pfn_cuCtxCreate_v2000)                                               \
  X(cuCtxDestroy_v1, "cuCtxDestroy", old_abi::pfn_cuCtxDestroy_v2000)                                            \
  X(cuDevicePrimaryCtxRelease_v1, "cuDevicePrimaryCtxRelease", old_abi::pfn_cuDevicePrimaryCtxRelease_v7000)     \
  X(cuDevicePrimaryCtxReset_v1, "cuDevicePrimaryCtxReset", old_abi::pfn_cuDevicePrimaryCtxReset_v7000)           \
  X(cuStreamBeginCapture_v1, "cuStreamBeginCapture", old_abi::pfn_cuStreamBeginCapture_v10000)                   \
  X(cuStreamBeginCapture_v1_ptsz, "cuStreamBeginCapture_ptsz", old_abi::pfn_cuStreamBeginCapture_v10000_ptsz)    \
  X(cuMemAlloc_v2, "cuMemAlloc_v2", PFN_cuMemAlloc_v3020)                                                        \
  X(cuMemAllocPitch_v2, "cuMemAllocPitch_v2", PFN_cuMemAllocPitch_v3020)                                         \
  X(cuMemFree_v2, "cuMemFree_v2", PFN_cuMemFree_v3020)                                                           \
  X(cuMemAllocHost_v2, "cuMemAllocHost_v2", PFN_cuMemAllocHost_v3020)                                            \
  X(cuMemHostAlloc, "cuMemHostAlloc", PFN_cuMemHostAlloc_v2020)                                                  \
  X(cuMemFreeHost, "cuMemFreeHost", PFN_cuMemFreeHost_v2000)                                                     \
  X(cuMemHostGetDevicePointer_v2, "cuMemHostGetDevicePointer_v2", PFN_cuMemHostGetDevicePointer_v3020)           \
  X(cuMemHostGetFlags, "cuMemHostGetFlags", PFN_cuMemHostGetFlags_v2030)                                         \
  X(cuMemGetInfo_v2, "cuMemGetInfo_v2", PFN_cuMemGetInfo_v3020)                                                  \
  X(cuMemAllocManaged, "cuMemAllocManaged", PFN_cuMemAllocManaged_v6000)                                         \
  X(cuMemAllocAsync, "cuMemAllocAsync", PFN_cuMemAllocAsync_v11020)                                              \
  X(cuMemAllocAsync_ptsz, "cuMemAllocAsync_ptsz", PFN_cuMemAllocAsync_v11020_ptsz)                               \
  X(cuMemFreeAsync, "cuMemFreeAsync", PFN_cuMemFreeAsync_v11020)                                                 \
  X(cuMemFreeAsync_ptsz, "cuMemFreeAsync_ptsz", PFN_cuMemFreeAsync_v11020_ptsz)                                  \
  X(cuMemCreate, "cuMemCreate", PFN_cuMemCreate_v10020)                                                          \
  X(cuMemRelease, "cuMemRelease", PFN_cuMemRelease_v10020)                                                       \
  X(cuIpcGetMemHandle, "cuIpcGetMemHandle", PFN_cuIpcGetMemHandle_v4010)                                         \
  X(cuIpcOpenMemHandle_v2, "cuIpcOpenMemHandle_v2", PFN_cuIpcOpenMemHandle_v11000)                               \
  X(cuIpcCloseMemHandle, "cuIpcCloseMemHandle", PFN_cuIpcCloseMemHandle_v4010)                                   \
  X(cuStreamCreate, "cuStreamCreate", PFN_cuStreamCreate_v2000)                                                  \
  X(cuStreamCreateWithPriority, "cuStreamCreateWithPriority", PFN_cuStreamCreateWithPriority_v5050)              \
  X(cuStreamDestroy_v2, "cuStreamDestroy_v2", PFN_cuStreamDestroy_v4000)                                         \
  X(cuCtxCreate_v2, "cuCtxCreate_v2", PFN_cuCtxCreate_v3020)                                                     \
  X(cuCtxCreate_v3, "cuCtxCreate_v3", PFN_cuCtxCreate_v11040)                                                    \
  X(cuCtxCreate_v4, "cuCtxCreate_v4", PFN_cuCtxCreate_v12050)                                                    \
  X(cuCtxDestroy_v2, "cuCtxDestroy_v2", PFN_cuCtxDestroy_v4000)                                                  \
  X(cuDevicePrimaryCtxRelease_v2, "cuDevicePrimaryCtxRelease_v2", PFN_cuDevicePrimaryCtxRelease_v11000)          \
  X(cuDevicePrimaryCtxReset_v2, "cuDevicePrimaryCtxReset_v2", PFN_cuDevicePrimaryCtxReset_v11000)                \
  X(cuStreamBeginCapture_v2, "cuStreamBeginCapture_v2", PFN_cuStreamBeginCapture_v10010)                         \
  X(cuStreamBeginCapture_v2_ptsz, "cuStreamBeginCapture_v2_ptsz", PFN_cuStreamBeginCapture_v10010_ptsz)          \
  X(cuStreamEndCapture, "cuStreamEndCapture", PFN_cuStreamEndCapture_v10000)                                     \
  X(cuStreamEndCapture_ptsz, "cuStreamEndCapture_ptsz", PFN_cuStreamEndCapture_v10000_ptsz)                      \
  X(cuGetProcAddress_v1, "cuGetProcAddress", PFN_cuGetProcAddress_v11030)                                        \
  X(cuGetProcAddress_v2, "cuGetProcAddress_v2", PFN_cuGetProcAddress_v12000)                                     \
  /* not hooked; what the pool needs */                                                                          \
  X(cuCtxGetCurrent, "cuCtxGetCurrent", PFN_cuCtxGetCurrent_v4000)                                               \
  X(cuCtxPushCurrent_v2, "cuCtxPushCurrent_v2", PFN_cuCtxPushCurrent_v4000)                                      \
  X(cuCtxPopCurrent_v2, "cuCtxPopCurrent_v2", PFN_cuCtxPopCurrent_v4000)                                         \
  X(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", PFN_cuDevicePrimaryCtxRetain_v7000)                    \
  X(cuDevicePrimaryCtxGetState, "cuDevicePrimaryCtxGetState", PFN_cuDevicePrimaryCtxGetState_v7000)              \
  X(cuCtxGetDevice, "cuCtxGetDevice", PFN_cuCtxGetDevice_v2000)                                                  \
  X(cuCtxSynchronize, "cuCtxSynchronize", PFN_cuCtxSynchronize_v2000)                                            \
  X(cuStreamGetId, "cuStreamGetId", PFN_cuStreamGetId_v12000)                                                    \
  X(cuStreamWaitEvent, "cuStreamWaitEvent", PFN_cuStreamWaitEvent_v3020)                                         \
  X(cuStreamIsCapturing, "cuStreamIsCapturing", PFN_cuStreamIsCapturing_v10000)                                  \
  X(cuStreamWriteValue64_v2, "cuStreamWriteValue64_v2", PFN_cuStreamWriteValue64_v11070)                         \
  X(cuEventCreate, "cuEventCreate", PFN_cuEventCreate_v2000)                                                     \
  X(cuEventRecord, "cuEventRecord", PFN_cuEventRecord_v2000)                                                     \
  X(cuEventQuery, "cuEventQuery", PFN_cuEventQuery_v2000)                                                        \
  X(cuEventSynchronize, "cuEventSynchronize", PFN_cuEventSynchronize_v2000)                                      \
  X(cuEventDestroy_v2, "cuEventDestroy_v2", PFN_cuEventDestroy_v4000)                                            \
  X(cuMemHostRegister_v2, "cuMemHostRegister_v2", PFN_cuMemHostRegister_v6050)                                   \
  X(cuMemHostUnregister, "cuMemHostUnregister", PFN_cuMemHostUnregister_v4000)                                   \
  X(cuDeviceGetUuid_v2, "cuDeviceGetUuid_v2", PFN_cuDeviceGetUuid_v11040)                                        \
  X(cuPointerGetAttribute, "cuPointerGetAttribute", PFN_cuPointerGetAttribute_v4000)                             \
  X(cuDeviceGetCount, "cuDeviceGetCount", PFN_cuDeviceGetCount_v2000)                                            \
  X(cuDeviceGet, "cuDeviceGet", PFN_cuDeviceGet_v2000)                                                           \
  X(cuMemImportFromShareableHandle, "cuMemImportFromShareableHandle", PFN_cuMemImportFromShareableHandle_v10020) \
  X(cuMemAddressReserve, "cuMemAddressReserve", PFN_cuMemAddressReserve_v10020)                                  \
  X(cuMemAddressFree, "cuMemAddressFree", PFN_cuMemAddressFree_v10020)                                           \
  X(cuMemMap, "cuMemMap", PFN_cuMemMap_v10020)                                                                   \
  X(cuMemUnmap, "cuMemUnmap", PFN_cuMemUnmap_v10020)                                                             \
  X(cuMemSetAccess, "cuMemSetAccess", PFN_cuMemSetAccess_v10020)                                                 \
  X(cuMemRetainAllocationHandle, "cuMemRetainAllocationHandle", PFN_cuMemRetainAllocationHandle_v11000)

struct real_driver {
#define POOLSHIM_REAL_DRIVER_MEMBER(member, name, pfn) pfn member;
  POOLSHIM_REAL_DRIVER_ENTRIES(POOLSHIM_REAL_DRIVER_MEMBER)
#undef POOLSHIM_REAL_DRIVER_MEMBER
  void* handle;  // libcuda.so.1 (never closed); null when the process has no driver
  bool loaded;   // false: every entry is the stub

  // The table, resolved on first use (dlopen of libcuda.so.1: RTLD_NOLOAD first, so a process
  // that already holds the driver gets that one). Never null; lock-free; a thread that reaches it
  // while it resolves the table itself (the driver's constructors calling back) gets the stubs.
  static const real_driver& get() noexcept;

  // The table if it is resolved, else null; never resolves (for code that must stay inert).
  static const real_driver* peek() noexcept;
};

inline const real_driver& real() noexcept { return real_driver::get(); }

// The real dlsym (glibc's, found with dlvsym: GLIBC_2.34, else GLIBC_2.2.5). Every dlsym the shim
// itself makes goes through this pointer: a plain call to `dlsym` would land in our own hook.
using dlsym_fn = void* (*)(void*, const char*);
dlsym_fn real_dlsym() noexcept;

}  // namespace poolshim

// The one list of hooked driver entry points, one row per ABI variant we wrap. It drives the hook
// ids (counters), the names poolshim_hook_name reports, dlsym's answers and the table that maps the
// driver's own pointers onto our wrappers. hooks_driver.cpp defines one wrapper per row.
#pragma once

#include <cstddef>

// POOLSHIM_DRIVER_HOOKS(X): X(id, exported function, base name, cudaVersion that introduced this
// ABI, per-thread-default-stream variant). cudaTypedefs.h (PFN_<base>_v<version>[_ptsz]) is the
// source of the versions; the base name is what cuGetProcAddress is asked for. Use the function
// column only stringified (#fn), except where cuda.h is included with __CUDA_API_VERSION_INTERNAL:
// elsewhere cuda.h renames some of these names (cuGetProcAddress -> cuGetProcAddress_v2).
// EVERY ABI variant of every hooked base name has a row: a caller that asks for an old cudaVersion
// (NVIDIA's cudart 13 asks cuDevicePrimaryCtxRelease@7000, cuIpcOpenMemHandle@4010, ...) gets the
// old export from the driver, and only a row maps that pointer onto a wrapper. The variants are
// those of cudaTypedefs.h (the old ones inside #if defined(__CUDA_API_VERSION_INTERNAL)) and the
// exports of the toolkit's stubs/libcuda.so; tests/integration/lookup_replay checks the table.
#define POOLSHIM_DRIVER_HOOKS(X)                                                                         \
  X(mem_alloc_v1, cuMemAlloc, "cuMemAlloc", 2000, false)                                                 \
  X(mem_alloc, cuMemAlloc_v2, "cuMemAlloc", 3020, false)                                                 \
  X(mem_alloc_pitch_v1, cuMemAllocPitch, "cuMemAllocPitch", 2000, false)                                 \
  X(mem_alloc_pitch, cuMemAllocPitch_v2, "cuMemAllocPitch", 3020, false)                                 \
  X(mem_free_v1, cuMemFree, "cuMemFree", 2000, false)                                                    \
  X(mem_free, cuMemFree_v2, "cuMemFree", 3020, false)                                                    \
  X(mem_alloc_host_v1, cuMemAllocHost, "cuMemAllocHost", 2000, false)                                    \
  X(mem_alloc_host, cuMemAllocHost_v2, "cuMemAllocHost", 3020, false)                                    \
  X(mem_host_alloc, cuMemHostAlloc, "cuMemHostAlloc", 2020, false)                                       \
  X(mem_free_host, cuMemFreeHost, "cuMemFreeHost", 2000, false)                                          \
  X(mem_host_get_device_pointer_v1, cuMemHostGetDevicePointer, "cuMemHostGetDevicePointer", 2020, false) \
  X(mem_host_get_device_pointer, cuMemHostGetDevicePointer_v2, "cuMemHostGetDevicePointer", 3020, false) \
  X(mem_host_get_flags, cuMemHostGetFlags, "cuMemHostGetFlags", 2030, false)                             \
  X(mem_get_info_v1, cuMemGetInfo, "cuMemGetInfo", 2000, false)                                          \
  X(mem_get_info, cuMemGetInfo_v2, "cuMemGetInfo", 3020, false)                                          \
  X(mem_alloc_managed, cuMemAllocManaged, "cuMemAllocManaged", 6000, false)                              \
  X(mem_alloc_async, cuMemAllocAsync, "cuMemAllocAsync", 11020, false)                                   \
  X(mem_alloc_async_ptsz, cuMemAllocAsync_ptsz, "cuMemAllocAsync", 11020, true)                          \
  X(mem_free_async, cuMemFreeAsync, "cuMemFreeAsync", 11020, false)                                      \
  X(mem_free_async_ptsz, cuMemFreeAsync_ptsz, "cuMemFreeAsync", 11020, true)                             \
  X(mem_create, cuMemCreate, "cuMemCreate", 10020, false)                                                \
  X(mem_release, cuMemRelease, "cuMemRelease", 10020, false)                                             \
  X(ipc_get_mem_handle, cuIpcGetMemHandle, "cuIpcGetMemHandle", 4010, false)                             \
  X(ipc_open_mem_handle_v1, cuIpcOpenMemHandle, "cuIpcOpenMemHandle", 4010, false)                       \
  X(ipc_open_mem_handle, cuIpcOpenMemHandle_v2, "cuIpcOpenMemHandle", 11000, false)                      \
  X(ipc_close_mem_handle, cuIpcCloseMemHandle, "cuIpcCloseMemHandle", 4010, false)                       \
  X(stream_create, cuStreamCreate, "cuStreamCreate", 2000, false)                                        \
  X(stream_create_with_priority, cuStreamCreateWithPriority, "cuStreamCreateWithPriority", 5050, false)  \
  X(stream_destroy_v1, cuStreamDestroy, "cuStreamDestroy", 2000, false)                                  \
  X(stream_destroy, cuStreamDestroy_v2, "cuStreamDestroy", 4000, false)                                  \
  X(ctx_create_v1, cuCtxCreate, "cuCtxCreate", 2000, false)                                              \
  X(ctx_create_v2, cuCtxCreate_v2, "cuCtxCreate", 3020, false)                                           \
  X(ctx_create_v3, cuCtxCreate_v3, "cuCtxCreate", 11040, false)                                          \
  X(ctx_create_v4, cuCtxCreate_v4, "cuCtxCreate", 12050, false)                                          \
  X(ctx_destroy_v1, cuCtxDestroy, "cuCtxDestroy", 2000, false)                                           \
  X(ctx_destroy, cuCtxDestroy_v2, "cuCtxDestroy", 4000, false)                                           \
  X(primary_ctx_retain, cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", 7000, false)               \
  X(primary_ctx_release_v1, cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease", 7000, false)         \
  X(primary_ctx_release, cuDevicePrimaryCtxRelease_v2, "cuDevicePrimaryCtxRelease", 11000, false)        \
  X(primary_ctx_reset_v1, cuDevicePrimaryCtxReset, "cuDevicePrimaryCtxReset", 7000, false)               \
  X(primary_ctx_reset, cuDevicePrimaryCtxReset_v2, "cuDevicePrimaryCtxReset", 11000, false)              \
  X(stream_begin_capture_v1, cuStreamBeginCapture, "cuStreamBeginCapture", 10000, false)                 \
  X(stream_begin_capture, cuStreamBeginCapture_v2, "cuStreamBeginCapture", 10010, false)                 \
  X(stream_begin_capture_v1_ptsz, cuStreamBeginCapture_ptsz, "cuStreamBeginCapture", 10000, true)        \
  X(stream_begin_capture_ptsz, cuStreamBeginCapture_v2_ptsz, "cuStreamBeginCapture", 10010, true)        \
  X(stream_end_capture, cuStreamEndCapture, "cuStreamEndCapture", 10000, false)                          \
  X(stream_end_capture_ptsz, cuStreamEndCapture_ptsz, "cuStreamEndCapture", 10000, true)                 \
  X(get_proc_address_v1, cuGetProcAddress, "cuGetProcAddress", 11030, false)                             \
  X(get_proc_address_v2, cuGetProcAddress_v2, "cuGetProcAddress", 12000, false)

namespace poolshim::intercept {

enum class hook_id : unsigned {
#define POOLSHIM_HOOK_ENUM(id, fn, base, version, per_thread) id,
  POOLSHIM_DRIVER_HOOKS(POOLSHIM_HOOK_ENUM)
#undef POOLSHIM_HOOK_ENUM
};

struct hook_info {
  const char* export_name;
  const char* base_name;
  int version;
  bool per_thread;
};

inline constexpr hook_info k_hooks[] = {
#define POOLSHIM_HOOK_INFO(id, fn, base, version, per_thread) {#fn, base, version, per_thread},
    POOLSHIM_DRIVER_HOOKS(POOLSHIM_HOOK_INFO)
#undef POOLSHIM_HOOK_INFO
};

inline constexpr std::size_t k_hook_count = sizeof(k_hooks) / sizeof(k_hooks[0]);

// Our wrapper for each row, by hook id: defined by the front end (hooks_driver.cpp) in
// libpoolshim.so, and by a fake in unit tests that exercise the lookup table.
extern void* const k_hook_wrappers[k_hook_count];

// The row whose export name is `name`, or -1. Safe inside dlsym (no allocation, no lock).
int find_hook_by_export(const char* name) noexcept;

// True when some row has `name` as its base name (cuGetProcAddress's view).
bool is_hooked_base_name(const char* name) noexcept;

}  // namespace poolshim::intercept

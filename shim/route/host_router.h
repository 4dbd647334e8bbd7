// Routes the driver's pinned-host calls to a pinned host pool per context (POOLSHIM_MODE=pool):
// cuMemAllocHost_v2/cuMemHostAlloc (Portable and Mapped honoured: slabs are registered
// PORTABLE|DEVICEMAP; WriteCombined goes to the driver), cuMemFreeHost of a pooled block (after the
// free synchronisation of POOLSHIM_FREE_SYNC), and the device-pointer and flag queries on pooled
// pointers. Each function returns false when the call is not the pool's business, and the hook
// then forwards it unchanged (bad arguments, no current context, memory the pool does not own).
#pragma once

#include <cuda.h>

#include <cstddef>

#include "pool/host_pool.h"

namespace poolshim::host_router {

// cuMemHostAlloc (cuMemAllocHost_v2: flags 0): true with *result set when the pool answered.
bool try_alloc(void** pp, std::size_t bytes, unsigned flags, CUresult* result) noexcept;
// cuMemFreeHost: true with *result set when p lies in a pooled slab.
bool try_free(void* p, CUresult* result) noexcept;
// cuMemHostGetDevicePointer_v2 / cuMemHostGetFlags for a pointer in a pooled slab.
bool try_get_device_pointer(CUdeviceptr* dptr, void* p, unsigned flags, CUresult* result) noexcept;
bool try_get_flags(unsigned* flags, void* p, CUresult* result) noexcept;

// Idle memory flowing back (issue #17): bytes of the pinned slabs nothing is handed out of; every idle
// slab back to its source (the daemon, or the driver), never one with a live or deferred block
// (returns the bytes; pinned slabs go whole, so `bytes` only says whether to: 0 releases nothing);
// one step of the unasked release: at a window's end, the slabs of a pool that served no request
// through the whole window go back.
std::size_t idle_bytes() noexcept;
std::size_t trim(std::size_t bytes) noexcept;
std::size_t idle_tick(bool window_end) noexcept;

// Every pool's figures added up (peaks too: the sum of each pool's peak), from the pools' one list.
// bytes_in_use leaves out blocks whose free is deferred (they are free to the program).
using totals = pool::host_pool_stats;
totals sum_of_pools() noexcept;

}  // namespace poolshim::host_router

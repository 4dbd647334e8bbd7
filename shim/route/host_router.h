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

// Every pool's figures added up (peaks too: the sum of each pool's peak), from the pools' one list.
// bytes_in_use leaves out blocks whose free is deferred (they are free to the program).
using totals = pool::host_pool_stats;
totals sum_of_pools() noexcept;

}  // namespace poolshim::host_router

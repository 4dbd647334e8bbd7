// Routes the driver's device-allocation calls to a caching pool per context (POOLSHIM_MODE=pool):
// cuMemAlloc_v2 is served by the current context's pool, cuMemFree_v2 of a pooled pointer returns
// the block (after the free synchronisation POOLSHIM_FREE_SYNC asks for), everything the pool does
// not own goes to the real driver. Each function returns false when the call is not the pool's
// business, and the hook then forwards it unchanged.
#pragma once

#include <cuda.h>

#include <cstddef>

#include "pool/device_pool.h"
#include "source/observed_segment_adaptor.h"

namespace poolshim::device_router {

// cuMemAlloc_v2: true with *result set when the pool answered (success or CUDA's error).
// *device (when given) gets the pool's device ordinal when the pool served it, saving the
// call-site statistics a cuCtxGetDevice.
bool try_alloc(CUdeviceptr* dptr, std::size_t bytes, CUresult* result, int* device = nullptr) noexcept;
// cuMemFree_v2: true with *result set when dptr is (or lies inside) pooled memory.
bool try_free(CUdeviceptr dptr, CUresult* result) noexcept;
// cuIpcGetMemHandle: true when dptr lies in pooled memory that is not a whole segment (a small
// block, or inside one): a real handle would open the whole segment, i.e. the wrong bytes, so
// such a block gets a poolshim handle (route/ipc_router.h) or, with no daemon to resolve one, a
// refusal. A large block is its segment: real handle.
bool refuses_ipc(CUdeviceptr dptr) noexcept;
// A live small block starting at dptr (what poolshim IPC handles export): its segment's base and
// its size. False for anything else (large blocks keep real handles; interior pointers refuse).
bool small_block(CUdeviceptr dptr, CUdeviceptr* segment_base, std::size_t* bytes) noexcept;
// Bytes the pools of the current context's device hold idle (reserved, not handed out).
std::size_t idle_bytes_of_current_device() noexcept;
// A context is being destroyed or reset: its memory goes with it, so its pool is forgotten. Returns
// once no thread is inside the pool's maintenance (a trim of the idle thread, poolshimd's request,
// a preallocation) and none will enter: called before a reset, nothing then frees the context's
// memory after it.
void forget_context(CUcontext ctx) noexcept;
// Around a call that may destroy the context (cuCtxDestroy, the last primary release): trims and
// preallocation stop (pause waits for those in flight), then forget_context if it was destroyed,
// else resume. Pauses count: one stays until its own resume (two threads releasing a primary
// context at once), and forget_context ends them all.
void pause_maintenance(CUcontext ctx) noexcept;
void resume_maintenance(CUcontext ctx) noexcept;

// Idle memory flowing back (issue #17). Bytes of every pool's wholly free segments, less each
// pool's preallocation: what a request of poolshimd's can take (trim with keep_preallocated), and
// so what the idle report says (the daemon must not count on memory that cannot come back).
std::size_t reclaimable_bytes() noexcept;
// Returns idle memory of the pools to their sources until at least `bytes` went back (SIZE_MAX:
// everything idle): whole free segments only (device_pool::trim). keep_preallocated: each pool
// keeps what POOLSHIM_PREALLOCATE or poolshim_preallocate gave it (the daemon's requests and the
// idle release); otherwise that is forgotten too (poolshim_trim, poolshim_release_all).
std::size_t trim(std::size_t bytes, bool keep_preallocated) noexcept;
// One step of the unasked idle release (POOLSHIM_IDLE_RELEASE_MS), taken k_idle_samples times per
// release time: each pool's idle bytes (above what was preallocated) are sampled, and what stayed
// idle in every sample of the last release time goes back. Returns the bytes.
inline constexpr unsigned k_idle_samples = 8;
std::size_t idle_tick() noexcept;
// The pool of `device`'s primary context (retained; made current for the call) takes `bytes` of
// small segments it keeps; returns the bytes taken (0: no such device, or no memory).
std::size_t preallocate(int device, std::size_t bytes) noexcept;
// Who hears of the segments the pools made from now on take from their source and give back (the
// call-site statistics' segment events); set when the driver is first resolved, before any pool.
// nullptr: nobody (pools then use their source directly).
void set_segment_listener(segment_listener listener) noexcept;

// Every pool's figures added up (peaks too: the sum of each pool's peak), from the pools' one list.
using totals = pool::pool_stats;
totals sum_of_pools() noexcept;

}  // namespace poolshim::device_router

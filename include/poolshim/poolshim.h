/* poolshim public C API.
 * Version of the product; the allocator entry points that a program may call on purpose (instead
 * of through interception) are added here as they land. C-compatible, no C++ in this header. */
#ifndef POOLSHIM_POOLSHIM_H
#define POOLSHIM_POOLSHIM_H

#define POOLSHIM_VERSION_MAJOR 0
#define POOLSHIM_VERSION_MINOR 1
#define POOLSHIM_VERSION_PATCH 0

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What the preloaded shim saw, for tests, tools and curious users. Versioned by growth: fields are
 * only ever appended, `version` says which layout the shim filled, and poolshim_get_counters copies
 * no more than the caller's size, so an old caller reads a prefix of a newer shim's figures.
 * Reach it without linking the shim: dlsym(RTLD_DEFAULT, "poolshim_get_counters") (null when the
 * shim is not loaded). All figures are since process start (a fork child starts from zero); in
 * POOLSHIM_MODE=off nothing is tracked and every figure stays zero. */
#define POOLSHIM_COUNTERS_VERSION 4
#define POOLSHIM_MAX_HOOKS 64

struct poolshim_counters {
  uint32_t version;    /* POOLSHIM_COUNTERS_VERSION of the shim that filled the struct */
  uint32_t hook_count; /* entries of hook_calls in use; poolshim_hook_name(i) names entry i */
  uint32_t mode;       /* POOLSHIM_MODE: 0 pool, 1 observe, 2 off */
  uint32_t reserved;
  /* Successful allocations (count and bytes asked for) and frees, by kind. */
  uint64_t device_allocs; /* cuMemAlloc_v2, cuMemAllocPitch_v2 (cudaMalloc, cudaMallocPitch) */
  uint64_t device_alloc_bytes;
  uint64_t device_frees; /* cuMemFree_v2 (cudaFree), managed memory included */
  uint64_t host_allocs;  /* cuMemAllocHost_v2, cuMemHostAlloc (cudaMallocHost, cudaHostAlloc) */
  uint64_t host_alloc_bytes;
  uint64_t host_frees; /* cuMemFreeHost (cudaFreeHost) */
  uint64_t managed_allocs;
  uint64_t managed_alloc_bytes;
  uint64_t async_allocs; /* cuMemAllocAsync[_ptsz] (cudaMallocAsync) */
  uint64_t async_alloc_bytes;
  uint64_t async_frees;
  uint64_t vmm_creates; /* cuMemCreate / cuMemRelease */
  uint64_t vmm_create_bytes;
  uint64_t vmm_releases;
  uint64_t ipc_exports; /* cuIpcGetMemHandle / cuIpcOpenMemHandle_v2 / cuIpcCloseMemHandle */
  uint64_t ipc_opens;
  uint64_t ipc_closes;
  uint64_t streams_created; /* tracked, not changed: streams, contexts and captures */
  uint64_t streams_destroyed;
  uint64_t contexts_created;
  uint64_t contexts_destroyed;
  uint64_t captures_begun;
  uint64_t captures_ended;
  uint64_t lookups;         /* successful cuGetProcAddress[_v2] lookups that returned a pointer */
  uint64_t lookups_wrapped; /* ... answered with a poolshim wrapper */
  uint64_t lookups_unknown; /* ... of a hooked name whose pointer the shim did not know (passed through) */
  uint64_t hook_calls[POOLSHIM_MAX_HOOKS]; /* calls per hooked entry point (ABI variant) */
  /* Version 2: the device pools (POOLSHIM_MODE=pool), summed over contexts. */
  uint64_t pool_requests;       /* allocations that reached a pool */
  uint64_t pool_hits;           /* ... served from memory the pool already held */
  uint64_t pool_bytes_in_use;   /* bytes of live pooled blocks (after rounding) */
  uint64_t pool_bytes_reserved; /* bytes of segments the pools hold from the driver */
  uint64_t pool_peak_in_use;
  uint64_t pool_peak_reserved;
  uint64_t pool_segments;
  /* Version 3: the pinned host pools (POOLSHIM_MODE=pool), summed over contexts. */
  uint64_t host_pool_requests;       /* cuMemAllocHost_v2 / cuMemHostAlloc that reached a pool */
  uint64_t host_pool_hits;           /* ... served from a slab the pool already held */
  uint64_t host_pool_bytes_in_use;   /* bytes of live pooled pinned blocks (after rounding) */
  uint64_t host_pool_bytes_reserved; /* bytes of pinned slabs held */
  uint64_t host_pool_peak_in_use;
  uint64_t host_pool_peak_reserved;
  uint64_t host_pool_slabs;
  /* Version 4: the fence tracker (POOLSHIM_FREE_SYNC=fence; all zero in the other modes). */
  uint64_t fences_issued;    /* fences recorded (one per batch of frees, or per time slice on a miss) */
  uint64_t fences_completed; /* ... seen to have passed */
  uint64_t fences_deferred;  /* fences that were due while a stream capture was active */
  uint64_t fence_waits;      /* blocking waits for a fence (out-of-memory path) */
  uint64_t streams_tracked;  /* live non-blocking streams a fence covers now */
  /* Version 4 too: poolshimd (pinned slabs leased from the daemon). */
  uint64_t daemon_slabs_leased;   /* slabs the daemon lent this process */
  uint64_t daemon_slabs_returned; /* ... and this process gave back */
  uint64_t daemon_fallbacks;      /* slabs made locally because no trusted daemon could lend one */
  uint64_t daemon_redeclared;     /* slabs re-declared to a daemon after a reconnect */
  uint64_t daemon_connects;       /* connections to a trusted daemon */
  uint64_t daemon_refusals;       /* daemons not trusted (socket directory or peer) */
  uint64_t daemon_device_leases;  /* device segments lent by the daemon (POOLSHIM_DEVICE_SOURCE=daemon) */
};

/* Copies min(size, sizeof(struct poolshim_counters)) bytes of the current figures to `out` and
 * returns sizeof(struct poolshim_counters) of this shim. Safe from any thread, at any time. */
size_t poolshim_get_counters(struct poolshim_counters* out, size_t size);
typedef size_t (*poolshim_get_counters_fn)(struct poolshim_counters*, size_t);

/* The driver export that hook_calls[index] counts ("cuMemAlloc_v2", "cuMemAllocAsync_ptsz", ...),
 * or NULL past hook_count. */
const char* poolshim_hook_name(unsigned index);
typedef const char* (*poolshim_hook_name_fn)(unsigned);

#ifdef __cplusplus
}
#endif

#endif /* POOLSHIM_POOLSHIM_H */

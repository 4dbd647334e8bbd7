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

/* The fields of struct poolshim_counters, listed once (mimalloc's model). This table generates the
 * struct below and, inside the shim, its atomic counters, the fence tracker's and the daemon client's
 * figures, the snapshot, the reset in a fork child and the POOLSHIM_SUMMARY line: a row added here is
 * counted, copied, reset and shown with no other list to keep in step. Rows are only ever appended.
 * Each row's macro is its group, i.e. what fills the field:
 *   META         describes the struct (uint32_t each), set by the snapshot;
 *   HOOKS        calls per hooked entry point (ABI variant), uint64_t[POOLSHIM_MAX_HOOKS];
 *   SEEN         what the hooks saw, counted by the shim as it happens;
 *   DEVICE_POOL, HOST_POOL  a figure of each pool, summed over the pools of every context (peaks too:
 *                such a peak is the sum of each pool's peak, an upper bound of the process's peak);
 *   FENCE        the fence tracker (POOLSHIM_FREE_SYNC=fence; all zero in the other modes);
 *   DAEMON       the client of poolshimd (what was leased from the daemon, or made locally instead).
 * Columns, (field, from, slot, line_name, shown):
 *   field        the member of struct poolshim_counters;
 *   from         the member of the group's own figures that fills it ("-": none, or the same name);
 *   slot, line_name, shown: the field's place (1, 2, ...) and name in the POOLSHIM_SUMMARY line, which
 *                tools and tests parse; shown is always, if_nonzero, mode_name (the mode's name, not
 *                its number) or never (slot 0, name -). An array shows its sum. */
/* clang-format off */
#define POOLSHIM_COUNTER_TABLE(META, HOOKS, SEEN, DEVICE_POOL, HOST_POOL, FENCE, DAEMON)            \
  /* group     field                     from              slot line_name                shown */   \
  /* POOLSHIM_COUNTERS_VERSION of the shim that filled the struct */                                \
  META(        version,                  -,                0,  -,                       never)      \
  /* entries of hook_calls in use; poolshim_hook_name(i) names entry i */                           \
  META(        hook_count,               -,                0,  -,                       never)      \
  /* POOLSHIM_MODE: 0 pool, 1 observe, 2 off */                                                     \
  META(        mode,                     -,                1,  mode,                    mode_name)  \
  META(        reserved,                 -,                0,  -,                       never)      \
  /* Successful allocations (count and bytes asked for) and frees, by kind. */                      \
  /* cuMemAlloc_v2, cuMemAllocPitch_v2 (cudaMalloc, cudaMallocPitch) */                             \
  SEEN(        device_allocs,            -,                3,  device_allocs,           always)     \
  SEEN(        device_alloc_bytes,       -,                4,  device_bytes,            always)     \
  /* cuMemFree_v2 (cudaFree), managed memory included */                                            \
  SEEN(        device_frees,             -,                5,  device_frees,            always)     \
  /* cuMemAllocHost_v2, cuMemHostAlloc (cudaMallocHost, cudaHostAlloc) */                           \
  SEEN(        host_allocs,              -,                6,  host_allocs,             always)     \
  SEEN(        host_alloc_bytes,         -,                7,  host_bytes,              always)     \
  /* cuMemFreeHost (cudaFreeHost) */                                                                \
  SEEN(        host_frees,               -,                8,  host_frees,              always)     \
  SEEN(        managed_allocs,           -,                9,  managed_allocs,          always)     \
  SEEN(        managed_alloc_bytes,      -,                0,  -,                       never)      \
  /* cuMemAllocAsync[_ptsz] (cudaMallocAsync) */                                                    \
  SEEN(        async_allocs,             -,                10, async_allocs,            always)     \
  SEEN(        async_alloc_bytes,        -,                0,  -,                       never)      \
  SEEN(        async_frees,              -,                0,  -,                       never)      \
  /* cuMemCreate / cuMemRelease */                                                                  \
  SEEN(        vmm_creates,              -,                11, vmm_creates,             always)     \
  SEEN(        vmm_create_bytes,         -,                0,  -,                       never)      \
  SEEN(        vmm_releases,             -,                0,  -,                       never)      \
  /* cuIpcGetMemHandle / cuIpcOpenMemHandle_v2 / cuIpcCloseMemHandle */                             \
  SEEN(        ipc_exports,              -,                0,  -,                       never)      \
  SEEN(        ipc_opens,                -,                0,  -,                       never)      \
  SEEN(        ipc_closes,               -,                0,  -,                       never)      \
  /* tracked, not changed: streams, contexts and captures */                                        \
  SEEN(        streams_created,          -,                0,  -,                       never)      \
  SEEN(        streams_destroyed,        -,                0,  -,                       never)      \
  SEEN(        contexts_created,         -,                0,  -,                       never)      \
  SEEN(        contexts_destroyed,       -,                0,  -,                       never)      \
  SEEN(        captures_begun,           -,                0,  -,                       never)      \
  SEEN(        captures_ended,           -,                0,  -,                       never)      \
  /* successful cuGetProcAddress[_v2] lookups that returned a pointer */                            \
  SEEN(        lookups,                  -,                0,  -,                       never)      \
  /* ... answered with a poolshim wrapper */                                                        \
  SEEN(        lookups_wrapped,          -,                16, lookups_wrapped,         always)     \
  /* ... of a hooked name whose pointer the shim did not know (passed through) */                   \
  SEEN(        lookups_unknown,          -,                17, lookups_unknown,         always)     \
  /* calls per hooked entry point (ABI variant); the line shows their sum */                        \
  HOOKS(       hook_calls,               -,                2,  hook_calls,              always)     \
  /* Version 2: the device pools (POOLSHIM_MODE=pool), summed over contexts. */                     \
  /* allocations that reached a pool */                                                             \
  DEVICE_POOL( pool_requests,            requests,         12, pool_requests,           always)     \
  /* ... served from memory the pool already held */                                                \
  DEVICE_POOL( pool_hits,                pool_hits,        13, pool_hits,               always)     \
  /* bytes of live pooled blocks (after rounding) */                                                \
  DEVICE_POOL( pool_bytes_in_use,        bytes_in_use,     0,  -,                       never)      \
  /* bytes of segments the pools hold from the driver */                                            \
  DEVICE_POOL( pool_bytes_reserved,      bytes_reserved,   0,  -,                       never)      \
  DEVICE_POOL( pool_peak_in_use,         peak_in_use,      14, pool_peak_in_use,        always)     \
  DEVICE_POOL( pool_peak_reserved,       peak_reserved,    15, pool_peak_reserved,      always)     \
  DEVICE_POOL( pool_segments,            segments,         0,  -,                       never)      \
  /* Version 3: the pinned host pools (POOLSHIM_MODE=pool), summed over contexts. */                \
  /* cuMemAllocHost_v2 / cuMemHostAlloc that reached a pool */                                      \
  HOST_POOL(   host_pool_requests,       requests,         0,  -,                       never)      \
  /* ... served from a slab the pool already held */                                                \
  HOST_POOL(   host_pool_hits,           pool_hits,        18, host_pool_hits,          always)     \
  /* bytes of live pooled pinned blocks (after rounding) */                                         \
  HOST_POOL(   host_pool_bytes_in_use,   bytes_in_use,     0,  -,                       never)      \
  /* bytes of pinned slabs held */                                                                  \
  HOST_POOL(   host_pool_bytes_reserved, bytes_reserved,   0,  -,                       never)      \
  HOST_POOL(   host_pool_peak_in_use,    peak_in_use,      19, host_pool_peak_in_use,   always)     \
  HOST_POOL(   host_pool_peak_reserved,  peak_reserved,    20, host_pool_peak_reserved, always)     \
  HOST_POOL(   host_pool_slabs,          slabs,            0,  -,                       never)      \
  /* Version 4: the fence tracker (POOLSHIM_FREE_SYNC=fence; all zero in the other modes). */       \
  /* fences recorded (one per batch of frees, or per time slice on a miss) */                       \
  FENCE(       fences_issued,            fences_issued,    21, fences,                  if_nonzero) \
  /* ... seen to have passed */                                                                     \
  FENCE(       fences_completed,         fences_completed, 0,  -,                       never)      \
  /* fences that were due while a stream capture was active */                                      \
  FENCE(       fences_deferred,          fences_deferred,  0,  -,                       never)      \
  /* blocking waits for a fence (out-of-memory path) */                                             \
  FENCE(       fence_waits,              fence_waits,      0,  -,                       never)      \
  /* live non-blocking streams a fence covers now */                                                \
  FENCE(       streams_tracked,          streams_tracked,  0,  -,                       never)      \
  /* Version 4 too: poolshimd (pinned slabs leased from the daemon). */                             \
  /* slabs the daemon lent this process */                                                          \
  DAEMON(      daemon_slabs_leased,      leases_taken,     22, daemon_slabs,            if_nonzero) \
  /* ... and this process gave back */                                                              \
  DAEMON(      daemon_slabs_returned,    leases_returned,  0,  -,                       never)      \
  /* slabs made locally because no trusted daemon could lend one */                                 \
  DAEMON(      daemon_fallbacks,         fallbacks,        0,  -,                       never)      \
  /* slabs re-declared to a daemon after a reconnect */                                             \
  DAEMON(      daemon_redeclared,        redeclared,       0,  -,                       never)      \
  /* connections to a trusted daemon */                                                             \
  DAEMON(      daemon_connects,          connects,         0,  -,                       never)      \
  /* daemons not trusted (socket directory or peer) */                                              \
  DAEMON(      daemon_refusals,          refusals,         0,  -,                       never)      \
  /* device segments lent by the daemon (POOLSHIM_DEVICE_SOURCE=daemon) */                          \
  DAEMON(      daemon_device_leases,     device_leases,    23, daemon_device_segments,  if_nonzero)
/* clang-format on */

/* Consumers pass this for the groups they do not use. */
#define POOLSHIM_COUNTER_SKIP(field, from, slot, line_name, shown)

#define POOLSHIM_COUNTER_U32(field, from, slot, line_name, shown) uint32_t field;
#define POOLSHIM_COUNTER_U64(field, from, slot, line_name, shown) uint64_t field;
#define POOLSHIM_COUNTER_HOOKS(field, from, slot, line_name, shown) uint64_t field[POOLSHIM_MAX_HOOKS];
struct poolshim_counters {
  POOLSHIM_COUNTER_TABLE(POOLSHIM_COUNTER_U32, POOLSHIM_COUNTER_HOOKS, POOLSHIM_COUNTER_U64, POOLSHIM_COUNTER_U64,
                         POOLSHIM_COUNTER_U64, POOLSHIM_COUNTER_U64, POOLSHIM_COUNTER_U64)
};
#undef POOLSHIM_COUNTER_U32
#undef POOLSHIM_COUNTER_U64
#undef POOLSHIM_COUNTER_HOOKS

/* Copies min(size, sizeof(struct poolshim_counters)) bytes of the current figures to `out` and
 * returns sizeof(struct poolshim_counters) of this shim. Safe from any thread, at any time. */
size_t poolshim_get_counters(struct poolshim_counters* out, size_t size);
typedef size_t (*poolshim_get_counters_fn)(struct poolshim_counters*, size_t);

/* The driver export that hook_calls[index] counts ("cuMemAlloc_v2", "cuMemAllocAsync_ptsz", ...),
 * or NULL past hook_count. */
const char* poolshim_hook_name(unsigned index);
typedef const char* (*poolshim_hook_name_fn)(unsigned);

/* Idle memory, on purpose (issue #17). The pools give idle memory back by themselves (after
 * POOLSHIM_IDLE_RELEASE_MS unneeded, or when poolshimd asks for another process); these do it now.
 * Only whole free segments and slabs go back, never one holding a block in use (nor a freed block
 * whose fence has not passed, POOLSHIM_FREE_SYNC=fence); blocks in another thread's cache stay
 * until that thread next reaches the pool. Each returns bytes (0 outside POOLSHIM_MODE=pool).
 * Reach them without linking the shim through dlsym(RTLD_DEFAULT, "poolshim_trim") (null when the
 * shim is not loaded). */
/* Gives back at least `bytes` of idle memory if the pools hold that much (device first, then
 * pinned; whole segments, so possibly more); returns the bytes given back. */
size_t poolshim_trim(size_t bytes);
typedef size_t (*poolshim_trim_fn)(size_t);
/* Gives back every idle byte, preallocated memory included; returns the bytes. */
size_t poolshim_release_all(void);
typedef size_t (*poolshim_release_all_fn)(void);
/* The pool of `device` (an ordinal as the program sees it; its primary context) takes `bytes` of
 * device memory now and keeps it (as free small segments: it serves requests up to
 * POOLSHIM_SMALL_LIMIT) through idle release and the daemon's requests; returns the bytes taken. */
size_t poolshim_preallocate(int device, size_t bytes);
typedef size_t (*poolshim_preallocate_fn)(int, size_t);

#ifdef __cplusplus
}
#endif

#endif /* POOLSHIM_POOLSHIM_H */

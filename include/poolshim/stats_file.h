/* The per-process statistics file (POOLSHIM_STATS=native): one file per process under
 * POOLSHIM_STATS_DIR (default /dev/shm), named poolshim-<uid>-<pid>-<start>.stats, mode 0600, its
 * whole size reserved with posix_fallocate before use (a sparse file on a full tmpfs would raise
 * SIGBUS later), mapped shared by the shim and written in place, so it stays readable after the
 * process exits, crashes or is killed. poolshim-stats reads it; the shim never symbolises.
 *
 * Layout, version 2 (host byte order; every offset from the start of the file; every array fixed
 * at creation):
 *   header                      struct poolshim_stats_header
 *   modules[module_capacity]    struct poolshim_stats_module: what a frame address belongs to
 *   slots[slot_count]           struct poolshim_stats_slot: stack id = index + 1
 *   arena[arena_frames]         uint64 frame addresses, slots point into it
 *   sites[slot_count + 1]       struct poolshim_stats_site: counters per stack id (0: untracked)
 *   kinds[16 * 5]               struct poolshim_stats_kind: per device and kind (device, pinned,
 *                               managed, async, vmm)
 *   live[live_capacity]         struct poolshim_stats_live: live allocations (ptr 0: empty,
 *                               ptr 1: deleted), for frees and for leaks at exit
 *   shards[shard_count]         struct poolshim_stats_shard: one per thread (claimed on its first
 *                               event, folded into sites/kinds and released when it exits); a
 *                               site's or kind's figure is its shared counter PLUS every in-use
 *                               shard's entry for it (see the shard struct)
 *   events[event_capacity]      struct poolshim_stats_event: the optional bounded event ring
 *                               (POOLSHIM_STATS_EVENTS, 0 = none), oldest overwritten
 *   python[python_size bytes]   the Python code table (include/poolshim/stats_python.h) when
 *                               POOLSHIM_STATS=python, else python_size = 0
 * A frame value whose top 16 bits are POOLSHIM_STATS_PYFRAME_TAG is a Python frame (its low 48
 * bits are decoded with the Python code table), never a native address.
 * C-compatible: the tool and other readers include it. Writers use 64-bit atomic operations on the
 * counters; readers of a live file may see a counter mid-update, never a torn 64-bit value. */
#ifndef POOLSHIM_STATS_FILE_H
#define POOLSHIM_STATS_FILE_H

#include <stdint.h>

#define POOLSHIM_STATS_MAGIC "PSHSTAT"
#define POOLSHIM_STATS_VERSION 2
#define POOLSHIM_STATS_PYFRAME_TAG 0xfffeull /* top 16 bits of a Python frame value */
#define POOLSHIM_STATS_SHARD_SITES 64        /* site entries per thread shard (direct-mapped) */
#define POOLSHIM_STATS_DEVICES 16
#define POOLSHIM_STATS_KINDS 5 /* device, pinned, managed, async, vmm */

#ifdef __cplusplus
extern "C" {
#endif

struct poolshim_stats_header {
  char magic[8];                /* POOLSHIM_STATS_MAGIC, NUL-padded */
  uint32_t version;             /* POOLSHIM_STATS_VERSION */
  uint32_t header_size;         /* sizeof(struct poolshim_stats_header) */
  uint64_t file_size;
  int32_t pid;
  uint32_t uid;
  uint64_t start_ns;            /* CLOCK_REALTIME at creation */
  uint64_t end_ns;              /* CLOCK_REALTIME at a clean exit, 0 while running or after a kill */
  char exe[256];                /* /proc/self/exe */
  char cmdline[512];            /* arguments separated by spaces, truncated */
  uint32_t depth_cap;           /* frames kept per stack */
  uint32_t flags;               /* bit 0: some stacks were dropped (the stack table was full):
                                   their events count under site 0;
                                   bit 1: no stacks at all: the folder had no room for the full
                                   file (full, quota, ulimit -f), so this small one counts per
                                   device and kind only (slot_count 0: every event is site 0; no
                                   event ring, no Python table);
                                   bit 2: some allocations were not put in the live table (no free
                                   slot within 512 of their place): their frees count in
                                   untracked_frees and their bytes stay live in every figure.
                                   A stack kept when the arena was full has a slot with depth
                                   0xffffffff: its counters are right, its frames unknown */
  uint64_t modules_offset;
  uint32_t module_capacity;
  uint32_t module_count;        /* written with release order after the module is complete */
  uint64_t slots_offset;
  uint32_t slot_count;          /* a power of two, or 0 (flags bit 1) */
  uint32_t arena_frames;
  uint64_t arena_offset;
  uint64_t sites_offset;
  uint64_t kinds_offset;
  uint64_t live_offset;
  uint32_t live_capacity;       /* a power of two */
  uint32_t reserved0;
  int64_t process_live;         /* bytes live over all kinds, and their peak */
  int64_t process_peak;
  uint64_t peak_epoch;          /* bumped at each new peak (sites' at_peak is valid when equal) */
  uint64_t peak_ns;             /* CLOCK_REALTIME when the peak was reached */
  uint64_t events;              /* allocations and frees recorded (plus each in-use shard's) */
  uint64_t untracked_frees;     /* frees of pointers not in the live table (allocated before the
                                   recorder started, or not tracked: flags bit 2) */
  uint64_t shards_offset;
  uint32_t shard_count;
  uint32_t shard_size;          /* sizeof(struct poolshim_stats_shard) */
  uint64_t events_offset;
  uint32_t event_capacity;      /* a power of two, or 0: no event ring */
  uint32_t reserved1;
  uint64_t event_next;          /* events ever written; slot of event i is i % event_capacity */
  uint64_t python_offset;
  uint64_t python_size;         /* bytes; 0 without POOLSHIM_STATS=python */
  /* The shim pool's process-wide figures (poolshim.h counters), mirrored at each event, for the
   * hit rate: allocations the pools served from memory they already held, of all they served. */
  uint64_t device_pool_hits, device_pool_allocs;
  uint64_t host_pool_hits, host_pool_allocs;
};

struct poolshim_stats_module {
  uint64_t start, end;          /* address range of its loaded segments */
  uint64_t load_bias;           /* what to subtract from an address for the file's address */
  uint32_t build_id_size;
  uint8_t build_id[40];
  char path[268];
};

struct poolshim_stats_slot {
  uint64_t key;                 /* 0: empty; the stack's 64-bit hash (bit 63 set while filled in) */
  uint32_t frames_at;           /* index into the arena */
  uint32_t depth;               /* 0xffffffff: kept by hash alone (the arena was full) */
};

struct poolshim_stats_site {
  uint64_t allocs, frees, bytes_allocated, bytes_freed;  /* plus the shards' */
  uint64_t largest;
  int64_t live_bytes;
  int64_t live_count;           /* not kept by the writer (version 2): it is allocs - frees */
  int64_t own_peak;
  int64_t at_peak;              /* bytes live at the process peak, valid when seen_epoch == peak_epoch */
  uint64_t seen_epoch;
  uint64_t temporary;           /* allocations freed before their thread allocated anything else */
};

struct poolshim_stats_kind {
  uint64_t allocs, frees, bytes_allocated;  /* plus the shards' */
  int64_t live_bytes, peak_bytes;           /* exact in the shared counter alone */
  uint64_t peak_ns;                         /* CLOCK_REALTIME when peak_bytes was reached */
};

/* A thread's private counters, written with plain stores by that thread only (no atomic
 * read-modify-write on the hot path). Entry i holds site `stack` for stack ids with
 * id % POOLSHIM_STATS_SHARD_SITES == i (an entry with allocs and frees both 0 is empty; site 0 may
 * have frees only); a colliding site folds the old entry into the shared counters first. Live bytes and peaks stay in the shared counters. A
 * reader sums shared + shards; while a shard is being folded it may see an entry twice or not at
 * all for an instant (a kill -9 exactly then leaves that one entry's counts doubled). */
struct poolshim_stats_shard_site {
  uint32_t stack;
  uint32_t reserved;
  uint64_t allocs, frees, bytes_allocated, bytes_freed, temporary;
};

struct poolshim_stats_shard_kind {
  uint64_t allocs, frees, bytes_allocated;
};

struct poolshim_stats_shard {
  int32_t tid;                  /* owning thread (0: free) */
  uint32_t in_use;              /* 1 while a thread owns it */
  uint64_t events;
  struct poolshim_stats_shard_site sites[POOLSHIM_STATS_SHARD_SITES];
  struct poolshim_stats_shard_kind kinds[POOLSHIM_STATS_DEVICES * POOLSHIM_STATS_KINDS];
};

/* One allocation or free in the event ring (for timelines and the memory_viz snapshot). Written
 * after its slot is claimed with seq last (release): a reader takes slot i % capacity as event i
 * only when seq == i + 1. */
struct poolshim_stats_event {
  uint64_t seq;
  uint64_t ns;                  /* CLOCK_REALTIME */
  uint64_t ptr;
  uint64_t bytes;
  uint32_t stack;
  uint16_t device;
  uint8_t kind;
  uint8_t action;               /* 1: alloc, 2: free */
};

struct poolshim_stats_live {
  uint64_t ptr;
  uint64_t bytes;
  uint32_t stack;               /* stack id */
  uint16_t device;
  uint16_t kind;
};

#ifdef __cplusplus
}
#endif

#endif /* POOLSHIM_STATS_FILE_H */

/* The per-process statistics file (POOLSHIM_STATS=native): one file per process under
 * POOLSHIM_STATS_DIR (default /dev/shm), named poolshim-<uid>-<pid>-<start>.stats, mode 0600, its
 * whole size reserved with posix_fallocate before use (a sparse file on a full tmpfs would raise
 * SIGBUS later), mapped shared by the shim and written in place, so it stays readable after the
 * process exits, crashes or is killed. poolshim-stats reads it; the shim never symbolises.
 *
 * Layout, version 5 (host byte order; every offset from the start of the file; every array fixed
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
 *   timeline                    struct poolshim_stats_timeline, then timeline_capacity samples
 *                               (struct poolshim_stats_sample): live bytes over time, of the
 *                               process, of up to 8 (device, kind) pairs and of up to 8 call sites
 * Every region starts on a POOLSHIM_STATS_ALIGN boundary; poolshim_stats_plan() below computes the
 * offsets (the shim and the test fakes lay files out with it; a reader checks the header instead).
 * A frame value whose top 16 bits are POOLSHIM_STATS_PYFRAME_TAG is a Python frame (its low 48
 * bits are decoded with the Python code table), never a native address. One whose top 16 bits are
 * POOLSHIM_STATS_CUT_TAG is the last frame of a stack cut at depth_cap (below), never an address.
 * C-compatible: the tool and other readers include it. Writers use 64-bit atomic operations on the
 * counters; readers of a live file may see a counter mid-update, never a torn 64-bit value. */
#ifndef POOLSHIM_STATS_FILE_H
#define POOLSHIM_STATS_FILE_H

#include <stdint.h>

#define POOLSHIM_STATS_MAGIC "PSHSTAT"
/* 3: events carry their stream; a stack cut at depth_cap ends with a POOLSHIM_STATS_CUT_TAG mark.
 * 4: size histograms per site and per kind; the timeline of live bytes.
 * 5: each timeline sample also holds the live bytes of up to 8 call sites (site, site_live) */
#define POOLSHIM_STATS_VERSION 5
#define POOLSHIM_STATS_PYFRAME_TAG 0xfffeull /* top 16 bits of a Python frame value */
/* A stack deeper than depth_cap keeps its depth_cap - 1 innermost frames and, as its last (outermost)
 * frame, this marker: top 16 bits POOLSHIM_STATS_CUT_TAG; bits 0-31 how many frames the whole stack
 * had past the shim's own (0: not counted, under POOLSHIM_STATS=python); bit 32 set: at least that
 * many (the count stopped at POOLSHIM_STATS_CUT_COUNT_LIMIT). A depth cap of that many keeps it whole. */
#define POOLSHIM_STATS_CUT_TAG 0xfffdull
#define POOLSHIM_STATS_CUT_MORE (1ull << 32)
#define POOLSHIM_STATS_CUT_COUNT_LIMIT 255
#define POOLSHIM_STATS_SHARD_SITES 256 /* site entries per thread shard (two places per stack id) */
#define POOLSHIM_STATS_DEVICES 16
#define POOLSHIM_STATS_KINDS 5  /* device, pinned, managed, async, vmm */
#define POOLSHIM_STATS_ALIGN 64 /* every region starts on a cache line */
/* Allocation sizes in power-of-two buckets: bucket 0 holds sizes up to 1 KiB, bucket i (1 to 22)
 * sizes in (2^(9+i), 2^(10+i)] (up to 4 GiB), bucket 23 anything larger. */
#define POOLSHIM_STATS_SIZE_BUCKETS 24
/* Columns of the timeline: the first (device, kind) pairs to hold memory get one each; the others
 * count in the sample's total only. */
#define POOLSHIM_STATS_TIMELINE_COLUMNS 8
/* Call sites a timeline sample holds the live bytes of: those with the largest own peaks that the
 * sampler has found (see struct poolshim_stats_timeline). */
#define POOLSHIM_STATS_TIMELINE_SITES 8

/* The most frames a stack keeps: the header's depth_cap and each slot's depth are at most this
 * (the shim's POOLSHIM_STATS_DEPTH is clamped to it; a reader rejects a file that says more). */
#define POOLSHIM_STATS_MAX_DEPTH 64

/* poolshim_stats_header.flags */
#define POOLSHIM_STATS_FLAG_STACKS_DROPPED 1u  /* the stack table was full: some events count as site 0 */
#define POOLSHIM_STATS_FLAG_STACKS_OFF 2u      /* the small file: no stacks at all (slot_count 0) */
#define POOLSHIM_STATS_FLAG_LIVE_TABLE_FULL 4u /* some allocations are not in the live table */

/* poolshim_stats_live.ptr values that are not pointers (a real pointer is larger) */
#define POOLSHIM_STATS_LIVE_EMPTY 0u   /* never used: a lookup stops here */
#define POOLSHIM_STATS_LIVE_DELETED 1u /* freed: a lookup goes on past it, an insert may reuse it */
#define POOLSHIM_STATS_LIVE_CLAIMED 2u /* an insert is filling it in: not yet an allocation */

/* poolshim_stats_event.action */
#define POOLSHIM_STATS_EVENT_ALLOC 1u
#define POOLSHIM_STATS_EVENT_FREE 2u
/* A device pool took a segment from its source (ptr: its base, bytes: its size; stack 0), or gave
 * one back: the blocks of later allocations lie in it (the memory_viz snapshot's segments). */
#define POOLSHIM_STATS_EVENT_SEGMENT_ALLOC 3u
#define POOLSHIM_STATS_EVENT_SEGMENT_FREE 4u
/* An allocation failed for want of memory (bytes: asked; ptr: the device's free bytes then, as the
 * driver said; stack: the caller's). Counted nowhere else: no site figure changes. */
#define POOLSHIM_STATS_EVENT_OOM 5u

#ifdef __cplusplus
extern "C" {
#endif

struct poolshim_stats_header {
  char magic[8];        /* POOLSHIM_STATS_MAGIC, NUL-padded */
  uint32_t version;     /* POOLSHIM_STATS_VERSION */
  uint32_t header_size; /* sizeof(struct poolshim_stats_header) */
  uint64_t file_size;
  int32_t pid;
  uint32_t uid;
  uint64_t start_ns;  /* CLOCK_REALTIME at creation */
  uint64_t end_ns;    /* CLOCK_REALTIME at a clean exit, 0 while running or after a kill */
  char exe[256];      /* /proc/self/exe */
  char cmdline[512];  /* arguments separated by spaces, truncated */
  uint32_t depth_cap; /* frames kept per stack */
  uint32_t flags;     /* POOLSHIM_STATS_FLAG_*; bit 0: some stacks were dropped (the
                         stack table was full): their events count under site 0;
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
  uint32_t module_count; /* written with release order after the module is complete */
  uint64_t slots_offset;
  uint32_t slot_count; /* a power of two, or 0 (flags bit 1) */
  uint32_t arena_frames;
  uint64_t arena_offset;
  uint64_t sites_offset;
  uint64_t kinds_offset;
  uint64_t live_offset;
  uint32_t live_capacity; /* a power of two */
  uint32_t reserved0;
  int64_t process_live; /* bytes live over all kinds, and their peak */
  int64_t process_peak;
  uint64_t peak_epoch;      /* bumped at each new peak (sites' at_peak is valid when equal) */
  uint64_t peak_ns;         /* CLOCK_REALTIME when the peak was reached */
  uint64_t events;          /* allocations and frees recorded (plus each in-use shard's) */
  uint64_t untracked_frees; /* frees of pointers not in the live table (allocated before the
                               recorder started, or not tracked: flags bit 2) */
  uint64_t shards_offset;
  uint32_t shard_count;
  uint32_t shard_size; /* sizeof(struct poolshim_stats_shard) */
  uint64_t events_offset;
  uint32_t event_capacity; /* a power of two, or 0: no event ring */
  uint32_t reserved1;
  uint64_t event_next; /* events ever written; slot of event i is i % event_capacity */
  uint64_t python_offset;
  uint64_t python_size; /* bytes; 0 without POOLSHIM_STATS=python */
  /* The shim pool's process-wide figures (poolshim.h counters), mirrored at each event, for the
   * hit rate: allocations the pools served from memory they already held, of all they served. */
  uint64_t device_pool_hits, device_pool_allocs;
  uint64_t host_pool_hits, host_pool_allocs;
  /* version 4 */
  uint64_t timeline_offset;
  uint32_t timeline_capacity; /* samples (0: no timeline) */
  uint32_t reserved2;
  /* Allocations per kind (all devices) by size bucket, plus each in-use shard's kind_sizes. */
  uint64_t kind_sizes[POOLSHIM_STATS_KINDS][POOLSHIM_STATS_SIZE_BUCKETS];
};

struct poolshim_stats_module {
  uint64_t start, end; /* address range of its loaded segments */
  uint64_t load_bias;  /* what to subtract from an address for the file's address */
  uint32_t build_id_size;
  uint8_t build_id[40];
  char path[268];
};

struct poolshim_stats_slot {
  uint64_t key;       /* 0: empty; the stack's 64-bit hash (bit 63 set while filled in) */
  uint32_t frames_at; /* index into the arena */
  uint32_t depth;     /* 0xffffffff: kept by hash alone (the arena was full) */
};

struct poolshim_stats_site {
  uint64_t allocs, frees, bytes_allocated, bytes_freed; /* plus the shards' */
  uint64_t largest;
  int64_t live_bytes;
  int64_t live_count; /* not kept by the writer (version 2): it is allocs - frees */
  int64_t own_peak;
  int64_t at_peak; /* bytes live at the process peak, valid when seen_epoch == peak_epoch */
  uint64_t seen_epoch;
  uint64_t temporary;                          /* allocations freed before their thread allocated anything else */
  uint64_t sizes[POOLSHIM_STATS_SIZE_BUCKETS]; /* allocations by size bucket (plus the shards') */
};

struct poolshim_stats_kind {
  uint64_t allocs, frees, bytes_allocated; /* plus the shards' */
  int64_t live_bytes, peak_bytes;          /* exact in the shared counter alone */
  uint64_t peak_ns;                        /* CLOCK_REALTIME when peak_bytes was reached */
};

/* A thread's private counters, written with plain stores by that thread only (no atomic
 * read-modify-write on the hot path). Stack id `id` may be in entry poolshim_stats_shard_place(id, 0)
 * or poolshim_stats_shard_place(id, 1) (an entry with allocs, frees and temporary 0 is empty; site
 * 0 may have frees only); a site finding both taken by others folds the first into the shared
 * counters and takes it (two places: 64 sites in turn rarely evict each other). Live
 * bytes and peaks stay in the shared counters. A reader sums shared + shards (poolshim_stats_fold_*
 * below); while a shard is being folded it may see an entry twice or not at all for an instant (a
 * kill -9 exactly then leaves that one entry's counts doubled). */
struct poolshim_stats_shard_site {
  uint32_t stack;
  uint32_t reserved;
  uint64_t allocs, frees, bytes_allocated, bytes_freed, temporary;
  uint32_t sizes[POOLSHIM_STATS_SIZE_BUCKETS]; /* folded before any reaches 2^31 */
};

struct poolshim_stats_shard_kind {
  uint64_t allocs, frees, bytes_allocated;
};

struct poolshim_stats_shard {
  int32_t tid;     /* owning thread (0: free) */
  uint32_t in_use; /* 1 while a thread owns it */
  uint64_t events;
  struct poolshim_stats_shard_site sites[POOLSHIM_STATS_SHARD_SITES];
  struct poolshim_stats_shard_kind kinds[POOLSHIM_STATS_DEVICES * POOLSHIM_STATS_KINDS];
  uint32_t kind_sizes[POOLSHIM_STATS_KINDS][POOLSHIM_STATS_SIZE_BUCKETS]; /* folded before 2^31 */
};

/* Live bytes over time, sampled by the thread of an event when the interval has passed (checked
 * at every 8th event of a thread, with the coarse clock, and at each new process peak), and at a
 * clean exit. When all capacity samples are taken, each pair of neighbours becomes the one of the
 * two with more bytes live and the interval doubles: the whole run stays in the file, at a
 * coarser grain. A sample is written while `busy` is 1 (a reader may see one torn sample).
 * Call sites (version 5): each new sample first looks at the next 4096 slots of the stack table
 * per 10 ms since the sample before, round robin (the whole table at the first sample, at a clean
 * exit, and once that many 10 ms have passed: 40 ms for 16384 slots), and follows the 8 stacks
 * with the largest own peak it has found so far; a stack whose own peak passes the smallest of
 * those takes that one's place. A sample names the stacks it holds (site[], stack ids, 0: none)
 * beside their live bytes, so a site's line is known from the first sample after it was picked,
 * and only while it is followed. */
struct poolshim_stats_timeline {
  uint64_t interval_ns; /* between samples now (10 ms at the start) */
  uint64_t next_ns;     /* CLOCK_REALTIME when the next sample is due */
  uint32_t count;       /* samples held, the oldest first */
  uint32_t busy;
  /* column i holds (device * POOLSHIM_STATS_KINDS + kind + 1); 0: unused */
  uint16_t columns[POOLSHIM_STATS_TIMELINE_COLUMNS];
};

struct poolshim_stats_sample {
  uint64_t ns;   /* CLOCK_REALTIME */
  int64_t total; /* bytes live over all kinds (the header's process_live) */
  int64_t live[POOLSHIM_STATS_TIMELINE_COLUMNS];
  int64_t site_live[POOLSHIM_STATS_TIMELINE_SITES]; /* the live bytes of stack site[i] (version 5) */
  uint32_t site[POOLSHIM_STATS_TIMELINE_SITES];     /* stack ids followed then; 0: none */
};

/* The size bucket of an allocation of `bytes`. */
static inline unsigned poolshim_stats_size_bucket(uint64_t bytes) {
  unsigned width = 0;
  if (bytes > 1024) width = 64u - (unsigned)__builtin_clzll(bytes - 1); /* 2^(w-1) < bytes <= 2^w */
  return width <= 10 ? 0 : width - 10 >= POOLSHIM_STATS_SIZE_BUCKETS ? POOLSHIM_STATS_SIZE_BUCKETS - 1 : width - 10;
}

/* One allocation or free in the event ring (for timelines and the memory_viz snapshot). Written
 * after its slot is claimed with seq last (release): a reader takes slot i % capacity as event i
 * only when seq == i + 1. */
struct poolshim_stats_event {
  uint64_t seq;
  uint64_t ns; /* CLOCK_REALTIME */
  uint64_t ptr;
  uint64_t bytes;
  uint64_t stream; /* the CUstream of a stream-ordered allocation or free (async), else 0 */
  uint32_t stack;
  uint16_t device;
  uint8_t kind;
  uint8_t action; /* POOLSHIM_STATS_EVENT_*: alloc 1, free 2, segment alloc 3 and free 4, oom 5 */
};

struct poolshim_stats_live {
  uint64_t ptr; /* or POOLSHIM_STATS_LIVE_EMPTY, _DELETED, _CLAIMED */
  uint64_t bytes;
  uint32_t stack; /* stack id */
  uint16_t device;
  uint16_t kind;
};

/* Where each region of a file lies, from its capacities: the layout written once, for the shim and
 * for tools and tests that make a file. Offsets and file_size in bytes from the file's start. */
struct poolshim_stats_layout {
  uint32_t module_capacity, slot_count, arena_frames, live_capacity, shard_count, event_capacity;
  uint64_t python_size;
  uint64_t modules_offset, slots_offset, arena_offset, sites_offset, kinds_offset, live_offset;
  uint64_t shards_offset, events_offset, python_offset, file_size;
  uint32_t timeline_capacity;
  uint64_t timeline_offset;
};

static inline uint64_t poolshim_stats_align(uint64_t v) {
  return (v + (POOLSHIM_STATS_ALIGN - 1)) & ~(uint64_t)(POOLSHIM_STATS_ALIGN - 1);
}

/* The regions in file order, each aligned; a capacity of 0 gives an empty region (its offset is
 * where it would start, and the next region starts there too). */
static inline struct poolshim_stats_layout poolshim_stats_plan(uint32_t module_capacity, uint32_t slot_count,
                                                               uint32_t arena_frames, uint32_t live_capacity,
                                                               uint32_t shard_count, uint32_t event_capacity,
                                                               uint64_t python_size, uint32_t timeline_capacity) {
  struct poolshim_stats_layout l;
  uint64_t off = poolshim_stats_align(sizeof(struct poolshim_stats_header));
  l.module_capacity = module_capacity;
  l.slot_count = slot_count;
  l.arena_frames = arena_frames;
  l.live_capacity = live_capacity;
  l.shard_count = shard_count;
  l.event_capacity = event_capacity;
  l.python_size = python_size;
  l.modules_offset = off;
  off = poolshim_stats_align(off + (uint64_t)module_capacity * sizeof(struct poolshim_stats_module));
  l.slots_offset = off;
  off = poolshim_stats_align(off + (uint64_t)slot_count * sizeof(struct poolshim_stats_slot));
  l.arena_offset = off;
  off = poolshim_stats_align(off + (uint64_t)arena_frames * sizeof(uint64_t));
  l.sites_offset = off;
  off = poolshim_stats_align(off + ((uint64_t)slot_count + 1) * sizeof(struct poolshim_stats_site));
  l.kinds_offset = off;
  off = poolshim_stats_align(off + POOLSHIM_STATS_DEVICES * POOLSHIM_STATS_KINDS * sizeof(struct poolshim_stats_kind));
  l.live_offset = off;
  off = poolshim_stats_align(off + (uint64_t)live_capacity * sizeof(struct poolshim_stats_live));
  l.shards_offset = off;
  off = poolshim_stats_align(off + (uint64_t)shard_count * sizeof(struct poolshim_stats_shard));
  l.events_offset = off;
  off = poolshim_stats_align(off + (uint64_t)event_capacity * sizeof(struct poolshim_stats_event));
  l.python_offset = off;
  off = poolshim_stats_align(off + python_size);
  l.timeline_capacity = timeline_capacity;
  l.timeline_offset = off;
  off = poolshim_stats_align(off + sizeof(struct poolshim_stats_timeline) +
                             (uint64_t)timeline_capacity * sizeof(struct poolshim_stats_sample));
  l.file_size = off;
  return l;
}

/* A new header (zeroed memory): magic, version, sizes and every region of `l`. The writer fills in
 * the rest (pid, times, names, depth_cap, flags). python_offset stays 0 without a Python table. */
static inline void poolshim_stats_init_header(struct poolshim_stats_header* h, const struct poolshim_stats_layout* l) {
  unsigned i;
  for (i = 0; i < sizeof h->magic; ++i) h->magic[i] = i < sizeof POOLSHIM_STATS_MAGIC ? POOLSHIM_STATS_MAGIC[i] : 0;
  h->version = POOLSHIM_STATS_VERSION;
  h->header_size = sizeof *h;
  h->file_size = l->file_size;
  h->modules_offset = l->modules_offset;
  h->module_capacity = l->module_capacity;
  h->slots_offset = l->slots_offset;
  h->slot_count = l->slot_count;
  h->arena_frames = l->arena_frames;
  h->arena_offset = l->arena_offset;
  h->sites_offset = l->sites_offset;
  h->kinds_offset = l->kinds_offset;
  h->live_offset = l->live_offset;
  h->live_capacity = l->live_capacity;
  h->shards_offset = l->shards_offset;
  h->shard_count = l->shard_count;
  h->shard_size = sizeof(struct poolshim_stats_shard);
  h->events_offset = l->events_offset;
  h->event_capacity = l->event_capacity;
  h->python_offset = l->python_size != 0 ? l->python_offset : 0;
  h->python_size = l->python_size;
  h->timeline_offset = l->timeline_offset;
  h->timeline_capacity = l->timeline_capacity;
}

/* Shard folding (see struct poolshim_stats_shard): a site's or kind's whole figure is its shared
 * counter plus each in-use shard's entry for it. These add one entry's counts to `to`: with
 * `shared` 0 a reader's private copy (plain adds), with `shared` 1 the live file's counters, which
 * other threads add to at the same time (relaxed atomic adds, none for a zero). */
static inline void poolshim_stats_add_count(uint64_t* to, uint64_t v, int shared) {
  if (!shared)
    *to += v;
  else if (v != 0)
    __atomic_fetch_add(to, v, __ATOMIC_RELAXED);
}

static inline void poolshim_stats_fold_site(struct poolshim_stats_site* to, const struct poolshim_stats_shard_site* e,
                                            int shared) {
  poolshim_stats_add_count(&to->allocs, e->allocs, shared);
  poolshim_stats_add_count(&to->frees, e->frees, shared);
  poolshim_stats_add_count(&to->bytes_allocated, e->bytes_allocated, shared);
  poolshim_stats_add_count(&to->bytes_freed, e->bytes_freed, shared);
  poolshim_stats_add_count(&to->temporary, e->temporary, shared);
  for (int b = 0; b < POOLSHIM_STATS_SIZE_BUCKETS; ++b) poolshim_stats_add_count(&to->sizes[b], e->sizes[b], shared);
}

/* A shard's per-kind size counts into the header's (same rule as the sites'). */
static inline void poolshim_stats_fold_kind_sizes(uint64_t (*to)[POOLSHIM_STATS_SIZE_BUCKETS],
                                                  const uint32_t (*from)[POOLSHIM_STATS_SIZE_BUCKETS], int shared) {
  for (int k = 0; k < POOLSHIM_STATS_KINDS; ++k)
    for (int b = 0; b < POOLSHIM_STATS_SIZE_BUCKETS; ++b) poolshim_stats_add_count(&to[k][b], from[k][b], shared);
}

static inline void poolshim_stats_fold_kind(struct poolshim_stats_kind* to, const struct poolshim_stats_shard_kind* e,
                                            int shared) {
  poolshim_stats_add_count(&to->allocs, e->allocs, shared);
  poolshim_stats_add_count(&to->frees, e->frees, shared);
  poolshim_stats_add_count(&to->bytes_allocated, e->bytes_allocated, shared);
}

/* The two entries of a shard stack id `id` may be in (which = 0 or 1; they may be the same). */
static inline uint32_t poolshim_stats_shard_place(uint32_t id, int which) {
  return which == 0 ? id % POOLSHIM_STATS_SHARD_SITES : (id * 0x9e3779b1u) >> 24;
}

/* The shard's entry for stack id `id` when it holds counts of that site, else NULL. */
static inline const struct poolshim_stats_shard_site* poolshim_stats_shard_entry(const struct poolshim_stats_shard* sh,
                                                                                 uint32_t id) {
  int which;
  for (which = 0; which < 2; ++which) {
    const struct poolshim_stats_shard_site* e = &sh->sites[poolshim_stats_shard_place(id, which)];
    if (e->stack == id && (e->allocs != 0 || e->frees != 0)) return e;
  }
  return 0;
}

#ifdef __cplusplus
}
#endif

#endif /* POOLSHIM_STATS_FILE_H */

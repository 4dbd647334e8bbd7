// The call-site recorder (recorder.h) over the stats file (include/poolshim/stats_file.h): start,
// fork and exit, each thread's state, and the record_* entry points. The parts live beside it:
// file_layout (plan, creation, header), module_list, caller_stack (stack cache, else unwind),
// thread_shard, live_table and event_ring; what an event runs of them is inline.
#include "stats/recorder.h"

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>
#include <new>

#include "base/log.h"
#include "base/process.h"
#include "poolshim/stats_file.h"
#include "stats/caller_stack.h"
#include "stats/event_ring.h"
#include "stats/file_atomic.h"
#include "stats/file_layout.h"
#include "stats/live_table.h"
#include "stats/module_list.h"
#include "stats/python_frames.h"
#include "stats/site_stats.h"
#include "stats/sole_writer.h"
#include "stats/stack_cache.h"
#include "stats/stack_table.h"
#include "stats/thread_shard.h"
#include "stats/timeline.h"
#include "stats/unwinder.h"

namespace poolshim::stats {
namespace {

static_assert(sizeof(stack_slot) == sizeof(poolshim_stats_slot) && offsetof(stack_slot, frames_at) == 8);
static_assert(offsetof(poolshim_stats_header, process_peak) == offsetof(poolshim_stats_header, process_live) + 8 &&
              offsetof(poolshim_stats_header, peak_epoch) == offsetof(poolshim_stats_header, process_live) + 16);

struct recorder {
  poolshim_stats_header* header = nullptr;
  poolshim_stats_kind* kinds = nullptr;
  stack_table* table = nullptr;  // null: counting without stacks
  site_stats* sites = nullptr;
  module_list modules;
  caller_stack stacks;
  shard_set shards;
  live_table live;
  event_ring ring;
  timeline_writer timeline;
  std::size_t mapped = 0;
  char path[512] = {};
  std::uint32_t depth = 32;
};

using detail::g_state;
recorder g_rec;
sole_writer g_sole;  // not in g_rec: a fork child's g_rec is assigned afresh, this one starts again
std::atomic<std::uint32_t> g_generation{1};  // bumped in a fork child: the parent's shards are gone
pthread_key_t g_thread_key;
bool g_thread_key_ok = false;
void release_thread(void* p) noexcept;  // a thread's state and shard back, at its exit

bool start(recorder& r) noexcept {
  const config& cfg = base::current_config();
  const char* dir = cfg.stats_dir != nullptr && cfg.stats_dir[0] != '\0' ? cfg.stats_dir : "/dev/shm";
  r.depth = static_cast<std::uint32_t>(
      std::min<std::size_t>(std::max<std::size_t>(cfg.stats_depth, 1), POOLSHIM_STATS_MAX_DEPTH));
  const std::uint64_t started = now_ns();
  std::snprintf(r.path, sizeof r.path, "%s/poolshim-%u-%d-%llu.stats", dir, static_cast<unsigned>(getuid()),
                static_cast<int>(getpid()), static_cast<unsigned long long>(started));
  std::uint32_t ring = 0;
  if (cfg.stats_events != 0)
    ring = static_cast<std::uint32_t>(std::bit_ceil(std::min<std::size_t>(cfg.stats_events, std::size_t{1} << 24)));
  const bool want_python = std::strcmp(cfg.stats, "python") == 0;
  poolshim_stats_layout l = full_layout(ring, want_python);
  const poolshim_stats_layout small = small_layout();
  // A file larger than RLIMIT_FSIZE must not be tried: the kernel answers with SIGXFSZ, whose
  // default action kills the program, before posix_fallocate could return EFBIG.
  rlimit fsize{};
  const std::size_t limit = getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur != RLIM_INFINITY
                                ? static_cast<std::size_t>(fsize.rlim_cur)
                                : SIZE_MAX;
  if (small.file_size > limit) {
    POOLSHIM_LOG_WARN(
        "POOLSHIM_STATS: the file size limit (ulimit -f: {} bytes) is below the {} bytes of the "
        "smallest stats file: no call-site statistics",
        limit, small.file_size);
    return false;
  }
  int err = l.file_size > limit ? EFBIG : 0;
  void* p = err == 0 ? create_file(r.path, l.file_size, &err) : nullptr;
  bool stacks = true;
  if (p == nullptr && (err == ENOSPC || err == EFBIG || err == EDQUOT)) {
    // No room (a full file system, a quota, ulimit -f): count per device and kind without stacks
    // in a file of under 1 MiB rather than nothing, and say so (in the log and in the file's flags).
    const std::size_t wanted = l.file_size;
    const int why = err;
    l = small;
    p = create_file(r.path, l.file_size, &err);
    stacks = false;
    if (p != nullptr)
      POOLSHIM_LOG_WARN(
          "POOLSHIM_STATS: no room for {} bytes in {} ({}): counting without call stacks, event ring "
          "or Python frames in {} bytes",
          wanted, dir, why == EFBIG ? "the file size limit, ulimit -f" : std::strerror(why), l.file_size);
  }
  if (p == nullptr) {
    POOLSHIM_LOG_WARN("POOLSHIM_STATS: cannot reserve {} bytes for {} ({}): no call-site statistics", l.file_size,
                      r.path, std::strerror(err));
    return false;
  }
  (void)madvise(p, l.file_size, MADV_DONTFORK);  // a fork child starts its own file
  auto* base = static_cast<unsigned char*>(p);
  write_header(base, l, started, stacks ? r.depth : 0, stacks ? 0 : POOLSHIM_STATS_FLAG_STACKS_OFF);
  auto* h = reinterpret_cast<poolshim_stats_header*>(base);
  r.header = h;
  r.kinds = reinterpret_cast<poolshim_stats_kind*>(base + l.kinds_offset);
  r.modules = module_list(reinterpret_cast<poolshim_stats_module*>(base + l.modules_offset), l.module_capacity,
                          &h->module_count);
  r.live = live_table(reinterpret_cast<poolshim_stats_live*>(base + l.live_offset), l.live_capacity, &h->flags);
  r.ring =
      event_ring(reinterpret_cast<poolshim_stats_event*>(base + l.events_offset), l.event_capacity, &h->event_next);
  if (stacks) {
    r.table = new (std::nothrow) stack_table(reinterpret_cast<stack_slot*>(base + l.slots_offset), l.slot_count,
                                             reinterpret_cast<std::uintptr_t*>(base + l.arena_offset), l.arena_frames);
    if (r.table == nullptr) return false;
  }
  r.sites = new (std::nothrow)
      site_stats(reinterpret_cast<site_counters*>(base + l.sites_offset), std::size_t{l.slot_count} + 1,
                 reinterpret_cast<process_figures*>(&h->process_live));
  if (r.sites == nullptr) return false;
  r.shards = shard_set(reinterpret_cast<poolshim_stats_shard*>(base + l.shards_offset), l.shard_count, r.sites, r.kinds,
                       &h->events, h->kind_sizes);
  r.timeline =
      timeline_writer(reinterpret_cast<poolshim_stats_timeline*>(base + l.timeline_offset), l.timeline_capacity,
                      r.kinds, &h->process_live, reinterpret_cast<const poolshim_stats_slot*>(base + l.slots_offset),
                      stacks ? l.slot_count : 0, reinterpret_cast<const poolshim_stats_site*>(base + l.sites_offset));
  r.mapped = l.file_size;
  // The address range of libpoolshim.so (or of the binary holding this code, in tests): frames in
  // it are the shim's own.
  std::uintptr_t shim_begin = 0, shim_end = 0;
  module_range(reinterpret_cast<std::uintptr_t>(&record_alloc), &shim_begin, &shim_end);
  r.modules.refresh();
  if (stacks) (void)unwinder_available();  // loads and warms libunwind now, not in the middle of an event
  bool python = false;                     // Python frames replace the eval loop's (POOLSHIM_STATS=python)
  if (l.python_size != 0) {
    python = python_start(base + l.python_offset, l.python_size);  // says why when it cannot
  }
  r.stacks = caller_stack(r.table, &r.modules, &h->flags, r.depth, python, shim_begin, shim_end);
  g_sole.start();
  POOLSHIM_LOG_INFO("call-site statistics in {}", r.path);
  return true;
}

void reset_in_child() noexcept {
  // The parent's file is not the child's (and the mapping did not follow: MADV_DONTFORK); the new
  // generation makes this thread's state (shard, cached stack ids) stale. A start-up another
  // thread had under way in the parent (state 1) will never finish here: start over too.
  const int s = g_state.load(std::memory_order_relaxed);
  if (s == 1 || s == 2) {
    g_rec = recorder{};
    g_generation.fetch_add(1, std::memory_order_relaxed);
    g_state.store(0, std::memory_order_relaxed);
  }
}

// Another thread is creating the file (a few ms: the file, libunwind): wait for it, so that a
// thread's events at the start of a multi-threaded program are not lost — but at most 200 ms, and
// then go without: the starter may be waiting for a lock this thread holds (the loader's, when
// this allocation comes from a library constructor inside dlopen), and the program must not hang.
recorder* wait_for_start() noexcept {
  for (int i = 0; i < 2000; ++i) {
    const int s = g_state.load(std::memory_order_acquire);
    if (s != 1) return s == 2 ? &g_rec : nullptr;
    if (i < 50) {
      sched_yield();
    } else {
      timespec ts{0, 100000};
      nanosleep(&ts, nullptr);
    }
  }
  return nullptr;
}

[[gnu::noinline]] recorder* start_or_wait() noexcept {
  const int s = g_state.load(std::memory_order_acquire);
  if (s == 2) return &g_rec;
  if (s == 1) return wait_for_start();
  if (s != 0) return nullptr;
  if (!base::stats_requested()) {
    int expected = 0;
    g_state.compare_exchange_strong(expected, 3, std::memory_order_acq_rel);
    return nullptr;
  }
  int expected = 0;
  if (!g_state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel))
    return expected == 1 ? wait_for_start() : expected == 2 ? &g_rec : nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    pthread_atfork(nullptr, nullptr, reset_in_child);
    g_thread_key_ok = pthread_key_create(&g_thread_key, release_thread) == 0;
  });
  const bool ok = start(g_rec);
  g_state.store(ok ? 2 : 3, std::memory_order_release);
  return ok ? &g_rec : nullptr;
}

[[gnu::always_inline]] inline recorder* active() noexcept {
  if (g_state.load(std::memory_order_acquire) == 2) [[likely]]
    return &g_rec;
  return start_or_wait();
}

// What a thread keeps for the recorder, allocated on its first event and freed at its exit: TLS
// holds only a pointer (the stack cache, 3.9 KB here and a 196 KiB mapping of its own, as
// initial-exec TLS would be carved out of every thread's stack in every preloaded process,
// statistics on or off).
struct thread_state {
  std::uint32_t generation;     // g_generation when set up; another value: stale (a fork child)
  poolshim_stats_shard* shard;  // null: this thread counts in the shared counters
  stack_cache cache;
};
// The recorder's thread-local variables, in one initial-exec block (one offset from the thread
// pointer for all of them: an event reads or writes each).
struct thread_locals {
  thread_state* state = nullptr;
  // The last pointer this thread allocated, until it allocates again: a free of it is temporary.
  std::uint64_t last_alloc = 0;
  // Set once the thread's state was released at its exit: later events (from other destructors)
  // count in the shared counters without a cache instead of allocating a state nobody frees.
  bool exiting = false;
  // Set while this thread is inside record_alloc/record_free: an event that comes in the middle of
  // one (a signal handler that allocates, or a malloc that grows with cudaHostAlloc while the
  // recorder allocates the thread's state) counts in the shared counters with atomics, without the
  // thread's cache or shard, which the interrupted event may be halfway through changing.
  bool in_recorder = false;
};
[[gnu::tls_model("initial-exec")]] thread_local thread_locals tl;

void release_thread(void* p) noexcept {
  auto* ts = static_cast<thread_state*>(p);
  if (ts == nullptr) return;
  if (ts->shard != nullptr && g_state.load(std::memory_order_acquire) == 2 &&
      ts->generation == g_generation.load(std::memory_order_relaxed))
    g_rec.shards.release(ts->shard);
  if (tl.state == ts) tl.state = nullptr;
  tl.exiting = true;
  delete ts;
}

// The calling thread's state, set up on its first event (null: none, count without it).
[[gnu::noinline]] thread_state* set_up_state(recorder& r) noexcept {
  thread_state* ts = tl.state;
  const std::uint32_t gen = g_generation.load(std::memory_order_relaxed);
  if (ts != nullptr && ts->generation == gen) return ts;
  if (tl.exiting || !g_thread_key_ok) return nullptr;
  if (ts == nullptr) {
    ts = new (std::nothrow) thread_state{};
    if (ts == nullptr) return nullptr;
    if (pthread_setspecific(g_thread_key, ts) != 0) {  // nothing would free it
      delete ts;
      return nullptr;
    }
    tl.state = ts;
  } else {
    ts->cache.reset();  // a fork child: the parent's shard and stack ids are not this file's
  }
  ts->generation = gen;
  ts->shard = r.shards.claim();
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* lo = nullptr;
    std::size_t size = 0;
    if (pthread_attr_getstack(&attr, &lo, &size) == 0 && lo != nullptr)
      (void)ts->cache.set_stack(reinterpret_cast<std::uintptr_t>(lo), reinterpret_cast<std::uintptr_t>(lo) + size);
    pthread_attr_destroy(&attr);
  }
  return ts;
}
[[gnu::always_inline]] inline thread_state* my_state(recorder& r) noexcept {
  thread_state* ts = tl.state;
  if (ts != nullptr && ts->generation == g_generation.load(std::memory_order_relaxed)) [[likely]]
    return ts;
  return set_up_state(r);
}

// One allocation's counts, per site, per device and kind, and its live entry; the time of the new
// process peak it made (0: none). `Ops`: sole_ops only where a sole_scope granted it.
template <class Ops>
[[gnu::always_inline]] inline std::uint64_t count_alloc(recorder& r, poolshim_stats_shard* sh, std::uint32_t id, int k,
                                                        int dev, std::uint64_t ptr, std::uint64_t bytes) noexcept {
  // One clock reading for every peak this event reaches: the process's and its kind's are the same
  // moment, and two readings would put them tens of nanoseconds apart.
  std::uint64_t peak_at = 0;
  if (r.sites->on_alloc<Ops>(id, bytes, r.shards.local_site(sh, id))) {
    peak_at = now_ns();
    atomic_at(r.header->peak_ns).store(peak_at, std::memory_order_relaxed);
  }
  r.shards.note_size(sh, k, poolshim_stats_size_bucket(bytes));
  const int slot = dev * POOLSHIM_STATS_KINDS + k;
  poolshim_stats_kind& kc = r.kinds[slot];
  if (sh != nullptr) {
    bump(sh->kinds[slot].allocs, 1);
    bump(sh->kinds[slot].bytes_allocated, bytes);
  } else {
    Ops::fetch_add(kc.allocs, std::uint64_t{1});
    Ops::fetch_add(kc.bytes_allocated, bytes);
  }
  const auto b = static_cast<std::int64_t>(bytes);
  const std::int64_t now = Ops::fetch_add(kc.live_bytes, b) + b;
  std::int64_t peak = atomic_at(kc.peak_bytes).load(std::memory_order_relaxed);
  while (now > peak) {
    if (Ops::compare_exchange(kc.peak_bytes, peak, now)) {
      atomic_at(kc.peak_ns).store(peak_at != 0 ? peak_at : now_ns(), std::memory_order_relaxed);
      break;
    }
  }
  (void)r.live.insert<Ops>(ptr, bytes, id, static_cast<std::uint16_t>(dev), static_cast<std::uint16_t>(k));
  return peak_at;
}

// One free's counts (the block's entry in *copy); false when the pointer was never tracked.
template <class Ops>
[[gnu::always_inline]] inline bool count_free(recorder& r, poolshim_stats_shard* sh, std::uint64_t ptr,
                                              poolshim_stats_live* copy) noexcept {
  if (!r.live.remove<Ops>(ptr, copy)) return false;
  const bool temporary = tl.last_alloc == ptr;
  if (temporary) tl.last_alloc = 0;
  r.sites->on_free<Ops>(copy->stack, copy->bytes, temporary, r.shards.local_site(sh, copy->stack));
  const int slot = copy->device * POOLSHIM_STATS_KINDS + copy->kind;
  poolshim_stats_kind& kc = r.kinds[slot];
  if (sh != nullptr)
    bump(sh->kinds[slot].frees, 1);
  else
    Ops::fetch_add(kc.frees, std::uint64_t{1});
  Ops::fetch_add(kc.live_bytes, -static_cast<std::int64_t>(copy->bytes));
  return true;
}

}  // namespace

namespace detail {
std::atomic<int> g_state{0};
bool recording_slow() noexcept { return start_or_wait() != nullptr; }
}  // namespace detail

// Marks this thread as inside the recorder for one event (tl.in_recorder); `nested` when it was.
struct recorder_scope {
  bool nested = tl.in_recorder;
  recorder_scope() noexcept { tl.in_recorder = true; }
  ~recorder_scope() { tl.in_recorder = nested; }
  recorder_scope(const recorder_scope&) = delete;
  recorder_scope& operator=(const recorder_scope&) = delete;
};

void record_alloc(kind k, int device, std::uint64_t ptr, std::uint64_t bytes, std::uint64_t stream) noexcept {
  recorder* r = active();
  if (r == nullptr || ptr <= live_table::k_claimed) return;
  const recorder_scope scope;
  thread_state* ts = scope.nested ? nullptr : my_state(*r);
  const std::uint32_t id = r->stacks.find(ts != nullptr ? &ts->cache : nullptr,
                                          reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0)));
  tl.last_alloc = ptr;
  poolshim_stats_shard* sh = ts != nullptr ? ts->shard : nullptr;
  const int dev = device >= 0 && device < POOLSHIM_STATS_DEVICES ? device : 0;
  std::uint64_t peak_at = 0;
  {
    const sole_scope sole(g_sole);
    peak_at = sole.sole() ? count_alloc<sole_ops>(*r, sh, id, static_cast<int>(k), dev, ptr, bytes)
                          : count_alloc<locked_ops>(*r, sh, id, static_cast<int>(k), dev, ptr, bytes);
  }
  const std::uint64_t n = r->shards.note_event(sh);
  (void)r->ring.push(POOLSHIM_STATS_EVENT_ALLOC, ptr, bytes, id, dev, static_cast<int>(k), stream);
  if (peak_at != 0)
    r->timeline.on_peak(peak_at);
  else
    r->timeline.on_event(n);
}

void record_free(kind k, std::uint64_t ptr, std::uint64_t stream) noexcept {
  (void)k;
  recorder* r = active();
  if (r == nullptr || ptr <= live_table::k_claimed) return;
  const recorder_scope scope;
  // Before the counts: setting up a thread's state allocates, which must not happen inside a
  // sole_scope (a revoking thread would wait for it).
  thread_state* ts = scope.nested ? nullptr : my_state(*r);
  poolshim_stats_shard* sh = ts != nullptr ? ts->shard : nullptr;
  poolshim_stats_live copy;
  bool tracked = false;
  {
    const sole_scope sole(g_sole);
    tracked = sole.sole() ? count_free<sole_ops>(*r, sh, ptr, &copy) : count_free<locked_ops>(*r, sh, ptr, &copy);
  }
  if (!tracked) {
    atomic_at(r->header->untracked_frees).fetch_add(1, std::memory_order_relaxed);
    return;
  }
  r->timeline.on_event(r->shards.note_event(sh));
  (void)r->ring.push(POOLSHIM_STATS_EVENT_FREE, ptr, copy.bytes, copy.stack, copy.device, copy.kind, stream);
}

void record_segment(int device, std::uint64_t base, std::uint64_t bytes, bool taken) noexcept {
  // A segment given back while the recorder is not running has no event to pair with.
  recorder* r = taken ? active() : g_state.load(std::memory_order_acquire) == 2 ? &g_rec : nullptr;
  if (r == nullptr) return;
  const int dev = device >= 0 && device < POOLSHIM_STATS_DEVICES ? device : 0;
  (void)r->ring.push(taken ? POOLSHIM_STATS_EVENT_SEGMENT_ALLOC : POOLSHIM_STATS_EVENT_SEGMENT_FREE, base, bytes, 0,
                     dev, static_cast<int>(kind::device));
}

void record_oom(kind k, int device, std::uint64_t bytes, std::uint64_t device_free, std::uint64_t stream) noexcept {
  recorder* r = active();
  if (r == nullptr || r->ring.capacity() == 0) return;  // only the ring shows it: no unwind for nothing
  const recorder_scope scope;
  thread_state* ts = scope.nested ? nullptr : my_state(*r);
  const std::uint32_t id = r->stacks.find(ts != nullptr ? &ts->cache : nullptr,
                                          reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0)));
  const int dev = device >= 0 && device < POOLSHIM_STATS_DEVICES ? device : 0;
  (void)r->ring.push(POOLSHIM_STATS_EVENT_OOM, device_free, bytes, id, dev, static_cast<int>(k), stream);
}

void record_pool_figures(std::uint64_t device_hits, std::uint64_t device_allocs, std::uint64_t host_hits,
                         std::uint64_t host_allocs) noexcept {
  if (g_state.load(std::memory_order_acquire) != 2) return;
  poolshim_stats_header& h = *g_rec.header;
  atomic_at(h.device_pool_hits).store(device_hits, std::memory_order_relaxed);
  atomic_at(h.device_pool_allocs).store(device_allocs, std::memory_order_relaxed);
  atomic_at(h.host_pool_hits).store(host_hits, std::memory_order_relaxed);
  atomic_at(h.host_pool_allocs).store(host_allocs, std::memory_order_relaxed);
}

void record_exit() noexcept {
  if (g_state.load(std::memory_order_acquire) != 2) return;
  const std::uint64_t now = now_ns();
  g_rec.timeline.sample(now, false, true);  // the end of the line: what was still live at exit
  atomic_at(g_rec.header->end_ns).store(now, std::memory_order_release);
}

const char* stats_path() noexcept { return g_state.load(std::memory_order_acquire) == 2 ? g_rec.path : ""; }

}  // namespace poolshim::stats

// The call-site recorder (recorder.h) over the stats file (include/poolshim/stats_file.h).
#include "stats/recorder.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <new>

#include "base/process.h"
#include "base/log.h"
#include "poolshim/stats_file.h"
#include "stats/python_frames.h"
#include "stats/site_stats.h"
#include "stats/stack_table.h"
#include "stats/unwinder.h"

namespace poolshim::stats {
namespace {

static_assert(sizeof(stack_slot) == sizeof(poolshim_stats_slot) && offsetof(stack_slot, frames_at) == 8);
static_assert(sizeof(site_counters) == sizeof(poolshim_stats_site));
static_assert(sizeof(site_local) == sizeof(poolshim_stats_shard_site) &&
              offsetof(site_local, allocs) == offsetof(poolshim_stats_shard_site, allocs) &&
              offsetof(site_local, temporary) == offsetof(poolshim_stats_shard_site, temporary));
static_assert(offsetof(poolshim_stats_header, process_peak) == offsetof(poolshim_stats_header, process_live) + 8 &&
              offsetof(poolshim_stats_header, peak_epoch) == offsetof(poolshim_stats_header, process_live) + 16);

constexpr std::uint32_t k_slots = 1u << 14;
constexpr std::uint32_t k_arena_frames = 1u << 19;
constexpr std::uint32_t k_live = 1u << 18;
constexpr std::uint32_t k_modules = 512;
constexpr std::uint32_t k_shards = 256;  // threads with their own counters at once; others share
constexpr std::size_t k_python_bytes = std::size_t{8} << 20;
constexpr std::uint64_t k_empty = 0, k_deleted = 1, k_claimed = 2;  // live-table markers; real pointers are larger
// Slots a live-table insert or lookup looks at, at most: deleted slots are reused but never turn
// empty again, so without a bound a long run would make every untracked free scan the whole table.
constexpr std::size_t k_max_probe = 512;

std::uint64_t now_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::size_t align(std::size_t v) noexcept { return (v + 63) & ~std::size_t{63}; }

template <class T>
std::atomic<T>& atomic_at(T& v) noexcept {
  static_assert(sizeof(std::atomic<T>) == sizeof(T));
  return *reinterpret_cast<std::atomic<T>*>(&v);
}

struct recorder {
  poolshim_stats_header* header = nullptr;
  poolshim_stats_module* modules = nullptr;
  poolshim_stats_kind* kinds = nullptr;
  poolshim_stats_live* live = nullptr;
  poolshim_stats_shard* shards = nullptr;
  poolshim_stats_event* events = nullptr;
  stack_table* table = nullptr;
  site_stats* sites = nullptr;
  std::uintptr_t shim_begin = 0, shim_end = 0;  // frames in here are the shim's own
  std::size_t mapped = 0;
  char path[512] = {};
  std::uint32_t depth = 32;
  bool python = false;  // Python frames replace the eval loop's (POOLSHIM_STATS=python)
};

// 0: not started; 1: starting; 2: running; 3: off or failed for good.
std::atomic<int> g_state{0};
recorder g_rec;
std::atomic<std::uint32_t> g_generation{1};  // bumped in a fork child: the parent's shards are gone
pthread_key_t g_thread_key;
bool g_thread_key_ok = false;
void release_thread(void* p) noexcept;  // a thread's state and shard back, at its exit

// The address range of libpoolshim.so (or of the binary holding this code, in tests).
void find_own_range(recorder& r) noexcept {
  module_range(reinterpret_cast<std::uintptr_t>(&record_alloc), &r.shim_begin, &r.shim_end);
}

// Records every loaded module the file does not list yet (called when a new stack is interned,
// with no shim lock held; dl_iterate_phdr takes the loader's lock, which is recursive).
void refresh_modules(recorder& r) noexcept {
  dl_iterate_phdr(
      [](dl_phdr_info* i, std::size_t, void* p) {
        auto& rec = *static_cast<recorder*>(p);
        std::uintptr_t lo = UINTPTR_MAX, hi = 0;
        for (int k = 0; k < i->dlpi_phnum; ++k) {
          if (i->dlpi_phdr[k].p_type != PT_LOAD) continue;
          lo = std::min<std::uintptr_t>(lo, i->dlpi_addr + i->dlpi_phdr[k].p_vaddr);
          hi = std::max<std::uintptr_t>(hi, i->dlpi_addr + i->dlpi_phdr[k].p_vaddr + i->dlpi_phdr[k].p_memsz);
        }
        if (hi == 0) return 0;
        auto& count = atomic_at(rec.header->module_count);
        const std::uint32_t n = count.load(std::memory_order_acquire);
        for (std::uint32_t m = 0; m < n; ++m)
          if (rec.modules[m].start == lo && rec.modules[m].end == hi) return 0;
        if (n >= rec.header->module_capacity) return 1;
        poolshim_stats_module& mod = rec.modules[n];
        mod.start = lo;
        mod.end = hi;
        mod.load_bias = i->dlpi_addr;
        const char* name = i->dlpi_name != nullptr && i->dlpi_name[0] != '\0' ? i->dlpi_name : nullptr;
        if (name == nullptr) {  // the main program
          const ssize_t len = readlink("/proc/self/exe", mod.path, sizeof mod.path - 1);
          mod.path[len > 0 ? len : 0] = '\0';
        } else {
          std::snprintf(mod.path, sizeof mod.path, "%s", name);
        }
        for (int k = 0; k < i->dlpi_phnum; ++k) {  // the GNU build-id note, when there is one
          if (i->dlpi_phdr[k].p_type != PT_NOTE) continue;
          const auto* at = reinterpret_cast<const unsigned char*>(i->dlpi_addr + i->dlpi_phdr[k].p_vaddr);
          const unsigned char* end = at + i->dlpi_phdr[k].p_memsz;
          while (at + sizeof(ElfW(Nhdr)) <= end) {
            const auto* nh = reinterpret_cast<const ElfW(Nhdr)*>(at);
            const unsigned char* desc = at + sizeof *nh + ((nh->n_namesz + 3) & ~3u);
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && desc + nh->n_descsz <= end &&
                nh->n_descsz <= sizeof mod.build_id) {
              std::memcpy(mod.build_id, desc, nh->n_descsz);
              mod.build_id_size = nh->n_descsz;
            }
            at = desc + ((nh->n_descsz + 3) & ~3u);
          }
        }
        count.store(n + 1, std::memory_order_release);
        return 0;
      },
      &r);
}

bool known_module(const recorder& r, std::uintptr_t pc) noexcept {
  const std::uint32_t n = atomic_at(r.header->module_count).load(std::memory_order_acquire);
  for (std::uint32_t m = 0; m < n; ++m)
    if (pc >= r.modules[m].start && pc < r.modules[m].end) return true;
  return false;
}

void read_cmdline(char* out, std::size_t cap) noexcept {
  out[0] = '\0';
  const int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  const ssize_t n = read(fd, out, cap - 1);
  close(fd);
  if (n <= 0) return;
  for (ssize_t i = 0; i < n; ++i)
    if (out[i] == '\0') out[i] = ' ';
  out[n > 0 && out[n - 1] == ' ' ? n - 1 : n] = '\0';
}

// What a file holds: the full layout, or the small one that counts without stacks.
struct layout {
  std::uint32_t slots, arena_frames, live, shards, ring;
  std::size_t python;
  std::size_t modules_at, slots_at, arena_at, sites_at, kinds_at, live_at, shards_at, events_at, python_at, size;
};

layout plan(std::uint32_t slots, std::uint32_t arena_frames, std::uint32_t live, std::uint32_t shards,
            std::uint32_t ring, std::size_t python) noexcept {
  layout l{slots, arena_frames, live, shards, ring, python, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t off = align(sizeof(poolshim_stats_header));
  l.modules_at = off;
  off = align(off + k_modules * sizeof(poolshim_stats_module));
  l.slots_at = off;
  off = align(off + std::size_t{slots} * sizeof(poolshim_stats_slot));
  l.arena_at = off;
  off = align(off + std::size_t{arena_frames} * sizeof(std::uint64_t));
  l.sites_at = off;
  off = align(off + (std::size_t{slots} + 1) * sizeof(poolshim_stats_site));
  l.kinds_at = off;
  off = align(off + POOLSHIM_STATS_DEVICES * POOLSHIM_STATS_KINDS * sizeof(poolshim_stats_kind));
  l.live_at = off;
  off = align(off + std::size_t{live} * sizeof(poolshim_stats_live));
  l.shards_at = off;
  off = align(off + std::size_t{shards} * sizeof(poolshim_stats_shard));
  l.events_at = off;
  off = align(off + std::size_t{ring} * sizeof(poolshim_stats_event));
  l.python_at = off;
  l.size = align(off + python);
  return l;
}

// Creates the file (a new one: O_EXCL) with every page of `size` reserved (a sparse file on a full
// tmpfs would raise SIGBUS in the program later) and maps it; null (the error in *err) when it
// cannot, with nothing left behind.
void* create_file(const char* path, std::size_t size, int* err) noexcept {
  const int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    *err = errno;
    return nullptr;
  }
  *err = posix_fallocate(fd, 0, static_cast<off_t>(size));
  void* p = *err == 0 ? mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
  if (*err == 0 && p == MAP_FAILED) *err = errno;
  close(fd);
  if (p != MAP_FAILED) return p;
  unlink(path);
  return nullptr;
}

bool start(recorder& r) noexcept {
  const config& cfg = base::current_config();
  const char* dir = cfg.stats_dir != nullptr && cfg.stats_dir[0] != '\0' ? cfg.stats_dir : "/dev/shm";
  r.depth = static_cast<std::uint32_t>(std::min<std::size_t>(std::max<std::size_t>(cfg.stats_depth, 1), 64));
  const std::uint64_t started = now_ns();
  std::snprintf(r.path, sizeof r.path, "%s/poolshim-%u-%d-%llu.stats", dir, static_cast<unsigned>(getuid()),
                static_cast<int>(getpid()), static_cast<unsigned long long>(started));
  std::uint32_t ring = 0;
  if (cfg.stats_events != 0)
    ring = static_cast<std::uint32_t>(std::bit_ceil(std::min<std::size_t>(cfg.stats_events, std::size_t{1} << 24)));
  const bool want_python = std::strcmp(cfg.stats, "python") == 0;
  layout l = plan(k_slots, k_arena_frames, k_live, k_shards, ring, want_python ? k_python_bytes : 0);
  const layout small = plan(0, 0, 1u << 14, 16, 0, 0);
  // A file larger than RLIMIT_FSIZE must not be tried: the kernel answers with SIGXFSZ, whose
  // default action kills the program, before posix_fallocate could return EFBIG.
  rlimit fsize{};
  const std::size_t limit = getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur != RLIM_INFINITY
                                ? static_cast<std::size_t>(fsize.rlim_cur)
                                : SIZE_MAX;
  if (small.size > limit) {
    POOLSHIM_LOG_WARN("POOLSHIM_STATS: the file size limit (ulimit -f: {} bytes) is below the {} bytes of the "
                      "smallest stats file: no call-site statistics", limit, small.size);
    return false;
  }
  int err = l.size > limit ? EFBIG : 0;
  void* p = err == 0 ? create_file(r.path, l.size, &err) : nullptr;
  bool stacks = true;
  if (p == nullptr && (err == ENOSPC || err == EFBIG || err == EDQUOT)) {
    // No room (a full file system, a quota, ulimit -f): count per device and kind without stacks
    // in a file of under 1 MiB rather than nothing, and say so (in the log and in the file's flags).
    const std::size_t wanted = l.size;
    const int why = err;
    l = small;
    p = create_file(r.path, l.size, &err);
    stacks = false;
    if (p != nullptr)
      POOLSHIM_LOG_WARN("POOLSHIM_STATS: no room for {} bytes in {} ({}): counting without call stacks, event ring "
                        "or Python frames in {} bytes",
                        wanted, dir, why == EFBIG ? "the file size limit, ulimit -f" : std::strerror(why), l.size);
  }
  if (p == nullptr) {
    POOLSHIM_LOG_WARN("POOLSHIM_STATS: cannot reserve {} bytes for {} ({}): no call-site statistics", l.size, r.path,
                      std::strerror(err));
    return false;
  }
  (void)madvise(p, l.size, MADV_DONTFORK);  // a fork child starts its own file
  auto* base = static_cast<unsigned char*>(p);
  auto* h = reinterpret_cast<poolshim_stats_header*>(base);
  std::memcpy(h->magic, POOLSHIM_STATS_MAGIC, sizeof POOLSHIM_STATS_MAGIC);
  h->version = POOLSHIM_STATS_VERSION;
  h->header_size = sizeof *h;
  h->file_size = l.size;
  h->pid = getpid();
  h->uid = getuid();
  h->start_ns = started;
  const ssize_t n = readlink("/proc/self/exe", h->exe, sizeof h->exe - 1);
  h->exe[n > 0 ? n : 0] = '\0';
  read_cmdline(h->cmdline, sizeof h->cmdline);
  h->depth_cap = stacks ? r.depth : 0;
  h->flags = stacks ? 0 : 2;
  h->modules_offset = l.modules_at;
  h->module_capacity = k_modules;
  h->slots_offset = l.slots_at;
  h->slot_count = l.slots;
  h->arena_frames = l.arena_frames;
  h->arena_offset = l.arena_at;
  h->sites_offset = l.sites_at;
  h->kinds_offset = l.kinds_at;
  h->live_offset = l.live_at;
  h->live_capacity = l.live;
  h->shards_offset = l.shards_at;
  h->shard_count = l.shards;
  h->shard_size = sizeof(poolshim_stats_shard);
  h->events_offset = l.events_at;
  h->event_capacity = l.ring;
  h->python_offset = l.python != 0 ? l.python_at : 0;
  h->python_size = l.python;
  r.header = h;
  r.shards = reinterpret_cast<poolshim_stats_shard*>(base + l.shards_at);
  r.events = reinterpret_cast<poolshim_stats_event*>(base + l.events_at);
  r.modules = reinterpret_cast<poolshim_stats_module*>(base + l.modules_at);
  r.kinds = reinterpret_cast<poolshim_stats_kind*>(base + l.kinds_at);
  r.live = reinterpret_cast<poolshim_stats_live*>(base + l.live_at);
  if (stacks) {
    r.table = new (std::nothrow) stack_table(reinterpret_cast<stack_slot*>(base + l.slots_at), l.slots,
                                             reinterpret_cast<std::uintptr_t*>(base + l.arena_at), l.arena_frames);
    if (r.table == nullptr) return false;
  }
  r.sites = new (std::nothrow) site_stats(reinterpret_cast<site_counters*>(base + l.sites_at), std::size_t{l.slots} + 1,
                                          reinterpret_cast<process_figures*>(&h->process_live));
  if (r.sites == nullptr) return false;
  r.mapped = l.size;
  find_own_range(r);
  refresh_modules(r);
  if (stacks) (void)unwinder_available();  // loads and warms libunwind now, not in the middle of an event
  if (l.python != 0) {
    r.python = python_start(base + l.python_at, l.python);  // says why when it cannot
  }
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

recorder* active() noexcept {
  const int s = g_state.load(std::memory_order_acquire);
  if (s == 2) [[likely]]
    return &g_rec;
  if (s == 1) return wait_for_start();
  if (s != 0) return nullptr;
  const config& cfg = base::current_config();
  if (cfg.stats == nullptr || (std::strcmp(cfg.stats, "native") != 0 && std::strcmp(cfg.stats, "python") != 0)) {
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

// The per-thread shortcut (DESIGN.md): a program allocates from the same stack again and again, so
// each thread remembers its last stacks with the stack addresses that hold their return addresses.
// When the shim's own stack pointer is where it was then and every remembered slot still holds the
// same return address, the call chain is the same (to the depth kept): the stack id is reused
// without unwinding — a few dozen loads instead of ~7 ns per frame of unw_backtrace and a hash.
struct cached_stack {
  std::uintptr_t sp;  // stack_of_caller's frame address when this was recorded
  int depth;
  std::uint32_t id;
  struct {
    std::uintptr_t slot, ip;  // where a return address lives on the stack, and what it was
  } frames[64];
};
struct thread_stacks {
  cached_stack entry[8];  // a loop over a few call sites stays in it
  // Entries most recently used first (order[i] - 1 is an index; 0: not used yet, zero-initialised
  // TLS): a hit stops the scan, so stacks no longer in use (a warm-up reached from elsewhere) sink
  // to the end and cost nothing until they are replaced.
  std::uint64_t order;  // byte i: the entry used i-th most recently
};
// What a thread keeps for the recorder, allocated on its first event and freed at its exit: TLS
// holds only a pointer (the stack cache's 8.7 KB as initial-exec TLS would be carved out of every
// thread's stack in every preloaded process, statistics on or off).
struct thread_state {
  std::uint32_t generation;    // g_generation when set up; another value: stale (a fork child)
  poolshim_stats_shard* shard;  // null: this thread counts in the shared counters
  // The thread's own stack, mapped for as long as the thread lives: the cache is used only while
  // the stack pointer and every remembered slot lie in it, so reading a slot can never fault (a
  // coroutine or fiber stack, or a sigaltstack, may be unmapped by the next event). 0, 0: unknown,
  // no cache.
  std::uintptr_t stack_lo, stack_hi;
  std::uint32_t rng;       // xorshift state for the sampled re-check (0: not seeded yet)
  std::uint32_t misses;    // cache misses and captures with slots, for their rate limit
  std::uint32_t captures;
  bool cache_off;          // a re-check found a wrong hit: this thread's stacks are not what
                           // the cache's premise needs (frames of varying size), unwind always
  thread_stacks stacks;
};
[[gnu::tls_model("initial-exec")]] thread_local thread_state* tl_state = nullptr;
// Set once the thread's state was released at its exit: later events (from other destructors)
// count in the shared counters without a cache instead of allocating a state nobody frees.
[[gnu::tls_model("initial-exec")]] thread_local bool tl_exiting = false;
// Set while this thread is inside record_alloc/record_free: an event that comes in the middle of
// one (a signal handler that allocates, or a malloc that grows with cudaHostAlloc while the
// recorder allocates the thread's state) counts in the shared counters with atomics, without the
// thread's cache or shard, which the interrupted event may be halfway through changing.
[[gnu::tls_model("initial-exec")]] thread_local bool tl_in_recorder = false;
// The last pointer this thread allocated, until it allocates again: a free of it is temporary.
[[gnu::tls_model("initial-exec")]] thread_local std::uint64_t tl_last_alloc = 0;

// Pads a cached stack to whole groups of four: a slot that always holds what is expected.
constexpr std::uintptr_t k_pad_value = 0;

[[gnu::always_inline]] inline std::uintptr_t group_diff(const cached_stack& c, int g) noexcept {
  const auto* f = c.frames + 4 * g;
  return (*reinterpret_cast<const std::uintptr_t*>(f[0].slot) ^ f[0].ip) |
         (*reinterpret_cast<const std::uintptr_t*>(f[1].slot) ^ f[1].ip) |
         (*reinterpret_cast<const std::uintptr_t*>(f[2].slot) ^ f[2].ip) |
         (*reinterpret_cast<const std::uintptr_t*>(f[3].slot) ^ f[3].ip);
}

int order_at(const thread_stacks& t, int pos) noexcept { return static_cast<int>((t.order >> (8 * pos)) & 0xff); }

void move_to_front(thread_stacks& t, int pos) noexcept {
  const std::uint64_t hit = (t.order >> (8 * pos)) & 0xff;
  const std::uint64_t below = t.order & ((std::uint64_t{1} << (8 * pos)) - 1);  // pos < 8
  const std::uint64_t above = pos == 7 ? 0 : t.order & ~((std::uint64_t{1} << (8 * (pos + 1))) - 1);
  t.order = above | (below << 8) | hit;
}

std::uint32_t lookup_cached(thread_stacks& t, std::uintptr_t sp) noexcept {
  for (int pos = 0; pos < 8 && order_at(t, pos) != 0; ++pos) {
    const cached_stack& c = t.entry[order_at(t, pos) - 1];
    if (c.sp != sp || c.id == 0) continue;
    // Four frames at a time, without a branch per frame. Stacks that differ mostly differ near the
    // inside (another call site, a few frames past the CUDA runtime's own) or near the outside
    // (the same loop reached from another place in main): those groups first, the middle last.
    const int groups = (c.depth + 3) / 4;
    if (group_diff(c, 0) != 0 || (groups > 1 && group_diff(c, 1) != 0) ||
        (groups > 2 && group_diff(c, groups - 1) != 0))
      continue;
    std::uintptr_t diff = 0;
    for (int g = 2; g < groups - 1 && diff == 0; ++g) diff = group_diff(c, g);
    if (diff == 0) {
      if (pos != 0) move_to_front(t, pos);
      return c.id;
    }
  }
  return 0;
}

// Cache-hit re-check: one hit in k_recheck, drawn at random (a fixed stride would alias with a
// program that alternates a right and a wrong hit), is unwound anyway and compared with the id.
// The premise (same stack pointer and the same return address in every remembered slot means the
// same call chain) fails for frames whose size varies (alloca, dynamic realignment): a caller's
// slot moves and the old place still holds the old return address. A wrong hit turns the
// thread's cache off, so a misattribution lasts at most ~k_recheck events of one thread.
constexpr std::uint32_t k_recheck = 64;
// Captures with slots (unw_step: about 25 sigprocmask calls per event with the system libunwind,
// ~15 us) are rate-limited: the first k_free_captures of a thread, then one per k_capture_every
// misses. A loop over more sites than the cache holds then keeps most of them cached (a cache
// that took every miss would evict the next site each time, LRU on a cycle), and the others cost
// an unw_backtrace (~7 ns per frame) instead of a capture.
constexpr std::uint32_t k_free_captures = 16;
constexpr std::uint32_t k_capture_every = 256;

bool on_own_stack(const thread_state& ts, std::uintptr_t a) noexcept {
  return a >= ts.stack_lo && a + sizeof(std::uintptr_t) <= ts.stack_hi;
}

// Puts the stack `frames` (depth of them, from stack_of_caller at `sp`, id `id`) into the thread's
// cache, with the slots of an unw_step capture of the same chain; nothing when that capture does
// not give the same frames or a slot lies off the thread's stack.
[[gnu::noinline]] void cache_stack(recorder& r, thread_state& ts, std::uintptr_t sp, void* const* frames, int depth,
                                   std::uint32_t id) noexcept {
  void* again[64 + 16];
  std::uintptr_t slots[64 + 16];
  const int n = capture_stack_with_slots(again, slots, static_cast<int>(r.depth) + 16, 0);
  int first = 0;
  while (first < n && reinterpret_cast<std::uintptr_t>(again[first]) >= r.shim_begin &&
         reinterpret_cast<std::uintptr_t>(again[first]) < r.shim_end)
    ++first;
  if (n - first < depth) return;
  for (int i = 0; i < depth; ++i)
    if (again[first + i] != frames[i] || !on_own_stack(ts, slots[first + i])) return;
  thread_stacks& t = ts.stacks;
  int pos = 0;  // the first unused entry, else the least recently used
  while (pos < 7 && order_at(t, pos) != 0) ++pos;
  if (order_at(t, pos) == 0) t.order |= static_cast<std::uint64_t>(pos + 1) << (8 * pos);
  move_to_front(t, pos);
  cached_stack& c = t.entry[order_at(t, 0) - 1];
  c.sp = sp;
  c.depth = depth;
  c.id = id;
  for (int i = 0; i < depth; ++i) {
    c.frames[i].slot = slots[first + i];
    c.frames[i].ip = reinterpret_cast<std::uintptr_t>(frames[i]);
  }
  for (int i = depth; i < ((depth + 3) & ~3); ++i) c.frames[i] = {reinterpret_cast<std::uintptr_t>(&k_pad_value), 0};
}

std::atomic<int> g_skip_guess{4};  // frames of the shim's own above the caller's, plus one

// The unwind of a miss. Under TSan, unw_step: unw_backtrace keeps a per-thread trace cache whose
// key destructor locks a mutex in the last destructor round, after TSan has torn the thread's
// state down, and TSan's runtime crashes there (the TSan run of the recorder test did). Only the
// sanitizer build differs; the logic around it is the same.
int capture_for_miss(void** frames, int max) noexcept {
#if defined(__SANITIZE_THREAD__)
  std::uintptr_t unused[64 + 16];
  return capture_stack_with_slots(frames, unused, max, 0);
#else
  return capture_stack(frames, max, 0);
#endif
}

// `ts`: the thread's state (its stack cache), or null (none: no cache).
[[gnu::noinline]] std::uint32_t stack_of_caller(recorder& r, thread_state* ts) noexcept {
  if (r.table == nullptr) return 0;  // counting without stacks (the file system was full)
  const auto sp = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
  // With Python frames the stack is not cached (the same native frames run other Python lines).
  const bool cacheable = ts != nullptr && !ts->cache_off && !r.python && on_own_stack(*ts, sp);
  std::uint32_t hit = 0;
  if (cacheable) {
    hit = lookup_cached(ts->stacks, sp);
    if (hit != 0) {
      std::uint32_t x = ts->rng != 0 ? ts->rng : 0x9e3779b9u;  // seeded alike: runs repeat exactly
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      ts->rng = x;
      if (x % k_recheck != 0) return hit;
    }
  }
  void* frames[64 + 16];
  // Unwind the depth kept plus the shim's own frames, no more (~7 ns a frame): how many of those
  // there are is learnt (different hooks have different paths); a stack cut short by a guess that
  // was too small is unwound again.
  int skip = g_skip_guess.load(std::memory_order_relaxed);
  const int asked = static_cast<int>(r.depth) + skip;
  int n = capture_for_miss(frames, asked);
  int first = 0;  // the shim's own frames (hooks, seam, recorder) are not the caller's
  while (first < n && reinterpret_cast<std::uintptr_t>(frames[first]) >= r.shim_begin &&
         reinterpret_cast<std::uintptr_t>(frames[first]) < r.shim_end)
    ++first;
  if (first >= skip && first < 16) {
    g_skip_guess.store(first + 1, std::memory_order_relaxed);
    if (n == asked) n = capture_for_miss(frames, static_cast<int>(r.depth) + 16);  // cut short: again
  }
  bool python = false;
  if (r.python) n = first + python_expand(frames + first, n - first, 64 + 16 - first, &python);
  const int depth = std::min(n - first, static_cast<int>(r.depth));
  const std::size_t before = r.table->size();
  const std::uint32_t id = r.table->intern(frames + first, depth);
  if (hit != 0) {
    if (hit == id || id == 0) return hit;  // right, or not to be told (the table is full)
    ts->cache_off = true;  // a wrong hit: see k_recheck
    return id;
  }
  if (id == 0 && (atomic_at(r.header->flags).load(std::memory_order_relaxed) & 1) == 0)
    atomic_at(r.header->flags).fetch_or(1, std::memory_order_relaxed);
  if (r.table->size() != before)  // a new stack: make sure its modules are listed
    for (int i = first; i < first + depth; ++i)
      if ((reinterpret_cast<std::uintptr_t>(frames[i]) >> 48) != POOLSHIM_STATS_PYFRAME_TAG &&
          !known_module(r, reinterpret_cast<std::uintptr_t>(frames[i]))) {
        refresh_modules(r);
        break;
      }
  if (cacheable && id != 0 && depth > 0 && !python) {
    ++ts->misses;
    if (ts->captures < k_free_captures || ts->misses >= k_capture_every) {
      ++ts->captures;
      ts->misses = 0;
      cache_stack(r, *ts, sp, frames + first, depth, id);
    }
  }
  return id;
}

std::size_t live_slot(std::uint64_t ptr) noexcept {
  std::uint64_t x = ptr * 0x9e3779b97f4a7c15ull;
  return static_cast<std::size_t>(x ^ (x >> 29));
}

// A counter only this thread writes (its shard): a plain load and store, no lock prefix.
void bump(std::uint64_t& c, std::uint64_t v) noexcept {
  std::atomic_ref<std::uint64_t> a(c);
  a.store(a.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}

// The thread's shard (stats_file.h): claimed with its state on its first event, folded into the
// shared counters and released when the thread exits (a pthread key's destructor). A thread that
// finds none free counts in the shared counters with atomics, as every thread did before shards.

void fold_site(recorder& r, poolshim_stats_shard_site& e) noexcept {
  if (e.allocs != 0 || e.frees != 0 || e.temporary != 0) r.sites->fold(*reinterpret_cast<site_local*>(&e));
  std::atomic_ref<std::uint32_t>(e.stack).store(0, std::memory_order_relaxed);
  e.allocs = e.frees = e.bytes_allocated = e.bytes_freed = e.temporary = 0;
}

void release_shard(recorder& r, poolshim_stats_shard* sh) noexcept {
  for (poolshim_stats_shard_site& e : sh->sites) fold_site(r, e);
  for (int i = 0; i < POOLSHIM_STATS_DEVICES * POOLSHIM_STATS_KINDS; ++i) {
    poolshim_stats_shard_kind& k = sh->kinds[i];
    poolshim_stats_kind& kc = r.kinds[i];
    if (k.allocs != 0) atomic_at(kc.allocs).fetch_add(k.allocs, std::memory_order_relaxed);
    if (k.frees != 0) atomic_at(kc.frees).fetch_add(k.frees, std::memory_order_relaxed);
    if (k.bytes_allocated != 0) atomic_at(kc.bytes_allocated).fetch_add(k.bytes_allocated, std::memory_order_relaxed);
    k = {};
  }
  atomic_at(r.header->events).fetch_add(sh->events, std::memory_order_relaxed);
  sh->events = 0;
  sh->tid = 0;
  atomic_at(sh->in_use).store(0, std::memory_order_release);
}

void release_thread(void* p) noexcept {
  auto* ts = static_cast<thread_state*>(p);
  if (ts == nullptr) return;
  if (ts->shard != nullptr && g_state.load(std::memory_order_acquire) == 2 &&
      ts->generation == g_generation.load(std::memory_order_relaxed))
    release_shard(g_rec, ts->shard);
  if (tl_state == ts) tl_state = nullptr;
  tl_exiting = true;
  delete ts;
}

poolshim_stats_shard* claim_shard(recorder& r) noexcept {
  for (std::uint32_t i = 0; i < r.header->shard_count; ++i) {
    std::uint32_t expected = 0;
    if (atomic_at(r.shards[i].in_use).load(std::memory_order_relaxed) != 0 ||
        !atomic_at(r.shards[i].in_use).compare_exchange_strong(expected, 1, std::memory_order_acq_rel))
      continue;
    r.shards[i].tid = static_cast<std::int32_t>(gettid());
    return &r.shards[i];
  }
  return nullptr;
}

// The calling thread's state, set up on its first event (null: none, count without it).
thread_state* my_state(recorder& r) noexcept {
  thread_state* ts = tl_state;
  const std::uint32_t gen = g_generation.load(std::memory_order_relaxed);
  if (ts != nullptr && ts->generation == gen) [[likely]]
    return ts;
  if (tl_exiting || !g_thread_key_ok) return nullptr;
  if (ts == nullptr) {
    ts = new (std::nothrow) thread_state{};
    if (ts == nullptr) return nullptr;
    if (pthread_setspecific(g_thread_key, ts) != 0) {  // nothing would free it
      delete ts;
      return nullptr;
    }
    tl_state = ts;
  } else {
    *ts = thread_state{};  // a fork child: the parent's shard and stack ids are not this file's
  }
  ts->generation = gen;
  ts->shard = claim_shard(r);
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* lo = nullptr;
    std::size_t size = 0;
    if (pthread_attr_getstack(&attr, &lo, &size) == 0 && lo != nullptr) {
      ts->stack_lo = reinterpret_cast<std::uintptr_t>(lo);
      ts->stack_hi = ts->stack_lo + size;
    }
    pthread_attr_destroy(&attr);
  }
  return ts;
}

// This thread's entry for stack id (an older site in the same place is folded first).
site_local* local_site(recorder& r, poolshim_stats_shard* sh, std::uint32_t id) noexcept {
  if (sh == nullptr) return nullptr;
  poolshim_stats_shard_site& e = sh->sites[id % POOLSHIM_STATS_SHARD_SITES];
  if (e.stack != id) {
    fold_site(r, e);
    std::atomic_ref<std::uint32_t>(e.stack).store(id, std::memory_order_relaxed);
  }
  return reinterpret_cast<site_local*>(&e);
}

void note_event(recorder& r, poolshim_stats_shard* sh) noexcept {
  if (sh != nullptr)
    bump(sh->events, 1);
  else
    atomic_at(r.header->events).fetch_add(1, std::memory_order_relaxed);
}

constexpr std::uint64_t k_ring_busy = ~std::uint64_t{0};

void ring_event(recorder& r, std::uint8_t action, std::uint64_t ptr, std::uint64_t bytes, std::uint32_t id, int dev,
                int k) noexcept {
  const std::uint32_t cap = r.header->event_capacity;
  if (cap == 0) return;
  const std::uint64_t i = atomic_at(r.header->event_next).fetch_add(1, std::memory_order_relaxed);
  poolshim_stats_event& e = r.events[i & (cap - 1)];
  // The slot is this writer's alone while its seq holds the busy mark; a writer that finds it busy
  // (the ring wrapped around a slower writer) drops its event. Readers take a slot only when seq
  // is the index they expect, so they never see one half-written.
  // Only an older event may be overwritten: a writer overtaken by the ring (a newer event is there
  // already) drops its own.
  std::uint64_t cur = atomic_at(e.seq).load(std::memory_order_relaxed);
  if (cur == k_ring_busy || cur > i ||
      !atomic_at(e.seq).compare_exchange_strong(cur, k_ring_busy, std::memory_order_acquire))
    return;
#if !defined(__SANITIZE_THREAD__)
  // The busy mark must be visible before any field changes (a reader checks seq before and after
  // copying); x86 keeps stores in order, weaker machines need the fence. (TSan cannot model fences:
  // there, the CAS's acquire is what it sees.)
  std::atomic_thread_fence(std::memory_order_release);
#endif
  e.ns = now_ns();
  e.ptr = ptr;
  e.bytes = bytes;
  e.stack = id;
  e.device = static_cast<std::uint16_t>(dev);
  e.kind = static_cast<std::uint8_t>(k);
  e.action = action;
  atomic_at(e.seq).store(i + 1, std::memory_order_release);
}

}  // namespace

bool recording() noexcept { return active() != nullptr; }

// Marks this thread as inside the recorder for one event (tl_in_recorder); `nested` when it was.
struct recorder_scope {
  bool nested = tl_in_recorder;
  recorder_scope() noexcept { tl_in_recorder = true; }
  ~recorder_scope() { tl_in_recorder = nested; }
  recorder_scope(const recorder_scope&) = delete;
  recorder_scope& operator=(const recorder_scope&) = delete;
};

void record_alloc(kind k, int device, std::uint64_t ptr, std::uint64_t bytes) noexcept {
  recorder* r = active();
  if (r == nullptr || ptr <= k_claimed) return;
  const recorder_scope scope;
  thread_state* ts = scope.nested ? nullptr : my_state(*r);
  const std::uint32_t id = stack_of_caller(*r, ts);
  tl_last_alloc = ptr;
  poolshim_stats_shard* sh = ts != nullptr ? ts->shard : nullptr;
  if (r->sites->on_alloc(id, bytes, local_site(*r, sh, id)))
    atomic_at(r->header->peak_ns).store(now_ns(), std::memory_order_relaxed);
  const int dev = device >= 0 && device < POOLSHIM_STATS_DEVICES ? device : 0;
  const int slot = dev * POOLSHIM_STATS_KINDS + static_cast<int>(k);
  poolshim_stats_kind& kc = r->kinds[slot];
  if (sh != nullptr) {
    bump(sh->kinds[slot].allocs, 1);
    bump(sh->kinds[slot].bytes_allocated, bytes);
  } else {
    atomic_at(kc.allocs).fetch_add(1, std::memory_order_relaxed);
    atomic_at(kc.bytes_allocated).fetch_add(bytes, std::memory_order_relaxed);
  }
  const std::int64_t now = atomic_at(kc.live_bytes).fetch_add(static_cast<std::int64_t>(bytes), std::memory_order_relaxed) +
                           static_cast<std::int64_t>(bytes);
  std::int64_t peak = atomic_at(kc.peak_bytes).load(std::memory_order_relaxed);
  while (now > peak) {
    if (atomic_at(kc.peak_bytes).compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
      atomic_at(kc.peak_ns).store(now_ns(), std::memory_order_relaxed);
      break;
    }
  }
  note_event(*r, sh);
  ring_event(*r, 1, ptr, bytes, id, dev, static_cast<int>(k));
  // The live table: claim an empty or deleted slot for ptr (the size, stack and kind first, then
  // the pointer with release order, so a reader that sees the pointer sees the rest).
  const std::size_t mask = r->header->live_capacity - 1;
  for (std::size_t probe = 0, i = live_slot(ptr) & mask; probe <= std::min(mask, k_max_probe);
       ++probe, i = (i + 1) & mask) {
    poolshim_stats_live& e = r->live[i];
    std::uint64_t cur = atomic_at(e.ptr).load(std::memory_order_acquire);
    if (cur != k_empty && cur != k_deleted) continue;
    if (!atomic_at(e.ptr).compare_exchange_strong(cur, k_claimed, std::memory_order_acq_rel)) continue;
    e.bytes = bytes;
    e.stack = id;
    e.device = static_cast<std::uint16_t>(dev);
    e.kind = static_cast<std::uint16_t>(k);
    atomic_at(e.ptr).store(ptr, std::memory_order_release);
    return;
  }
  // No free slot near its place: this block is not tracked (its free will count as untracked, and
  // its bytes stay live in the figures). Said once in the file's flags.
  if ((atomic_at(r->header->flags).load(std::memory_order_relaxed) & 4) == 0)
    atomic_at(r->header->flags).fetch_or(4, std::memory_order_relaxed);
}

void record_free(kind k, std::uint64_t ptr) noexcept {
  (void)k;
  recorder* r = active();
  if (r == nullptr || ptr <= k_claimed) return;
  const recorder_scope scope;
  const std::size_t mask = r->header->live_capacity - 1;
  for (std::size_t probe = 0, i = live_slot(ptr) & mask; probe <= std::min(mask, k_max_probe);
       ++probe, i = (i + 1) & mask) {
    poolshim_stats_live& e = r->live[i];
    std::uint64_t cur = atomic_at(e.ptr).load(std::memory_order_acquire);
    if (cur == k_empty) break;
    if (cur != ptr) continue;
    // The entry is read while it is still ours (published, not yet deleted): once deleted, another
    // thread may claim the slot and overwrite it.
    const poolshim_stats_live copy{ptr, e.bytes, e.stack, e.device, e.kind};
    if (!atomic_at(e.ptr).compare_exchange_strong(cur, k_deleted, std::memory_order_acq_rel)) continue;
    const bool temporary = tl_last_alloc == ptr;
    if (temporary) tl_last_alloc = 0;
    thread_state* ts = scope.nested ? nullptr : my_state(*r);
    poolshim_stats_shard* sh = ts != nullptr ? ts->shard : nullptr;
    r->sites->on_free(copy.stack, copy.bytes, temporary, local_site(*r, sh, copy.stack));
    const int slot = copy.device * POOLSHIM_STATS_KINDS + copy.kind;
    poolshim_stats_kind& kc = r->kinds[slot];
    if (sh != nullptr)
      bump(sh->kinds[slot].frees, 1);
    else
      atomic_at(kc.frees).fetch_add(1, std::memory_order_relaxed);
    atomic_at(kc.live_bytes).fetch_sub(static_cast<std::int64_t>(copy.bytes), std::memory_order_relaxed);
    note_event(*r, sh);
    ring_event(*r, 2, ptr, copy.bytes, copy.stack, copy.device, copy.kind);
    return;
  }
  atomic_at(r->header->untracked_frees).fetch_add(1, std::memory_order_relaxed);
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
  atomic_at(g_rec.header->end_ns).store(now_ns(), std::memory_order_release);
}

const char* stats_path() noexcept { return g_state.load(std::memory_order_acquire) == 2 ? g_rec.path : ""; }

}  // namespace poolshim::stats

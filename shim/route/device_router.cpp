// The device router (device_router.h): one pool per context, found by a lock-free scan of a small
// table (processes have one context per device, rarely more); pools are created under a mutex on
// first use and never destroyed (a forgotten context's pool is retired, its memory gone with it).
#include "route/device_router.h"

#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

#include "base/log.h"
#include "base/process.h"
#include "base/real_driver.h"
#include "base/scoped_context.h"
#include "pool/device_pool.h"
#include "pool/fence.h"
#include "route/capture_state.h"
#include "route/fence_tracker.h"
#include "route/idle_trimmer.h"
#include "source/cuda_segment_resource.h"
#include "source/daemon_fallback_adaptor.h"

namespace poolshim::device_router {
namespace {

constexpr int k_max_pools = 64;
constexpr std::uint64_t k_idle_percent_auto = 1001;  // POOLSHIM_DEVICE_IDLE_PERCENT's default
constexpr std::size_t k_daemon_idle_percent = 5;     // ... with POOLSHIM_DEVICE_SOURCE=daemon

struct entry {
  std::atomic<CUcontext> ctx{nullptr};  // null: free slot or retired
  int device = -1;
  char uuid[48] = {};  // "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as nvidia-smi names it
  cuda_segment_resource* source = nullptr;
  pool::device_pool* pool = nullptr;
  std::atomic<std::size_t> preallocated{0};  // kept by trims that respect it
  // Threads inside the pool's maintenance (trims, the idle release, preallocation: each may give
  // segments back or take them through the driver), and the calls that may destroy the context in
  // flight (each pauses it: a count, as two threads may release a primary context at once and the
  // first, not the last, resumes while the second destroys it). forget_context waits for them to
  // leave: once it returns, nothing frees or maps memory of the context any more (a late cuMemFree
  // could free another allocation that a reset context's address now holds).
  std::atomic<int> maintaining{0};
  std::atomic<int> pauses{0};
  // The idle release's last samples of what a trim could take (idle_tick; its thread only).
  std::size_t samples[k_idle_samples + 1] = {};
  unsigned sampled = 0;
};

entry g_entries[k_max_pools];
std::atomic<int> g_used{0};
std::mutex g_create_mutex;
std::atomic<segment_listener> g_segment_listener{nullptr};

// POOLSHIM_FREE_SYNC=device and unsafe: a free synchronises first (or, unsafe, not at all), so
// every block is ready for reuse at once. fence: the tracker's epochs (fence_tracker.h).
pool::fence& reuse_fence() {
  if (base::current_config().free_sync == free_sync_mode::fence) return fence_tracker::fence();
  static auto* f = new pool::always_ready_fence();  // leaky: outlives every pool
  return *f;
}

bool pooling() noexcept { return base::mode() == run_mode::pool; }

// A device's identity that survives CUDA_VISIBLE_DEVICES reordering: its UUID, or "unknown".
void format_uuid(const real_driver& d, CUdevice dev, char* out, std::size_t cap) noexcept {
  CUuuid u{};
  if (d.cuDeviceGetUuid_v2(&u, dev) != CUDA_SUCCESS) {
    std::snprintf(out, cap, "unknown");
    return;
  }
  const auto* b = reinterpret_cast<const unsigned char*>(u.bytes);
  std::snprintf(out, cap, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
                b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

entry* find_entry(CUcontext ctx) noexcept {
  int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i)
    if (g_entries[i].ctx.load(std::memory_order_acquire) == ctx) return &g_entries[i];
  return nullptr;
}

// POOLSHIM_PREALLOCATE's bytes for `device` ("0:2G,1:512M"), 0 when it is not listed. A malformed
// list warns once and preallocates nothing.
std::size_t preallocation_of(int device) noexcept {
  const char* list = base::current_config().preallocate;
  std::size_t found = 0;
  for (const char* p = list; p != nullptr && *p != '\0';) {
    const char* comma = std::strchr(p, ',');
    const std::size_t len = comma != nullptr ? static_cast<std::size_t>(comma - p) : std::strlen(p);
    char item[64];
    const char* colon = static_cast<const char*>(std::memchr(p, ':', len));
    std::size_t bytes = 0;
    char* end = nullptr;
    const long dev = std::strtol(p, &end, 10);
    // The device is a plain ordinal: strtol alone would take ":2G" as device 0 (no digits).
    bool ok = len < sizeof item && colon != nullptr && end == colon && *p >= '0' && *p <= '9' && dev >= 0;
    if (ok) {
      std::memcpy(item, colon + 1, len - static_cast<std::size_t>(colon + 1 - p));
      item[len - static_cast<std::size_t>(colon + 1 - p)] = '\0';
      ok = parse_size(item, &bytes);
    }
    if (!ok) {
      POOLSHIM_LOG_WARN_ONCE("POOLSHIM_PREALLOCATE={}: want DEVICE:SIZE[,DEVICE:SIZE...]; nothing preallocated", list);
      return 0;
    }
    if (dev == device) found = bytes;
    p = comma != nullptr ? comma + 1 : p + len;
  }
  return found;
}

// Maintenance of one entry's pool (trims, the idle release, preallocation) from any thread: enters
// unless the context is forgotten or paused. Sequentially consistent on both sides (the count here,
// the context in forget_context): either forget_context sees this thread in, and waits for it, or
// this thread sees the context gone.
class maintenance {
 public:
  explicit maintenance(entry& e) noexcept : e_(e) {
    e_.maintaining.fetch_add(1, std::memory_order_seq_cst);
    in_ = e_.ctx.load(std::memory_order_seq_cst) != nullptr && e_.pauses.load(std::memory_order_seq_cst) == 0;
  }
  ~maintenance() { e_.maintaining.fetch_sub(1, std::memory_order_release); }
  maintenance(const maintenance&) = delete;
  maintenance& operator=(const maintenance&) = delete;
  bool in() const noexcept { return in_; }

 private:
  entry& e_;
  bool in_ = false;
};

// Until no thread is inside the entry's maintenance. A trim in flight finishes the segment it is
// giving back (a driver call, or a round trip to poolshimd) and stops; new ones do not enter.
void wait_for_maintenance(const entry& e) noexcept {
  while (e.maintaining.load(std::memory_order_seq_cst) != 0) {
    timespec nap{0, 200'000};
    nanosleep(&nap, nullptr);
  }
}

void preallocate_entry(entry& e, std::size_t bytes) noexcept {
  const maintenance m(e);
  if (!m.in()) return;
  const std::size_t got = e.pool->preallocate(bytes);
  e.pool->set_kept_idle(e.preallocated.fetch_add(got, std::memory_order_relaxed) + got);
  if (got < bytes)
    POOLSHIM_LOG_WARN("preallocation on device {}: {} of {} bytes (out of memory)", e.device, got, bytes);
}

// A fork child has only the thread that forked, which was not inside any maintenance: counts that
// other threads held (the idle thread's round may not have ended in the fork's bounded wait) would
// make a reset or destroy in the child wait forever.
void zero_maintenance_in_child() noexcept {
  const int n = g_used.load(std::memory_order_relaxed);
  for (int i = 0; i < n; ++i) g_entries[i].maintaining.store(0, std::memory_order_relaxed);
}

// *fresh: the entry was made by this call (its POOLSHIM_PREALLOCATE is then the caller's to take,
// outside the creation lock).
entry* create_entry(const real_driver& d, CUcontext ctx, bool* fresh) noexcept {
  *fresh = false;
  std::lock_guard<std::mutex> lk(g_create_mutex);
  if (entry* e = find_entry(ctx)) return e;
  static const bool fork_handler = pthread_atfork(nullptr, nullptr, zero_maintenance_in_child) == 0;
  (void)fork_handler;
  int n = g_used.load(std::memory_order_relaxed);
  if (n == k_max_pools) {
    POOLSHIM_LOG_WARN_ONCE("more than 64 CUDA contexts: allocations of further contexts bypass the pool");
    return nullptr;
  }
  CUdevice dev = -1;
  CUcontext cur = nullptr;
  if (d.cuCtxGetCurrent(&cur) != CUDA_SUCCESS || cur != ctx || d.cuCtxGetDevice(&dev) != CUDA_SUCCESS) return nullptr;
  const config& cfg = base::current_config();
  pool::device_pool_options opt;
  opt.small_limit = cfg.small_limit;
  opt.thread_cache_bytes = cfg.thread_cache_bytes;
  opt.idle_limit = cfg.device_cache_limit;
  auto* source = new (std::nothrow) cuda_segment_resource(ctx);
  pool::segment_resource* segments = source;
  const bool from_daemon = cfg.device_source == segment_source::daemon;  // a bad value warned, as "local"
  // With the daemon's segments, idle memory is the node's: what this process keeps idle no other can
  // use, and a segment given back returns to the daemon at once (a lease brings it back). So the idle
  // bound is on by default there, against the bytes in use now (footprint benchmark); with local
  // segments, caching comes first (the per-process way, as PyTorch's allocator behaves).
  opt.idle_bound_now = from_daemon;
  opt.idle_percent = cfg.device_idle_percent == k_idle_percent_auto
                         ? (from_daemon ? k_daemon_idle_percent : pool::kNoIdleBound)
                     : cfg.device_idle_percent >= 1000 ? pool::kNoIdleBound
                                                       : cfg.device_idle_percent;
  if (source != nullptr && from_daemon) {
    CUuuid uuid{};
    if (d.cuDeviceGetUuid_v2(&uuid, dev) == CUDA_SUCCESS)
      if (auto* lent = new (std::nothrow) daemon_fallback_adaptor(ctx, dev, uuid, *source)) segments = lent;
  }
  if (const segment_listener heard = g_segment_listener.load(std::memory_order_acquire); heard && source != nullptr)
    if (auto* observed = new (std::nothrow) observed_segment_adaptor(*segments, dev, heard)) segments = observed;
  auto* p = source ? new (std::nothrow) pool::device_pool(*segments, reuse_fence(), opt) : nullptr;
  if (p == nullptr) return nullptr;
  fence_tracker::note_context(ctx);
  entry& e = g_entries[n];
  e.device = dev;
  format_uuid(d, dev, e.uuid, sizeof e.uuid);
  POOLSHIM_LOG_DEBUG("device pool {} for context {} on device {} ({})", n, static_cast<const void*>(ctx), dev, e.uuid);
  e.source = source;
  e.pool = p;
  e.ctx.store(ctx, std::memory_order_release);
  g_used.store(n + 1, std::memory_order_release);
  *fresh = true;
  return &e;
}

// A pool made for `ctx` (current) when it has none. The creation lock is held only while the pool is
// made and published: POOLSHIM_PREALLOCATE's driver calls (or a lease from poolshimd, which may wait
// for memory other processes give back) and the idle thread's start come after it, so that another
// context's first allocation never waits for them, and a driver call that re-enters a hook (another
// thread's allocation made while the driver holds its own lock) cannot wait for this one.
entry* pool_of(const real_driver& d, CUcontext ctx) noexcept {
  if (entry* e = find_entry(ctx)) return e;
  bool fresh = false;
  entry* e = create_entry(d, ctx, &fresh);
  if (e == nullptr || !fresh) return e;
  if (const std::size_t bytes = preallocation_of(e->device); bytes != 0) preallocate_entry(*e, bytes);
  idle_trimmer::start();
  return e;
}

entry* owner_of(CUdeviceptr p) noexcept {
  int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    entry& e = g_entries[i];
    if (e.ctx.load(std::memory_order_acquire) != nullptr && e.pool->owns(static_cast<std::uintptr_t>(p))) return &e;
  }
  return nullptr;
}

// The free synchronisation of POOLSHIM_FREE_SYNC=device: what cudaFree does implicitly, for the
// context that owns the memory. Errors of earlier asynchronous work come back from here, as they
// would from the real cuMemFree.
CUresult synchronize(const real_driver& d, CUcontext ctx) noexcept {
  scoped_context in(d, ctx);
  return in.status() == CUDA_SUCCESS ? d.cuCtxSynchronize() : in.status();
}

}  // namespace

bool try_alloc(CUdeviceptr* dptr, std::size_t bytes, CUresult* result, int* device) noexcept {
  // Bad arguments, capture and missing contexts are the real driver's to answer.
  if (!pooling() || dptr == nullptr || bytes == 0 || capture_state::capture_active()) return false;
  const real_driver& d = real_driver::get();
  CUcontext ctx = nullptr;
  if (d.cuCtxGetCurrent(&ctx) != CUDA_SUCCESS || ctx == nullptr) return false;
  entry* e = pool_of(d, ctx);
  if (e == nullptr) return false;
  std::uintptr_t addr = 0;
  switch (e->pool->allocate(bytes, &addr)) {
    case pool::status::ok:
      *dptr = static_cast<CUdeviceptr>(addr);
      *result = CUDA_SUCCESS;
      if (device != nullptr) *device = e->device;
      return true;
    case pool::status::out_of_memory:
      *result = CUDA_ERROR_OUT_OF_MEMORY;
      return true;
    case pool::status::source_error:
      *result = e->source->last_error();
      return true;
    default:
      return false;  // a size the pool cannot represent: let the driver answer
  }
}

bool try_free(CUdeviceptr dptr, CUresult* result) noexcept {
  if (!pooling() || dptr == 0) return false;
  const free_sync_mode sync = base::current_config().free_sync;
  if (sync == free_sync_mode::fence) {
    // No synchronisation: the pool that owns the block takes it back, stamped with the current
    // epoch (one pointer-map lookup per pool asked), and the tracker counts the batch.
    const int n = g_used.load(std::memory_order_acquire);
    for (int i = 0; i < n; ++i) {
      entry& e = g_entries[i];
      if (e.ctx.load(std::memory_order_acquire) == nullptr) continue;
      std::size_t bytes = 0;
      switch (e.pool->deallocate(static_cast<std::uintptr_t>(dptr), &bytes)) {
        case pool::status::ok:
          fence_tracker::note_free(bytes);
          *result = CUDA_SUCCESS;
          return true;
        case pool::status::invalid_pointer:
          *result = CUDA_ERROR_INVALID_VALUE;
          return true;  // interior / double free
        default:
          continue;
      }
    }
    return false;
  }
  entry* e = owner_of(dptr);
  if (e == nullptr) return false;
  if (sync == free_sync_mode::device) {
    CUresult r = synchronize(real_driver::get(), e->ctx.load(std::memory_order_acquire));
    if (r != CUDA_SUCCESS) {  // capture in progress or an earlier error: the block stays allocated
      *result = r;
      return true;
    }
  }
  switch (e->pool->deallocate(static_cast<std::uintptr_t>(dptr))) {
    case pool::status::ok:
      *result = CUDA_SUCCESS;
      return true;
    case pool::status::invalid_pointer:
      *result = CUDA_ERROR_INVALID_VALUE;
      return true;  // interior / double free
    default:
      return false;
  }
}

bool refuses_ipc(CUdeviceptr dptr) noexcept {
  if (!pooling() || dptr == 0) return false;
  entry* e = owner_of(dptr);
  if (e == nullptr) return false;
  // Only the base of a large block (a dedicated segment) has a handle that opens exactly it.
  return e->pool->block_size(static_cast<std::uintptr_t>(dptr)) <= e->pool->options().small_limit;
}

bool small_block(CUdeviceptr dptr, CUdeviceptr* segment_base, std::size_t* bytes) noexcept {
  if (!pooling() || dptr == 0) return false;
  entry* e = owner_of(dptr);
  if (e == nullptr) return false;
  const auto p = static_cast<std::uintptr_t>(dptr);
  const std::size_t size = e->pool->block_size(p);
  const std::uintptr_t base = e->pool->segment_base(p);
  if (size == 0 || size > e->pool->options().small_limit || base == 0) return false;
  *segment_base = static_cast<CUdeviceptr>(base);
  *bytes = size;
  return true;
}

std::size_t idle_bytes_of_current_device() noexcept {
  if (!pooling()) return 0;
  const real_driver& d = real_driver::get();
  CUdevice dev = -1;
  if (d.cuCtxGetDevice(&dev) != CUDA_SUCCESS) return 0;
  std::size_t idle = 0;
  int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    const entry& e = g_entries[i];
    if (e.ctx.load(std::memory_order_acquire) == nullptr || e.device != dev) continue;
    pool::pool_stats s = e.pool->stats();
    if (s.bytes_reserved > s.bytes_in_use) idle += s.bytes_reserved - s.bytes_in_use;
  }
  return idle;
}

void forget_context(CUcontext ctx) noexcept {
  int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    CUcontext expected = ctx;
    // The pool object is leaked on purpose: its segments died with the context, and another
    // thread may still be inside it; a new pool is created if the context comes back.
    if (!g_entries[i].ctx.compare_exchange_strong(expected, nullptr, std::memory_order_seq_cst)) continue;
    wait_for_maintenance(g_entries[i]);
    g_entries[i].pauses.store(0, std::memory_order_relaxed);
  }
}

void pause_maintenance(CUcontext ctx) noexcept {
  const int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    entry& e = g_entries[i];
    if (e.ctx.load(std::memory_order_acquire) != ctx) continue;
    e.pauses.fetch_add(1, std::memory_order_seq_cst);
    wait_for_maintenance(e);
  }
}

void resume_maintenance(CUcontext ctx) noexcept {
  const int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    if (g_entries[i].ctx.load(std::memory_order_acquire) != ctx) continue;
    // Its own pause only: never below 0 (a pause taken before the context was forgotten and made
    // again is not this entry's).
    int p = g_entries[i].pauses.load(std::memory_order_seq_cst);
    while (p > 0 && !g_entries[i].pauses.compare_exchange_weak(p, p - 1, std::memory_order_seq_cst)) {
    }
  }
}

namespace {
// What a trim may take from a pool: its idle bytes, less its preallocation (kept idle for the
// program; a trim gives back cached large blocks before small segments, so those go first).
std::size_t trimmable(entry& e, bool keep_preallocated) noexcept {
  const std::size_t idle = e.pool->idle_bytes();
  const std::size_t floor = keep_preallocated ? e.preallocated.load(std::memory_order_relaxed) : 0;
  return idle > floor ? idle - floor : 0;
}
}  // namespace

std::size_t reclaimable_bytes() noexcept {
  std::size_t idle = 0;
  const int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    entry& e = g_entries[i];
    if (e.ctx.load(std::memory_order_acquire) == nullptr) continue;
    // Whole free segments only (the free part of a segment in use cannot go back), less the
    // preallocation the pool keeps.
    const std::size_t free = e.pool->releasable_bytes(), kept = e.preallocated.load(std::memory_order_relaxed);
    idle += free > kept ? free - kept : 0;
  }
  return idle;
}

std::size_t trim(std::size_t bytes, bool keep_preallocated) noexcept {
  if (!pooling()) return 0;
  std::size_t released = 0;
  const int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n && released < bytes; ++i) {
    entry& e = g_entries[i];
    const maintenance m(e);
    if (!m.in()) continue;
    const std::size_t room = trimmable(e, keep_preallocated);
    if (room == 0) continue;
    const std::size_t above = trimmable(e, true);  // idle memory beyond the preallocation
    const std::size_t got = e.pool->trim(std::min(room, bytes - released));
    released += got;
    if (keep_preallocated) continue;
    // Everything (poolshim_release_all) forgets the preallocation; a smaller trim forgets only the
    // part it took beyond the pool's other idle memory, and the rest stays kept.
    std::size_t pre = e.preallocated.load(std::memory_order_relaxed), left = 0;
    do {
      left = bytes == SIZE_MAX || got >= above + pre ? 0 : pre - (got > above ? got - above : 0);
    } while (!e.preallocated.compare_exchange_weak(pre, left, std::memory_order_relaxed));
    e.pool->set_kept_idle(left);
  }
  return released;
}

std::size_t idle_tick() noexcept {
  if (!pooling()) return 0;
  std::size_t released = 0;
  const int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    entry& e = g_entries[i];
    const maintenance m(e);
    if (!m.in()) continue;
    // A sliding window: the last k_idle_samples + 1 samples span the release time, and their
    // minimum is what stayed idle through all of it (a dip between two samples goes unseen).
    std::memmove(e.samples, e.samples + 1, sizeof e.samples - sizeof e.samples[0]);
    e.samples[k_idle_samples] = trimmable(e, true);
    if (++e.sampled <= k_idle_samples) continue;
    e.sampled = k_idle_samples + 1;
    const std::size_t unneeded = *std::min_element(std::begin(e.samples), std::end(e.samples));
    if (unneeded == 0) continue;
    // Whole segments only: a little less (or, a segment's worth, more) than that may go.
    const std::size_t got = e.pool->trim(unneeded);
    for (std::size_t& v : e.samples) v = v > got ? v - got : 0;
    released += got;
  }
  return released;
}

std::size_t preallocate(int device, std::size_t bytes) noexcept {
  if (!pooling() || bytes == 0) return 0;
  const real_driver& d = real_driver::get();
  // It may be the program's first CUDA call (Python, before the framework initialised CUDA):
  // without cuInit (idempotent, not hooked) cuDeviceGet answers CUDA_ERROR_NOT_INITIALIZED.
  using init_fn = CUresult (*)(unsigned);
  const auto init = d.handle != nullptr ? reinterpret_cast<init_fn>(real_dlsym()(d.handle, "cuInit")) : nullptr;
  if (init == nullptr || init(0) != CUDA_SUCCESS) return 0;
  CUdevice dev = -1;
  CUcontext ctx = nullptr;
  if (d.cuDeviceGet(&dev, device) != CUDA_SUCCESS || d.cuDevicePrimaryCtxRetain(&ctx, dev) != CUDA_SUCCESS) return 0;
  scoped_context in(d, ctx);
  if (in.status() != CUDA_SUCCESS) return 0;
  entry* e = pool_of(d, ctx);
  if (e == nullptr) return 0;
  const std::size_t before = e->preallocated.load(std::memory_order_relaxed);
  preallocate_entry(*e, bytes);
  return e->preallocated.load(std::memory_order_relaxed) - before;
}

void set_segment_listener(segment_listener listener) noexcept {
  g_segment_listener.store(listener, std::memory_order_release);
}

totals sum_of_pools() noexcept {
  totals t{};
  int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    pool::pool_stats s = g_entries[i].pool->stats();
    // A forgotten context's memory died with it: what its pool did still counts (requests, hits,
    // peaks), what it seems to hold does not.
    if (g_entries[i].ctx.load(std::memory_order_acquire) == nullptr) s.bytes_in_use = s.bytes_reserved = s.segments = 0;
    t += s;
  }
  return t;
}

}  // namespace poolshim::device_router

// The device router (device_router.h): one pool per context, found by a lock-free scan of a small
// table (processes have one context per device, rarely more); pools are created under a mutex on
// first use and never destroyed (a forgotten context's pool is retired, its memory gone with it).
#include "route/device_router.h"

#include <atomic>
#include <cstdio>
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
#include "source/cuda_segment_resource.h"
#include "source/daemon_fallback_adaptor.h"

namespace poolshim::device_router {
namespace {

constexpr int k_max_pools = 64;

struct entry {
  std::atomic<CUcontext> ctx{nullptr};  // null: free slot or retired
  int device = -1;
  char uuid[48] = {};  // "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as nvidia-smi names it
  cuda_segment_resource* source = nullptr;
  pool::device_pool* pool = nullptr;
};

entry g_entries[k_max_pools];
std::atomic<int> g_used{0};
std::mutex g_create_mutex;

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

entry* create_entry(const real_driver& d, CUcontext ctx) noexcept {
  std::lock_guard<std::mutex> lk(g_create_mutex);
  if (entry* e = find_entry(ctx)) return e;
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
  opt.idle_percent = cfg.device_idle_percent >= 1000 ? pool::kNoIdleBound : cfg.device_idle_percent;
  auto* source = new (std::nothrow) cuda_segment_resource(ctx);
  pool::segment_resource* segments = source;
  const bool from_daemon = cfg.device_source == segment_source::daemon;  // a bad value warned, as "local"
  if (source != nullptr && from_daemon) {
    CUuuid uuid{};
    if (d.cuDeviceGetUuid_v2(&uuid, dev) == CUDA_SUCCESS)
      if (auto* lent = new (std::nothrow) daemon_fallback_adaptor(ctx, dev, uuid, *source)) segments = lent;
  }
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
  return &e;
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
  entry* e = find_entry(ctx);
  if (e == nullptr && (e = create_entry(d, ctx)) == nullptr) return false;
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
    g_entries[i].ctx.compare_exchange_strong(expected, nullptr, std::memory_order_acq_rel);
  }
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

// The host router (host_router.h): one pinned host pool per context, found by a lock-free scan of
// a small table, created under a mutex on first use, never destroyed (leaky, like the device
// router's). A pooled block reports the context current at its allocation, as pinned memory does
// (cudaPointerGetAttributes' device), because its slab was registered in that context. Idle
// slabs stay pinned (a cache); they are returned only when a new slab cannot be had.
//
// Free synchronisation, POOLSHIM_FREE_SYNC=device: pinned memory may be in flight on any context's
// copy engines, so cuMemFreeHost of a pooled block synchronises the current context, every active
// primary context (what cudart uses; asking creates none) and the contexts of the host pools, then
// returns the block. Contexts created with cuCtxCreate that are not current and own no host pool
// are not covered: the documented gap of this mode.
// POOLSHIM_FREE_SYNC=fence: the free returns at once; the block waits in its pool's deferred list,
// stamped with the fence tracker's epoch, and goes back to the pool once that fence has passed
// (every context the tracker knows, fence_tracker.h). The list is drained by the next allocation
// or free of that pool; the block stays "freed" for the queries meanwhile.
#include "route/host_router.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <new>
#include <vector>

#include "base/log.h"
#include "base/process.h"
#include "base/real_driver.h"
#include "base/scoped_context.h"
#include "pool/host_pool.h"
#include "route/capture_state.h"
#include "route/device_router.h"
#include "route/fence_tracker.h"
#include "route/idle_trimmer.h"
#include "source/daemon_client.h"
#include "source/host_slab_resource.h"

namespace poolshim::host_router {
namespace {

constexpr int k_max_pools = 64;
constexpr unsigned k_known_flags = CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_WRITECOMBINED;

// Blocks freed in fence mode, waiting for their epoch (oldest first).
struct deferred_frees {
  struct item {
    std::uintptr_t addr;
    std::size_t size;
    std::uint64_t epoch;
  };
  std::mutex mutex;
  std::vector<item> items;
  std::atomic<bool> any{false};         // lets the common case skip the lock
  std::atomic<std::uint64_t> bytes{0};  // freed by the program, not yet back in the pool
};

struct entry {
  std::atomic<CUcontext> ctx{nullptr};  // null: free slot, or forgotten in a fork child
  host_slab_resource* source = nullptr;
  pool::host_pool* pool = nullptr;
  deferred_frees* deferred = nullptr;
  std::uint64_t window_requests = ~std::uint64_t{0};  // the idle release's window (idle_tick; its thread only)
};

entry g_entries[k_max_pools];
std::atomic<int> g_used{0};
std::mutex g_create_mutex;

bool pooling() noexcept { return base::mode() == run_mode::pool; }

pool::host_pool* find_pool(CUcontext ctx) noexcept {
  const int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i)
    if (g_entries[i].ctx.load(std::memory_order_acquire) == ctx) return g_entries[i].pool;
  return nullptr;
}

// A fork child has none of the slabs (MADV_DONTFORK): its pools are forgotten and it starts afresh.
void forget_all_in_child() noexcept {
  const int n = g_used.load(std::memory_order_relaxed);
  for (int i = 0; i < n; ++i) g_entries[i].ctx.store(nullptr, std::memory_order_relaxed);
  g_used.store(0, std::memory_order_relaxed);
  g_create_mutex.unlock();
}

void register_fork_handler() noexcept {
  static std::once_flag once;
  std::call_once(once, [] {
    pthread_atfork([] { g_create_mutex.lock(); }, [] { g_create_mutex.unlock(); }, forget_all_in_child);
  });
}

pool::host_pool* create_pool(CUcontext ctx) noexcept {
  register_fork_handler();
  std::lock_guard<std::mutex> lk(g_create_mutex);
  if (pool::host_pool* p = find_pool(ctx)) return p;
  const int n = g_used.load(std::memory_order_relaxed);
  if (n == k_max_pools) return nullptr;  // further contexts' pinned memory comes from the driver
  auto* source = new (std::nothrow) host_slab_resource(ctx, 0, base::current_config().use_daemon);
  auto* p = source != nullptr ? new (std::nothrow) pool::host_pool(*source) : nullptr;
  auto* deferred = p != nullptr ? new (std::nothrow) deferred_frees() : nullptr;
  if (deferred == nullptr) return nullptr;
  fence_tracker::note_context(ctx);
  entry& e = g_entries[n];
  e.source = source;
  e.pool = p;
  e.deferred = deferred;
  e.ctx.store(ctx, std::memory_order_release);
  g_used.store(n + 1, std::memory_order_release);
  idle_trimmer::start();
  return p;
}

entry* entry_of_pool(const pool::host_pool* p) noexcept {
  const int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i)
    if (g_entries[i].pool == p) return &g_entries[i];
  return nullptr;
}

// Returns the deferred blocks whose fence has passed to the pool.
void drain(entry& e) noexcept {
  deferred_frees& q = *e.deferred;
  if (!q.any.load(std::memory_order_acquire)) return;
  const std::uint64_t done = fence_tracker::fence().completed_epoch()->load(std::memory_order_acquire);
  std::lock_guard lock(q.mutex);
  std::size_t ready = 0;
  for (; ready < q.items.size() && q.items[ready].epoch <= done; ++ready) {
    (void)e.pool->deallocate(q.items[ready].addr);
    q.bytes.fetch_sub(q.items[ready].size, std::memory_order_relaxed);
  }
  q.items.erase(q.items.begin(), q.items.begin() + static_cast<std::ptrdiff_t>(ready));
  q.any.store(!q.items.empty(), std::memory_order_release);
}

// Before a new slab is taken: let the fence progress and take back what has passed.
void poll_and_drain(entry& e) noexcept {
  deferred_frees& q = *e.deferred;
  if (!q.any.load(std::memory_order_acquire)) return;
  std::uint64_t oldest = 0;
  {
    std::lock_guard lock(q.mutex);
    if (!q.items.empty()) oldest = q.items.front().epoch;
  }
  if (oldest != 0) fence_tracker::fence().poll(oldest);
  drain(e);
}

bool is_deferred(entry& e, std::uintptr_t a) noexcept {
  deferred_frees& q = *e.deferred;
  if (!q.any.load(std::memory_order_acquire)) return false;
  std::lock_guard lock(q.mutex);
  return std::any_of(q.items.begin(), q.items.end(), [a](const deferred_frees::item& i) { return i.addr == a; });
}

// Fence mode's free: queue the block with the current epoch. False when the queue cannot grow
// (host OOM): the caller then synchronises instead.
bool defer(entry& e, std::uintptr_t a, std::size_t size) noexcept {
  deferred_frees& q = *e.deferred;
  std::lock_guard lock(q.mutex);
  try {
    q.items.push_back({a, size, fence_tracker::fence().epoch_for_free()});
  } catch (...) {
    return false;
  }
  q.bytes.fetch_add(size, std::memory_order_relaxed);
  q.any.store(true, std::memory_order_release);
  return true;
}

entry* owner_of(const void* p) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  const int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    entry& e = g_entries[i];
    if (e.ctx.load(std::memory_order_acquire) != nullptr && e.pool->owns(a)) return &e;
  }
  return nullptr;
}

// A context that is gone (destroyed, or torn down at exit before a static destructor frees its
// pinned memory) has nothing in flight: that is not an error of the free, which needs no context.
CUresult unless_gone(CUresult r) noexcept {
  return r == CUDA_ERROR_CONTEXT_IS_DESTROYED || r == CUDA_ERROR_INVALID_CONTEXT || r == CUDA_ERROR_DEINITIALIZED
             ? CUDA_SUCCESS
             : r;
}

CUresult synchronize(const real_driver& d, CUcontext ctx) noexcept {
  scoped_context in(d, ctx);
  return unless_gone(in.status() == CUDA_SUCCESS ? d.cuCtxSynchronize() : in.status());
}

// The synchronisation described at the top of this file. Each context once; the first error wins
// (a capture in progress, or an earlier asynchronous error, as the real cuMemFreeHost reports).
CUresult synchronize_users(const real_driver& d) noexcept {
  CUcontext done[k_max_pools + 16];
  int count = 0;
  auto sync_once = [&](CUcontext c) -> CUresult {
    if (c == nullptr) return CUDA_SUCCESS;
    for (int i = 0; i < count; ++i)
      if (done[i] == c) return CUDA_SUCCESS;
    if (count < static_cast<int>(sizeof done / sizeof done[0])) done[count++] = c;
    return synchronize(d, c);
  };
  CUcontext cur = nullptr;
  if (d.cuCtxGetCurrent(&cur) == CUDA_SUCCESS)
    if (CUresult r = sync_once(cur); r != CUDA_SUCCESS) return r;
  int devices = 0;
  if (d.cuDeviceGetCount(&devices) != CUDA_SUCCESS) devices = 0;
  for (int i = 0; i < devices && i < 16; ++i) {
    CUdevice dev = 0;
    unsigned flags = 0;
    int active = 0;
    if (d.cuDeviceGet(&dev, i) != CUDA_SUCCESS || d.cuDevicePrimaryCtxGetState(dev, &flags, &active) != CUDA_SUCCESS ||
        !active)
      continue;
    CUcontext primary = nullptr;
    if (d.cuDevicePrimaryCtxRetain(&primary, dev) != CUDA_SUCCESS) continue;
    const CUresult r = sync_once(primary);
    (void)d.cuDevicePrimaryCtxRelease_v2(dev);
    if (r != CUDA_SUCCESS) return r;
  }
  const int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i)
    if (CUresult r = sync_once(g_entries[i].ctx.load(std::memory_order_acquire)); r != CUDA_SUCCESS) return r;
  return CUDA_SUCCESS;
}

}  // namespace

bool try_alloc(void** pp, std::size_t bytes, unsigned flags, CUresult* result) noexcept {
  // Bad arguments, write-combined memory (not what a slab is) and allocations during a capture
  // (which the driver refuses or allows by capture mode) are the driver's.
  if (!pooling() || pp == nullptr || bytes == 0 || (flags & ~k_known_flags) != 0 ||
      (flags & CU_MEMHOSTALLOC_WRITECOMBINED) != 0 || capture_state::capture_active())
    return false;
  const real_driver& d = real_driver::get();
  CUcontext ctx = nullptr;
  if (d.cuCtxGetCurrent(&ctx) != CUDA_SUCCESS || ctx == nullptr) return false;  // the driver answers
  pool::host_pool* p = find_pool(ctx);
  if (p == nullptr && (p = create_pool(ctx)) == nullptr) return false;
  if (entry* e = entry_of_pool(p)) poll_and_drain(*e);
  std::uintptr_t addr = 0;
  pool::status st = p->allocate(bytes, flags, &addr);
  if (st == pool::status::out_of_memory && p->release_idle() != 0) st = p->allocate(bytes, flags, &addr);
  if (st != pool::status::ok) {
    // No slab (host memory, registration refused): the driver answers, as without the pool.
    POOLSHIM_LOG_WARN_ONCE("pinned host pool could not get a slab for {} bytes; passing to the driver", bytes);
    return false;
  }
  *pp = reinterpret_cast<void*>(addr);
  *result = CUDA_SUCCESS;
  return true;
}

bool try_free(void* p, CUresult* result) noexcept {
  if (!pooling() || p == nullptr) return false;
  entry* e = owner_of(p);
  if (e == nullptr) return false;
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  pool::host_block_info info;
  if (e->pool->find(a, &info) != pool::status::ok || info.base != a || is_deferred(*e, a)) {
    *result = CUDA_ERROR_INVALID_VALUE;  // interior pointer, double free
    return true;
  }
  const free_sync_mode sync = base::current_config().free_sync;
  if (sync == free_sync_mode::fence) {
    drain(*e);
    if (defer(*e, a, info.size)) {
      fence_tracker::note_free(info.size);
      *result = CUDA_SUCCESS;
      return true;
    }
  }
  if (sync != free_sync_mode::unsafe) {
    if (CUresult r = synchronize_users(real_driver::get()); r != CUDA_SUCCESS) {  // the block stays allocated
      *result = r;
      return true;
    }
  }
  *result = e->pool->deallocate(a) == pool::status::ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
  // Another process needs pinned memory the daemon does not have: give back what sits idle here.
  // One idle slab stays: the process is still working, and would lease one again at once.
  if (*result == CUDA_SUCCESS && daemon_client::daemon_wants_memory()) (void)e->pool->release_idle(1);
  return true;
}

bool try_get_device_pointer(CUdeviceptr* dptr, void* p, unsigned flags, CUresult* result) noexcept {
  if (!pooling() || dptr == nullptr || p == nullptr) return false;
  entry* e = owner_of(p);
  if (e == nullptr) return false;
  // The driver answers for the registered slab (flags, context and unified-addressing rules
  // included); the pool only refuses memory that is not a live block, as for freed memory.
  CUdeviceptr got = 0;
  const CUresult r = real_driver::get().cuMemHostGetDevicePointer_v2(&got, p, flags);
  if (r != CUDA_SUCCESS) {
    *result = r;
    return true;
  }
  if (e->pool->find(reinterpret_cast<std::uintptr_t>(p), nullptr) != pool::status::ok ||
      is_deferred(*e, reinterpret_cast<std::uintptr_t>(p))) {
    *result = CUDA_ERROR_INVALID_VALUE;
    return true;
  }
  *dptr = got;
  *result = CUDA_SUCCESS;
  return true;
}

bool try_get_flags(unsigned* flags, void* p, CUresult* result) noexcept {
  if (!pooling() || flags == nullptr || p == nullptr) return false;
  entry* e = owner_of(p);
  if (e == nullptr) return false;
  pool::host_block_info info;
  if (e->pool->find(reinterpret_cast<std::uintptr_t>(p), &info) != pool::status::ok ||
      is_deferred(*e, reinterpret_cast<std::uintptr_t>(p))) {
    *result = CUDA_ERROR_INVALID_VALUE;
    return true;
  }
  // What the driver reports for its own pinned allocations: the flags asked for, plus DEVICEMAP
  // (every pinned allocation is mapped under unified addressing).
  *flags = info.flags | CU_MEMHOSTALLOC_DEVICEMAP;
  *result = CUDA_SUCCESS;
  return true;
}

std::size_t idle_bytes() noexcept {
  std::size_t idle = 0;
  const int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    if (g_entries[i].ctx.load(std::memory_order_acquire) == nullptr) continue;
    idle += g_entries[i].pool->idle_slab_bytes();  // slabs go whole: a slab in use is not idle
  }
  return idle;
}

std::size_t trim(std::size_t bytes) noexcept {
  if (!pooling() || bytes == 0) return 0;
  std::size_t released = 0;
  const int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    entry& e = g_entries[i];
    if (e.ctx.load(std::memory_order_acquire) == nullptr) continue;
    drain(e);  // deferred frees whose fence passed are free memory: their slabs may go too
    released += e.pool->release_idle(0);
  }
  return released;
}

std::size_t idle_tick(bool window_end) noexcept {
  if (!pooling() || !window_end) return 0;
  std::size_t released = 0;
  const int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    entry& e = g_entries[i];
    if (e.ctx.load(std::memory_order_acquire) == nullptr) continue;
    const std::uint64_t requests = e.pool->stats().requests;
    if (requests == e.window_requests) {
      drain(e);
      released += e.pool->release_idle(0);
    }
    e.window_requests = requests;
  }
  return released;
}

totals sum_of_pools() noexcept {
  totals t{};
  const int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    pool::host_pool_stats s = g_entries[i].pool->stats();
    const std::uint64_t deferred = g_entries[i].deferred->bytes.load(std::memory_order_relaxed);
    s.bytes_in_use = s.bytes_in_use > deferred ? s.bytes_in_use - deferred : 0;  // deferred frees are free
    t += s;
  }
  return t;
}

}  // namespace poolshim::host_router

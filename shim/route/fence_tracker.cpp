// The fence tracker (fence_tracker.h). Everything but the two epoch counters lives under one mutex,
// taken only off the hit path: by the hooks that create and destroy streams and contexts, by a free
// that completes a batch (try_lock: a fence another thread is recording covers it), by a pool's
// poll (try_lock) and by the out-of-memory wait. CUDA calls under the mutex go to the real driver
// (never a hook), and none of them can call back into the shim.
#include "route/fence_tracker.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <new>
#include <vector>

#include "base/log.h"
#include "base/process.h"
#include "base/real_driver.h"
#include "base/scoped_context.h"
#include "route/capture_state.h"

namespace poolshim::fence_tracker {
namespace {

constexpr std::uint64_t k_batch_frees = 32;  // half a thread-cache bin: one batch fills while the last one's fence runs
constexpr std::size_t k_batch_bytes = std::size_t{64} << 20;
constexpr std::chrono::nanoseconds k_time_slice = std::chrono::microseconds(200);
constexpr std::chrono::nanoseconds k_urgent_spin = std::chrono::microseconds(50);

struct stream_rec {
  CUstream handle;
  unsigned long long id;
  bool non_blocking;
};

struct context_rec {
  CUcontext ctx;
  std::vector<stream_rec> streams;  // created through the driver, live
  std::vector<CUevent> spare;       // events of this context, free for the next fence
  std::vector<CUevent> retiring;    // recorded on streams destroyed since the last fence
};

struct recorded {
  CUcontext ctx;
  CUevent event;  // null once its context is gone
};

struct fence_rec {
  std::uint64_t epoch;
  bool complete;         // every stream was recorded (false: a later fence must pass first)
  std::size_t next = 0;  // events before this one have passed
  std::vector<recorded> events;
};

bool fence_mode() noexcept {
  return base::mode() == run_mode::pool && base::current_config().free_sync == free_sync_mode::fence;
}

// A context that is gone has nothing in flight.
bool context_gone(CUresult r) noexcept {
  return r == CUDA_ERROR_CONTEXT_IS_DESTROYED || r == CUDA_ERROR_INVALID_CONTEXT || r == CUDA_ERROR_DEINITIALIZED;
}

bool capture_error(CUresult r) noexcept {
  return r == CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED || r == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED ||
         r == CUDA_ERROR_STREAM_CAPTURE_IMPLICIT || r == CUDA_ERROR_CAPTURED_EVENT ||
         r == CUDA_ERROR_STREAM_CAPTURE_ISOLATION || r == CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD;
}

class tracker final : public pool::fence {
 public:
  tracker() noexcept : pool::fence(&completed_, &current_) {}

  std::mutex mutex;  // everything below but the counters

  void add_context_locked(CUcontext ctx) noexcept {
    if (ctx == nullptr || find_locked(ctx) != nullptr) return;
    try {
      contexts_.push_back(context_rec{ctx, {}, {}, {}});
    } catch (...) {
      out_of_memory();
    }
  }

  void add_stream_locked(CUcontext ctx, stream_rec s) noexcept {
    add_context_locked(ctx);
    context_rec* c = find_locked(ctx);
    if (c == nullptr) return;
    // A handle the driver hands out again belongs to a new stream: the old record goes.
    std::erase_if(c->streams, [&](const stream_rec& r) { return r.handle == s.handle; });
    try {
      c->streams.push_back(s);
    } catch (...) {
      out_of_memory();
    }
  }

  // Before cuStreamDestroy: an event on the stream covers its pending work until the next fence.
  void retire_stream_locked(const real_driver& d, CUstream stream) noexcept {
    for (context_rec& c : contexts_) {
      auto it =
          std::find_if(c.streams.begin(), c.streams.end(), [&](const stream_rec& r) { return r.handle == stream; });
      if (it == c.streams.end()) continue;
      unsigned long long id = 0;
      const bool same = d.cuStreamGetId(stream, &id) == CUDA_SUCCESS && id == it->id;
      c.streams.erase(it);
      if (!same) return;  // not the stream we knew: the driver will refuse the destroy
      CUstreamCaptureStatus cs = CU_STREAM_CAPTURE_STATUS_NONE;
      if (d.cuStreamIsCapturing(stream, &cs) != CUDA_SUCCESS || cs != CU_STREAM_CAPTURE_STATUS_NONE) return;
      if (CUevent e = take_event_locked(d, c); e != nullptr) {
        if (d.cuEventRecord(e, stream) == CUDA_SUCCESS) {
          try {
            c.retiring.push_back(e);
            return;
          } catch (...) {
            out_of_memory();
          }
        }
        c.spare.push_back(e);  // cannot throw: spare had room for it
      }
      return;
    }
  }

  void forget_context_locked(CUcontext ctx) noexcept {
    std::erase_if(contexts_, [&](const context_rec& c) { return c.ctx == ctx; });
    for (fence_rec& f : inflight_)
      for (recorded& r : f.events)
        if (r.ctx == ctx) r.event = nullptr;  // died with its context
  }

  // Starts the fence for the current epoch. False when none could be started (capture, no memory).
  bool issue_locked(const real_driver& d) noexcept {
    if (capture_state::capture_active()) {
      deferred_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    fence_rec f;
    try {
      std::size_t n = 0;
      for (const context_rec& c : contexts_) n += 1 + c.streams.size() + c.retiring.size();
      f.events.reserve(n);
      inflight_.emplace_back();
    } catch (...) {
      out_of_memory();
      return false;
    }
    // Bump first, then record: a free that races with the records is stamped with the next fence.
    f.epoch = current_.fetch_add(1, std::memory_order_acq_rel);
    f.complete = true;
    for (context_rec& c : contexts_) record_context_locked(d, c, &f);
    inflight_.back() = std::move(f);
    issued_.fetch_add(1, std::memory_order_relaxed);
    last_issue_ = std::chrono::steady_clock::now();
    return true;
  }

  // Takes note of the fences that have passed, oldest first; never blocks.
  void progress_locked(const real_driver& d) noexcept {
    while (!inflight_.empty()) {
      fence_rec& f = inflight_.front();
      for (; f.next < f.events.size(); ++f.next) {
        const recorded& r = f.events[f.next];
        if (r.event == nullptr) continue;
        const CUresult q = d.cuEventQuery(r.event);
        if (q == CUDA_ERROR_NOT_READY) return;
        // Success, or an error: a sticky error or a dead context has nothing left to run.
      }
      retire_front_locked();
    }
  }

  // Blocks until the fences through `epoch` have passed (out-of-memory path). Gives up when no
  // complete fence can be recorded (a capture is active): the caller then reports its error.
  void wait_locked(const real_driver& d, std::uint64_t epoch) noexcept {
    waits_.fetch_add(1, std::memory_order_relaxed);
    int issued = 0;
    while (completed_.load(std::memory_order_acquire) < epoch) {
      const bool covered = std::any_of(inflight_.begin(), inflight_.end(),
                                       [&](const fence_rec& f) { return f.complete && f.epoch >= epoch; });
      if (!covered && (issued++ == 2 || !issue_locked(d))) return;
      fence_rec& f = inflight_.front();
      for (; f.next < f.events.size(); ++f.next)
        if (f.events[f.next].event != nullptr) (void)d.cuEventSynchronize(f.events[f.next].event);
      retire_front_locked();
    }
  }

  // A miss may start a fence for frees that have none yet once per time slice.
  bool due_locked() const noexcept { return std::chrono::steady_clock::now() - last_issue_ >= k_time_slice; }

  void reset_in_child() noexcept {
    // The child has none of the parent's contexts, streams or events.
    new (&contexts_) std::vector<context_rec>();
    new (&inflight_) std::deque<fence_rec>();
    completed_.store(current_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  }

  stats figures() const noexcept {
    stats s{};
    s.fences_issued = issued_.load(std::memory_order_relaxed);
    s.fences_completed = completed_count_.load(std::memory_order_relaxed);
    s.fences_deferred = deferred_.load(std::memory_order_relaxed);
    s.fence_waits = waits_.load(std::memory_order_relaxed);
    s.streams_tracked = tracked_.load(std::memory_order_relaxed);
    return s;
  }

  // After any change to the stream lists: the figure get_stats() reads without the lock.
  void recount_locked() noexcept {
    std::uint64_t n = 0;
    for (const context_rec& c : contexts_)
      n += static_cast<std::uint64_t>(
          std::count_if(c.streams.begin(), c.streams.end(), [](const stream_rec& r) { return r.non_blocking; }));
    tracked_.store(n, std::memory_order_relaxed);
  }

  context_rec* find_locked(CUcontext ctx) noexcept {
    for (context_rec& c : contexts_)
      if (c.ctx == ctx) return &c;
    return nullptr;
  }

 private:
  void do_wait_for(std::uint64_t epoch) noexcept override {
    if (completed_.load(std::memory_order_acquire) >= epoch) return;
    std::lock_guard lock(mutex);
    wait_locked(real_driver::get(), epoch);
  }

  void do_poll(std::uint64_t epoch, bool urgent) noexcept override {
    if (completed_.load(std::memory_order_acquire) >= epoch) return;
    std::unique_lock lock(mutex, std::defer_lock);
    if (urgent) {
      lock.lock();  // waiting for another thread's records costs less than a new segment
    } else if (!lock.try_lock()) {
      return;  // another thread is recording or polling
    }
    const real_driver& d = real_driver::get();
    progress_locked(d);
    if (completed_.load(std::memory_order_acquire) >= epoch) return;
    if (epoch >= current_.load(std::memory_order_acquire) && (urgent || due_locked())) {
      if (!issue_locked(d)) return;
      progress_locked(d);
    }
    if (!urgent) return;
    // A fence just recorded on idle streams passes within microseconds; a new segment costs a
    // cuMemAlloc and memory that stays in the pool. Give the fence a short while before growing.
    const auto until = std::chrono::steady_clock::now() + k_urgent_spin;
    while (completed_.load(std::memory_order_acquire) < epoch && !inflight_.empty() &&
           std::chrono::steady_clock::now() < until) {
      sched_yield();
      progress_locked(d);
    }
  }

  CUevent take_event_locked(const real_driver& d, context_rec& c) noexcept {
    if (!c.spare.empty()) {
      CUevent e = c.spare.back();
      c.spare.pop_back();
      return e;
    }
    try {
      c.spare.reserve(c.spare.size() + 1);  // room to give it back without allocating
    } catch (...) {
      out_of_memory();
      return nullptr;
    }
    CUevent e = nullptr;
    scoped_context in(d, c.ctx);
    if (in.status() != CUDA_SUCCESS || d.cuEventCreate(&e, CU_EVENT_DISABLE_TIMING) != CUDA_SUCCESS) return nullptr;
    return e;
  }

  void record_locked(const real_driver& d, context_rec& c, CUstream stream, fence_rec* f) noexcept {
    CUevent e = take_event_locked(d, c);
    if (e == nullptr) {
      f->complete = false;
      return;
    }
    const CUresult r = d.cuEventRecord(e, stream);
    if (r == CUDA_SUCCESS) {
      f->events.push_back(recorded{c.ctx, e});  // reserved: cannot throw
      return;
    }
    c.spare.push_back(e);
    if (context_gone(r)) return;
    f->complete = false;  // a capture we did not see, or a failing context: wait for a later fence
    if (capture_error(r))
      POOLSHIM_LOG_WARN_ONCE(
          "fence record refused ({}): a stream capture the shim did not see; freed blocks wait longer",
          static_cast<int>(r));
  }

  void record_context_locked(const real_driver& d, context_rec& c, fence_rec* f) noexcept {
    scoped_context in(d, c.ctx);
    if (in.status() != CUDA_SUCCESS) {
      if (!context_gone(in.status())) f->complete = false;
      return;
    }
    // Non-blocking streams first; one that is capturing cannot take a record (it would join the
    // user's graph), so the fence is incomplete and a later one must pass.
    for (const stream_rec& s : c.streams) {
      if (!s.non_blocking) continue;
      CUstreamCaptureStatus cs = CU_STREAM_CAPTURE_STATUS_NONE;
      if (d.cuStreamIsCapturing(s.handle, &cs) != CUDA_SUCCESS || cs != CU_STREAM_CAPTURE_STATUS_NONE) {
        f->complete = false;
        continue;
      }
      record_locked(d, c, s.handle, f);
    }
    record_locked(d, c, CU_STREAM_LEGACY, f);
    for (CUevent e : c.retiring) f->events.push_back(recorded{c.ctx, e});  // reserved
    c.retiring.clear();
  }

  void retire_front_locked() noexcept {
    fence_rec& f = inflight_.front();
    for (const recorded& r : f.events) {
      if (r.event == nullptr) continue;
      context_rec* c = find_locked(r.ctx);
      bool kept = false;
      if (c != nullptr) {
        try {
          c->spare.push_back(r.event);
          kept = true;
        } catch (...) {
        }
      }
      if (!kept) (void)real_driver::get().cuEventDestroy_v2(r.event);
    }
    // An incomplete fence proves nothing by itself; the next complete one covers it.
    if (f.complete) {
      std::uint64_t c = completed_.load(std::memory_order_relaxed);
      if (f.epoch > c) completed_.store(f.epoch, std::memory_order_release);
      completed_count_.fetch_add(1, std::memory_order_relaxed);
    }
    inflight_.pop_front();
  }

  static void out_of_memory() noexcept {
    POOLSHIM_LOG_WARN_ONCE("fence tracker is out of host memory: freed blocks wait for a device synchronisation");
  }

  std::atomic<std::uint64_t> completed_{0};
  std::atomic<std::uint64_t> current_{1};
  std::atomic<std::uint64_t> issued_{0};
  std::atomic<std::uint64_t> completed_count_{0};
  std::atomic<std::uint64_t> deferred_{0};
  std::atomic<std::uint64_t> waits_{0};
  std::atomic<std::uint64_t> tracked_{0};
  std::vector<context_rec> contexts_;
  std::deque<fence_rec> inflight_;
  std::chrono::steady_clock::time_point last_issue_{};
};

tracker& the_tracker() noexcept {
  static tracker* t = [] {
    auto* p = new tracker();  // leaky: outlives every pool and static destructor
    pthread_atfork([] { the_tracker().mutex.lock(); }, [] { the_tracker().mutex.unlock(); },
                   [] {
                     the_tracker().reset_in_child();
                     the_tracker().mutex.unlock();
                   });
    return p;
  }();
  return *t;
}

struct batch {
  std::uint64_t frees;
  std::size_t bytes;
};
[[gnu::tls_model("initial-exec")]] constinit thread_local batch tl_batch{0, 0};

}  // namespace

pool::fence& fence() noexcept { return the_tracker(); }

void note_context(CUcontext ctx) noexcept {
  if (!fence_mode() || ctx == nullptr) return;
  tracker& t = the_tracker();
  std::lock_guard lock(t.mutex);
  t.add_context_locked(ctx);
}

void note_stream_created(CUstream stream, unsigned flags) noexcept {
  if (!fence_mode() || stream == nullptr) return;
  const real_driver& d = real_driver::get();
  CUcontext ctx = nullptr;
  unsigned long long id = 0;
  if (d.cuCtxGetCurrent(&ctx) != CUDA_SUCCESS || ctx == nullptr || d.cuStreamGetId(stream, &id) != CUDA_SUCCESS) return;
  tracker& t = the_tracker();
  std::lock_guard lock(t.mutex);
  t.add_stream_locked(ctx, stream_rec{stream, id, (flags & CU_STREAM_NON_BLOCKING) != 0});
  t.recount_locked();
}

void note_stream_destroying(CUstream stream) noexcept {
  if (!fence_mode() || stream == nullptr || stream == CU_STREAM_LEGACY || stream == CU_STREAM_PER_THREAD) return;
  tracker& t = the_tracker();
  std::lock_guard lock(t.mutex);
  t.retire_stream_locked(real_driver::get(), stream);
  t.recount_locked();
}

void forget_context(CUcontext ctx) noexcept {
  if (!fence_mode() || ctx == nullptr) return;
  tracker& t = the_tracker();
  std::lock_guard lock(t.mutex);
  t.forget_context_locked(ctx);
  t.recount_locked();
}

void note_free(std::size_t bytes) noexcept {
  batch& b = tl_batch;
  b.bytes += bytes;
  if (++b.frees < k_batch_frees && b.bytes < k_batch_bytes) return;
  b = batch{0, 0};
  tracker& t = the_tracker();
  std::unique_lock lock(t.mutex, std::try_to_lock);
  if (!lock.owns_lock()) return;  // a fence being recorded now covers these frees or the next will
  const real_driver& d = real_driver::get();
  (void)t.issue_locked(d);
  t.progress_locked(d);
}

capture_gate::capture_gate() noexcept : locked_(fence_mode()) {
  if (locked_) the_tracker().mutex.lock();
}

capture_gate::~capture_gate() {
  if (locked_) the_tracker().mutex.unlock();
}

stats get_stats() noexcept { return the_tracker().figures(); }

}  // namespace poolshim::fence_tracker

// Simulated CUDA driver: the stream engine. Every stream has a worker thread that runs its ops in
// order; an op may wait for positions in other streams, which is how the legacy default stream's
// implicit barriers and event waits are expressed. Ops on a capturing stream go into its graph.
#include <unistd.h>

#include "sim_state.h"

namespace sim {
namespace {

bool is_blocking(CUstream s) {
  return s->role == stream_role::per_thread ||
         (s->role == stream_role::user && (s->flags & CU_STREAM_NON_BLOCKING) == 0);
}

bool deps_met(const op& o) {
  for (auto& [s, seq] : o.waits)
    if (s->completed < seq) return false;
  return true;
}

void worker_loop(CUstream s) {
  state& g = get();
  // Work a stream does on the worker (host functions, callbacks) must not call CUDA.
  this_thread().in_host_func = true;
  std::unique_lock<std::mutex> lk(g.mu);
  for (;;) {
    g.cv.wait(lk,
              [&] { return (!s->queue.empty() && deps_met(s->queue.front())) || (s->destroyed && s->queue.empty()); });
    if (s->queue.empty()) {  // destroyed and drained: only now does it stop counting for syncs
      g.streams.erase(s);
      g.graveyard.push_back(s);  // ops and events may still name it
      g.cv.notify_all();
      break;
    }
    op o = std::move(s->queue.front());
    s->queue.pop_front();
    lk.unlock();
    if (g.cfg.stream_delay_us != 0) usleep(g.cfg.stream_delay_us);
    uint64_t n = g.ops_started.fetch_add(1) + 1;
    if (g.cfg.fault_at_op != 0 && n == g.cfg.fault_at_op) {
      CUresult expected = CUDA_SUCCESS;
      g.sticky.compare_exchange_strong(expected, CUDA_ERROR_ILLEGAL_ADDRESS);
      trace("injected fault at stream op %llu: context is now unusable", static_cast<unsigned long long>(n));
    }
    // After a fault the context is dead: queued work is dropped, not executed.
    if (g.sticky.load(std::memory_order_acquire) == CUDA_SUCCESS && o.run) o.run();
    o.run = nullptr;  // release captured state outside the lock
    lk.lock();
    s->completed = o.seq;
    g.cv.notify_all();
  }
}

}  // namespace

CUstream new_stream(CUcontext c, stream_role role, unsigned flags, int priority) {
  state& g = get();
  auto* s = new CUstream_st();
  s->ctx = c;
  s->role = role;
  s->flags = flags;
  s->priority = priority;
  s->id = g.next_stream_id++;
  g.streams.insert(s);
  std::thread(worker_loop, s).detach();
  return s;
}

void retire_stream(CUstream s) {
  // The stream stays in g.streams until its worker has drained it: work queued before the
  // destroy still runs, and device or context synchronisation still waits for it.
  s->destroyed = true;
  get().cv.notify_all();
}

CUresult resolve_stream(CUstream s, bool per_thread_variant, CUstream* out) {
  state& g = get();
  bool want_per_thread = s == CU_STREAM_PER_THREAD || (s == nullptr && per_thread_variant);
  if (s == nullptr || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD) {
    CUcontext c = nullptr;
    if (CUresult r = require_ctx(&c); r != CUDA_SUCCESS) return r;
    if (!want_per_thread) {
      *out = c->legacy;
      return CUDA_SUCCESS;
    }
    auto& map = this_thread().per_thread_streams;
    auto it = map.find(c);
    if (it == map.end() || it->second->destroyed)
      it = map.insert_or_assign(c, new_stream(c, stream_role::per_thread, 0, 0)).first;
    *out = it->second;
    return CUDA_SUCCESS;
  }
  if (g.streams.count(s) == 0 || s->destroyed || s->role == stream_role::legacy) return CUDA_ERROR_INVALID_HANDLE;
  if (!ctx_alive(s->ctx)) return CUDA_ERROR_CONTEXT_IS_DESTROYED;
  *out = s;
  return CUDA_SUCCESS;
}

CUresult enqueue(CUstream s, std::function<void()> run) {
  state& g = get();
  if (s->capture) {
    if (s->capture->invalidated) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    s->capture->graph->nodes.push_back(std::move(run));
    return CUDA_SUCCESS;
  }
  if (s->role == stream_role::legacy) {
    // The legacy stream would synchronise with a capturing blocking stream: that is an implicit
    // dependency capture cannot express, so the capture is invalidated.
    bool implicit = false;
    for (CUstream st : g.streams) {
      if (st->ctx == s->ctx && st != s && is_blocking(st) && st->capture) {
        st->capture->invalidated = true;
        implicit = true;
      }
    }
    if (implicit) return CUDA_ERROR_STREAM_CAPTURE_IMPLICIT;
  }
  op o;
  o.run = std::move(run);
  o.seq = ++s->enqueued;
  if (s->role == stream_role::legacy) {
    for (CUstream st : g.streams)
      if (st->ctx == s->ctx && st != s && is_blocking(st) && st->enqueued > st->completed)
        o.waits.emplace_back(st, st->enqueued);
  } else if (is_blocking(s)) {
    CUstream l = s->ctx->legacy;
    if (l->enqueued > l->completed) o.waits.emplace_back(l, l->enqueued);
  }
  s->queue.push_back(std::move(o));
  g.cv.notify_all();
  return CUDA_SUCCESS;
}

// An empty op (an event record) on a stream with nothing queued and nothing to wait for is done
// as soon as it is enqueued: a GPU may be that fast, and it keeps the hit path of a fence-based
// allocator measurable under callgrind, which runs one thread at a time (a worker would otherwise
// complete the record only when valgrind switches threads). Off when POOLSHIM_SIM_STREAM_DELAY_US
// is set: then every op waits for its worker.
uint64_t try_complete_empty_op(CUstream s) {
  state& g = get();
  if (g.cfg.stream_delay_us != 0 || s->capture || !stream_idle(s)) return 0;
  for (CUstream st : g.streams) {
    if (st == s || st->ctx != s->ctx) continue;
    // The legacy stream and a capturing blocking stream: enqueue() applies the capture rule.
    if (s->role == stream_role::legacy && is_blocking(st) && st->capture) return 0;
    if (stream_idle(st)) continue;
    if (s->role == stream_role::legacy ? is_blocking(st) : (is_blocking(s) && st->role == stream_role::legacy))
      return 0;
  }
  // Nobody can be waiting for a position that did not exist: no notification (it would wake every
  // worker thread).
  const uint64_t seq = ++s->enqueued;
  s->completed = seq;
  return seq;
}

void wait_stream_locked(std::unique_lock<std::mutex>& lk, CUstream s, uint64_t seq) {
  get().cv.wait(lk, [&] { return s->completed >= seq; });
}

bool stream_idle(CUstream s) { return s->completed >= s->enqueued; }

namespace {
template <class Pred>
void sync_streams_locked(std::unique_lock<std::mutex>& lk, Pred pick) {
  std::vector<std::pair<CUstream, uint64_t>> targets;
  for (CUstream st : get().streams)
    if (pick(st)) targets.emplace_back(st, st->enqueued);
  for (auto& [st, seq] : targets) wait_stream_locked(lk, st, seq);
}
}  // namespace

void sync_context_locked(std::unique_lock<std::mutex>& lk, CUcontext c) {
  sync_streams_locked(lk, [c](CUstream st) { return st->ctx == c; });
}

void sync_device_locked(std::unique_lock<std::mutex>& lk, int device) {
  sync_streams_locked(lk, [device](CUstream st) { return st->ctx->device == device; });
}

void sync_all_locked(std::unique_lock<std::mutex>& lk) {
  sync_streams_locked(lk, [](CUstream) { return true; });
}

}  // namespace sim

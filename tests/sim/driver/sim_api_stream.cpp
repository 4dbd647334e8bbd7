// Simulated CUDA driver: streams, events, host functions, stream memory operations, capture and
// graphs. Ordering lives in the engine (sim_streams.cpp); this file holds the API rules: which
// handles are valid, what a capture forbids, what an event query reports.
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "sim_state.h"

using namespace sim;

namespace {

bool live_event(CUevent e) { return e != nullptr && get().events.count(e) != 0 && !e->destroyed; }

void complete_ipc_generation(sim::ipc_event_state* ipc, uint64_t gen) {
  uint64_t seen = ipc->completed.load(std::memory_order_acquire);
  while (seen < gen && !ipc->completed.compare_exchange_weak(seen, gen, std::memory_order_acq_rel)) {
  }
}

// Another process completes the record: polled (the simulator has no cross-process wake-up). A
// record that never runs (its process died) leaves the waiter waiting, as on a device.
void wait_ipc_generation(const sim::ipc_event_state* ipc, uint64_t gen) {
  while (ipc->completed.load(std::memory_order_acquire) < gen) usleep(50);
}

CUresult capture_query_error(CUstream s) {
  // Querying or synchronising a capturing stream is not allowed and ends the capture.
  if (s->capture) {
    s->capture->invalidated = true;
    return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  }
  return CUDA_SUCCESS;
}

CUresult stream_create(const char* name, CUstream* ph, unsigned flags, int priority) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (ph == nullptr || (flags & ~static_cast<unsigned>(CU_STREAM_NON_BLOCKING)) != 0) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lk(get().mu);
  CUcontext c = nullptr;
  if (CUresult r = require_ctx(&c); r != CUDA_SUCCESS) return r;
  // Priorities clamp to the device's range [-5, 0] like the real driver.
  if (priority > 0) priority = 0;
  if (priority < -5) priority = -5;
  *ph = new_stream(c, stream_role::user, flags, priority);
  return CUDA_SUCCESS;
}

// Every per-stream entry point exists twice: the legacy one (stream 0 = legacy stream) and the
// _ptsz one (stream 0 = this thread's per-thread stream); both resolve their stream here.
// Called after api_enter (each helper enters with the name of the export that called it).
template <class F>
CUresult with_stream(CUstream hs, bool pt, F f) {
  std::unique_lock<std::mutex> lk(get().mu);
  CUstream s = nullptr;
  if (CUresult r = resolve_stream(hs, pt, &s); r != CUDA_SUCCESS) return r;
  return f(lk, s);
}

}  // namespace

POOLSHIM_SIM_API CUresult cuStreamCreate(CUstream* ph, unsigned int flags) {
  return stream_create("cuStreamCreate", ph, flags, 0);
}
POOLSHIM_SIM_API CUresult cuStreamCreateWithPriority(CUstream* ph, unsigned int flags, int priority) {
  return stream_create("cuStreamCreateWithPriority", ph, flags, priority);
}

namespace {
CUresult stream_destroy(const char* name, CUstream hs) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  std::lock_guard<std::mutex> lk(get().mu);
  if (hs == nullptr || hs == CU_STREAM_LEGACY || hs == CU_STREAM_PER_THREAD) return CUDA_ERROR_INVALID_HANDLE;
  CUstream s = nullptr;
  if (CUresult r = resolve_stream(hs, false, &s); r != CUDA_SUCCESS) return r;
  if (s->capture) {  // destroying a capturing stream invalidates its capture
    s->capture->invalidated = true;
    s->capture->members.erase(s);
    s->capture = nullptr;
  }
  retire_stream(s);  // pending work still runs; the worker exits when drained
  return CUDA_SUCCESS;
}
}  // namespace

POOLSHIM_SIM_API CUresult cuStreamDestroy_v2(CUstream hs) { return stream_destroy("cuStreamDestroy_v2", hs); }
// v2000: same ABI, behaves as v2 (UNV).
POOLSHIM_SIM_API CUresult cuStreamDestroy(CUstream hs) { return stream_destroy("cuStreamDestroy", hs); }

namespace {

CUresult stream_synchronize(const char* name, CUstream hs, bool pt) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  return with_stream(hs, pt, [](auto& lk, CUstream s) {
    if (CUresult r = capture_query_error(s); r != CUDA_SUCCESS) return r;
    if (s->role == stream_role::legacy) {
      // Waiting on the legacy stream means waiting for the blocking streams it orders against:
      // enqueue an empty op, which carries exactly those dependencies.
      if (CUresult r = enqueue(s, nullptr); r != CUDA_SUCCESS) return r;
    }
    wait_stream_locked(lk, s, s->enqueued);
    return sticky_or(CUDA_SUCCESS);
  });
}

CUresult stream_query(const char* name, CUstream hs, bool pt) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  return with_stream(hs, pt, [](auto&, CUstream s) {
    if (CUresult r = capture_query_error(s); r != CUDA_SUCCESS) return r;
    return sticky_or(stream_idle(s) ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY);
  });
}

CUresult stream_get_flags(const char* name, CUstream hs, unsigned* flags, bool pt) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (flags == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return with_stream(hs, pt, [flags](auto&, CUstream s) {
    *flags = s->flags;
    return CUDA_SUCCESS;
  });
}

CUresult stream_get_id(const char* name, CUstream hs, unsigned long long* id, bool pt) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (id == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return with_stream(hs, pt, [id](auto&, CUstream s) {
    *id = s->id;
    return CUDA_SUCCESS;
  });
}

CUresult stream_get_priority(const char* name, CUstream hs, int* prio, bool pt) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (prio == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return with_stream(hs, pt, [prio](auto&, CUstream s) {
    *prio = s->priority;
    return CUDA_SUCCESS;
  });
}

CUresult stream_get_ctx(const char* name, CUstream hs, CUcontext* pctx, bool pt) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (pctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return with_stream(hs, pt, [pctx](auto&, CUstream s) {
    *pctx = s->ctx;
    return CUDA_SUCCESS;
  });
}

CUresult launch_host_func(const char* name, CUstream hs, CUhostFn fn, void* data, bool pt) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (fn == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return with_stream(hs, pt, [fn, data](auto&, CUstream s) { return enqueue(s, [fn, data] { fn(data); }); });
}

CUresult stream_add_callback(const char* name, CUstream hs, CUstreamCallback cb, void* data, unsigned flags, bool pt) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (cb == nullptr || flags != 0) return CUDA_ERROR_INVALID_VALUE;
  return with_stream(hs, pt, [cb, data, hs](auto&, CUstream s) {
    if (s->capture) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;  // callbacks cannot be captured
    return enqueue(s, [cb, data, hs] { cb(hs, sticky_or(CUDA_SUCCESS), data); });
  });
}

CUresult stream_wait_event(const char* name, CUstream hs, CUevent e, unsigned flags, bool pt) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (flags & ~static_cast<unsigned>(CU_EVENT_WAIT_EXTERNAL)) return CUDA_ERROR_INVALID_VALUE;
  return with_stream(hs, pt, [e](auto&, CUstream s) {
    if (!live_event(e)) return CUDA_ERROR_INVALID_HANDLE;
    if (e->captured && e->capture) {
      // Waiting on an event of a capture joins this stream to that capture (fork/join pattern).
      if (e->capture->invalidated) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
      if (s->capture && s->capture != e->capture) return CUDA_ERROR_STREAM_CAPTURE_ISOLATION;
      s->capture = e->capture;
      e->capture->members.insert(s);
      return CUDA_SUCCESS;
    }
    if (e->ipc != nullptr && !s->capture) {
      // An interprocess event: the newest record, by whichever process, at the time of the call.
      sim::ipc_event_state* ipc = e->ipc;
      const uint64_t gen = ipc->recorded.load(std::memory_order_acquire);
      if (ipc->completed.load(std::memory_order_acquire) >= gen) return CUDA_SUCCESS;
      return enqueue(s, [ipc, gen] { wait_ipc_generation(ipc, gen); });
    }
    if (e->stream == nullptr || s->capture) return CUDA_SUCCESS;  // never recorded: no work to wait for
    // The wait uses the event's state at call time: a later re-record does not move it.
    CUstream src = e->stream;
    uint64_t seq = e->seq;
    if (CUresult r = enqueue(s, nullptr); r != CUDA_SUCCESS) return r;
    s->queue.back().waits.emplace_back(src, seq);
    return CUDA_SUCCESS;
  });
}

CUresult event_record(const char* name, CUevent e, CUstream hs, unsigned flags, bool pt) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (flags & ~static_cast<unsigned>(CU_EVENT_RECORD_EXTERNAL)) return CUDA_ERROR_INVALID_VALUE;
  return with_stream(hs, pt, [e](auto&, CUstream s) {
    if (!live_event(e)) return CUDA_ERROR_INVALID_HANDLE;
    if (e->ctx != s->ctx) return CUDA_ERROR_INVALID_HANDLE;  // event and stream from other contexts
    if (s->capture) {
      if (s->capture->invalidated) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
      e->captured = true;
      e->capture = s->capture;
      return CUDA_SUCCESS;
    }
    e->captured = false;
    e->capture = nullptr;
    sim::ipc_event_state* ipc = e->ipc;
    const uint64_t gen = ipc != nullptr ? ipc->recorded.fetch_add(1, std::memory_order_acq_rel) + 1 : 0;
    if (const uint64_t done = try_complete_empty_op(s); done != 0) {
      e->stream = s;
      e->seq = done;
      e->when = std::chrono::steady_clock::now();
      e->has_time = true;
      if (ipc != nullptr) complete_ipc_generation(ipc, gen);
      return CUDA_SUCCESS;
    }
    if (CUresult r = enqueue(s, nullptr); r != CUDA_SUCCESS) {
      if (ipc != nullptr) complete_ipc_generation(ipc, gen);  // nothing will run it: no one waits forever
      return r;
    }
    e->stream = s;
    e->seq = s->enqueued;
    e->has_time = false;
    uint64_t seq = e->seq;
    s->queue.back().run = [e, s, seq, ipc, gen] {
      if (ipc != nullptr) complete_ipc_generation(ipc, gen);
      auto now = std::chrono::steady_clock::now();
      std::lock_guard<std::mutex> lk(get().mu);
      if (e->stream == s && e->seq == seq) {  // not re-recorded meanwhile
        e->when = now;
        e->has_time = true;
      }
    };
    return CUDA_SUCCESS;
  });
}

}  // namespace

POOLSHIM_SIM_API CUresult cuStreamSynchronize(CUstream s) {
  return stream_synchronize("cuStreamSynchronize", s, false);
}
POOLSHIM_SIM_API CUresult cuStreamSynchronize_ptsz(CUstream s) {
  return stream_synchronize("cuStreamSynchronize_ptsz", s, true);
}
POOLSHIM_SIM_API CUresult cuStreamQuery(CUstream s) { return stream_query("cuStreamQuery", s, false); }
POOLSHIM_SIM_API CUresult cuStreamQuery_ptsz(CUstream s) { return stream_query("cuStreamQuery_ptsz", s, true); }
POOLSHIM_SIM_API CUresult cuStreamGetFlags(CUstream s, unsigned int* f) {
  return stream_get_flags("cuStreamGetFlags", s, f, false);
}
POOLSHIM_SIM_API CUresult cuStreamGetFlags_ptsz(CUstream s, unsigned int* f) {
  return stream_get_flags("cuStreamGetFlags_ptsz", s, f, true);
}
POOLSHIM_SIM_API CUresult cuStreamGetId(CUstream s, unsigned long long* id) {
  return stream_get_id("cuStreamGetId", s, id, false);
}
POOLSHIM_SIM_API CUresult cuStreamGetId_ptsz(CUstream s, unsigned long long* id) {
  return stream_get_id("cuStreamGetId_ptsz", s, id, true);
}
POOLSHIM_SIM_API CUresult cuStreamGetPriority(CUstream s, int* p) {
  return stream_get_priority("cuStreamGetPriority", s, p, false);
}
POOLSHIM_SIM_API CUresult cuStreamGetPriority_ptsz(CUstream s, int* p) {
  return stream_get_priority("cuStreamGetPriority_ptsz", s, p, true);
}
POOLSHIM_SIM_API CUresult cuStreamGetCtx(CUstream s, CUcontext* c) {
  return stream_get_ctx("cuStreamGetCtx", s, c, false);
}
POOLSHIM_SIM_API CUresult cuStreamGetCtx_ptsz(CUstream s, CUcontext* c) {
  return stream_get_ctx("cuStreamGetCtx_ptsz", s, c, true);
}
POOLSHIM_SIM_API CUresult cuStreamGetCtx_v2(CUstream s, CUcontext* c, CUgreenCtx* gc) {
  if (gc != nullptr) *gc = nullptr;  // green contexts are not simulated
  return stream_get_ctx("cuStreamGetCtx_v2", s, c, false);
}
POOLSHIM_SIM_API CUresult cuStreamGetCtx_v2_ptsz(CUstream s, CUcontext* c, CUgreenCtx* gc) {
  if (gc != nullptr) *gc = nullptr;
  return stream_get_ctx("cuStreamGetCtx_v2_ptsz", s, c, true);
}
POOLSHIM_SIM_API CUresult cuLaunchHostFunc(CUstream s, CUhostFn fn, void* d) {
  return launch_host_func("cuLaunchHostFunc", s, fn, d, false);
}
POOLSHIM_SIM_API CUresult cuLaunchHostFunc_ptsz(CUstream s, CUhostFn fn, void* d) {
  return launch_host_func("cuLaunchHostFunc_ptsz", s, fn, d, true);
}
POOLSHIM_SIM_API CUresult cuStreamAddCallback(CUstream s, CUstreamCallback cb, void* d, unsigned int f) {
  return stream_add_callback("cuStreamAddCallback", s, cb, d, f, false);
}
POOLSHIM_SIM_API CUresult cuStreamAddCallback_ptsz(CUstream s, CUstreamCallback cb, void* d, unsigned int f) {
  return stream_add_callback("cuStreamAddCallback_ptsz", s, cb, d, f, true);
}
POOLSHIM_SIM_API CUresult cuStreamWaitEvent(CUstream s, CUevent e, unsigned int f) {
  return stream_wait_event("cuStreamWaitEvent", s, e, f, false);
}
POOLSHIM_SIM_API CUresult cuStreamWaitEvent_ptsz(CUstream s, CUevent e, unsigned int f) {
  return stream_wait_event("cuStreamWaitEvent_ptsz", s, e, f, true);
}
POOLSHIM_SIM_API CUresult cuEventRecord(CUevent e, CUstream s) { return event_record("cuEventRecord", e, s, 0, false); }
POOLSHIM_SIM_API CUresult cuEventRecord_ptsz(CUevent e, CUstream s) {
  return event_record("cuEventRecord_ptsz", e, s, 0, true);
}
POOLSHIM_SIM_API CUresult cuEventRecordWithFlags(CUevent e, CUstream s, unsigned int f) {
  return event_record("cuEventRecordWithFlags", e, s, f, false);
}
POOLSHIM_SIM_API CUresult cuEventRecordWithFlags_ptsz(CUevent e, CUstream s, unsigned int f) {
  return event_record("cuEventRecordWithFlags_ptsz", e, s, f, true);
}

// --- events -----------------------------------------------------------------------------------

POOLSHIM_SIM_API CUresult cuEventCreate(CUevent* ph, unsigned int flags) {
  if (CUresult r = api_enter("cuEventCreate"); r != CUDA_SUCCESS) return r;
  constexpr unsigned known = CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS;
  if (ph == nullptr || (flags & ~known) != 0) return CUDA_ERROR_INVALID_VALUE;
  // Interprocess events must disable timing.
  if ((flags & CU_EVENT_INTERPROCESS) && !(flags & CU_EVENT_DISABLE_TIMING)) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lk(get().mu);
  CUcontext c = nullptr;
  if (CUresult r = require_ctx(&c); r != CUDA_SUCCESS) return r;
  auto* e = new CUevent_st();
  e->ctx = c;
  e->flags = flags;
  if (flags & CU_EVENT_INTERPROCESS) {
    e->ipc = create_ipc_event_state(&e->ipc_fd);
    if (e->ipc == nullptr) {
      delete e;
      return CUDA_ERROR_OUT_OF_MEMORY;
    }
  }
  get().events.insert(e);
  *ph = e;
  return CUDA_SUCCESS;
}

namespace {
CUresult event_destroy(const char* name, CUevent e) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  if (!live_event(e)) return CUDA_ERROR_INVALID_HANDLE;
  e->destroyed = true;   // a pending record still completes harmlessly
  if (e->ipc_fd >= 0) {  // no new process can open it; those that did keep their mapping
    close(e->ipc_fd);
    e->ipc_fd = -1;
  }
  g.events.erase(e);
  g.graveyard.push_back(e);
  return CUDA_SUCCESS;
}
}  // namespace

POOLSHIM_SIM_API CUresult cuEventDestroy_v2(CUevent e) { return event_destroy("cuEventDestroy_v2", e); }
// v2000: same ABI, behaves as v2 (UNV).
POOLSHIM_SIM_API CUresult cuEventDestroy(CUevent e) { return event_destroy("cuEventDestroy", e); }

POOLSHIM_SIM_API CUresult cuEventQuery(CUevent e) {
  if (CUresult r = api_enter("cuEventQuery"); r != CUDA_SUCCESS) return r;
  std::lock_guard<std::mutex> lk(get().mu);
  if (!live_event(e)) return CUDA_ERROR_INVALID_HANDLE;
  if (e->captured) return CUDA_ERROR_CAPTURED_EVENT;
  if (e->ipc != nullptr)
    return sticky_or(e->ipc->completed.load(std::memory_order_acquire) >=
                             e->ipc->recorded.load(std::memory_order_acquire)
                         ? CUDA_SUCCESS
                         : CUDA_ERROR_NOT_READY);
  if (e->stream == nullptr) return CUDA_SUCCESS;  // never recorded: empty work is complete
  return sticky_or(e->stream->completed >= e->seq ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY);
}

POOLSHIM_SIM_API CUresult cuEventSynchronize(CUevent e) {
  if (CUresult r = api_enter("cuEventSynchronize"); r != CUDA_SUCCESS) return r;
  std::unique_lock<std::mutex> lk(get().mu);
  if (!live_event(e)) return CUDA_ERROR_INVALID_HANDLE;
  if (e->captured) return CUDA_ERROR_CAPTURED_EVENT;
  if (e->ipc != nullptr) {
    sim::ipc_event_state* ipc = e->ipc;
    const uint64_t gen = ipc->recorded.load(std::memory_order_acquire);
    lk.unlock();
    wait_ipc_generation(ipc, gen);
    return sticky_or(CUDA_SUCCESS);
  }
  if (e->stream != nullptr) wait_stream_locked(lk, e->stream, e->seq);
  return sticky_or(CUDA_SUCCESS);
}

namespace {
CUresult event_elapsed_time(const char* name, float* ms, CUevent start, CUevent end) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (ms == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lk(get().mu);
  if (!live_event(start) || !live_event(end)) return CUDA_ERROR_INVALID_HANDLE;
  if ((start->flags | end->flags) & CU_EVENT_DISABLE_TIMING) return CUDA_ERROR_INVALID_HANDLE;
  if (start->captured || end->captured) return CUDA_ERROR_CAPTURED_EVENT;
  if (start->stream == nullptr || end->stream == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (!start->has_time || !end->has_time) return CUDA_ERROR_NOT_READY;
  *ms = std::chrono::duration<float, std::milli>(end->when - start->when).count();
  return CUDA_SUCCESS;
}
}  // namespace

POOLSHIM_SIM_API CUresult cuEventElapsedTime_v2(float* ms, CUevent start, CUevent end) {
  return event_elapsed_time("cuEventElapsedTime_v2", ms, start, end);
}
// v2000: the same ABI as v12080 and, here, the same behaviour (UNV: what v2 changed is not
// documented in cuda.h).
POOLSHIM_SIM_API CUresult cuEventElapsedTime(float* ms, CUevent start, CUevent end) {
  return event_elapsed_time("cuEventElapsedTime", ms, start, end);
}

// --- stream memory operations (64-bit write/wait) ----------------------------------------------

namespace {

CUresult write_value64(const char* name, CUstream hs, CUdeviceptr addr, cuuint64_t value, unsigned flags, bool pt) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (addr % 8 != 0 || (flags & ~static_cast<unsigned>(CU_STREAM_WRITE_VALUE_NO_MEMORY_BARRIER)) != 0)
    return CUDA_ERROR_INVALID_VALUE;
  return with_stream(hs, pt, [addr, value](auto&, CUstream s) {
    resolved d;
    if (CUresult r = resolve_range(addr, 8, true, s->ctx->device, &d); r != CUDA_SUCCESS) return r;
    if (d.cls == mem_class::pageable) return CUDA_ERROR_INVALID_VALUE;
    auto* target = reinterpret_cast<std::atomic<uint64_t>*>(d.ptr);
    return enqueue(s, [target, value] { target->store(value, std::memory_order_release); });
  });
}

bool wait_condition(uint64_t cur, uint64_t value, unsigned how) {
  switch (how) {
    case CU_STREAM_WAIT_VALUE_GEQ:
      return static_cast<int64_t>(cur - value) >= 0;  // wrap-aware, as documented
    case CU_STREAM_WAIT_VALUE_EQ:
      return cur == value;
    case CU_STREAM_WAIT_VALUE_AND:
      return (cur & value) != 0;
    case CU_STREAM_WAIT_VALUE_NOR:
      return ~(cur | value) != 0;
    default:
      return true;
  }
}

CUresult wait_value64(const char* name, CUstream hs, CUdeviceptr addr, cuuint64_t value, unsigned flags, bool pt) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  unsigned how = flags & 0x3;
  if (addr % 8 != 0 || (flags & ~(0x3u | CU_STREAM_WAIT_VALUE_FLUSH)) != 0) return CUDA_ERROR_INVALID_VALUE;
  return with_stream(hs, pt, [addr, value, how](auto&, CUstream s) {
    resolved d;
    if (CUresult r = resolve_range(addr, 8, false, s->ctx->device, &d); r != CUDA_SUCCESS) return r;
    if (d.cls == mem_class::pageable) return CUDA_ERROR_INVALID_VALUE;
    auto* target = reinterpret_cast<std::atomic<uint64_t>*>(d.ptr);
    return enqueue(s, [target, value, how] {
      while (!wait_condition(target->load(std::memory_order_acquire), value, how) &&
             get().sticky.load() == CUDA_SUCCESS)
        std::this_thread::sleep_for(std::chrono::microseconds(20));
    });
  });
}

}  // namespace

POOLSHIM_SIM_API CUresult cuStreamWriteValue64_v2(CUstream s, CUdeviceptr a, cuuint64_t v, unsigned int f) {
  return write_value64("cuStreamWriteValue64_v2", s, a, v, f, false);
}
POOLSHIM_SIM_API CUresult cuStreamWriteValue64_v2_ptsz(CUstream s, CUdeviceptr a, cuuint64_t v, unsigned int f) {
  return write_value64("cuStreamWriteValue64_v2_ptsz", s, a, v, f, true);
}
POOLSHIM_SIM_API CUresult cuStreamWaitValue64_v2(CUstream s, CUdeviceptr a, cuuint64_t v, unsigned int f) {
  return wait_value64("cuStreamWaitValue64_v2", s, a, v, f, false);
}
POOLSHIM_SIM_API CUresult cuStreamWaitValue64_v2_ptsz(CUstream s, CUdeviceptr a, cuuint64_t v, unsigned int f) {
  return wait_value64("cuStreamWaitValue64_v2_ptsz", s, a, v, f, true);
}
// v9000 (and _ptsz): same ABI and, here, behaviour as v11070 (UNV: v1 needed
// CU_DEVICE_ATTRIBUTE_CAN_USE_64_BIT_STREAM_MEM_OPS_V1; v2 made the operations always available).
POOLSHIM_SIM_API CUresult cuStreamWriteValue64(CUstream s, CUdeviceptr a, cuuint64_t v, unsigned int f) {
  return write_value64("cuStreamWriteValue64", s, a, v, f, false);
}
POOLSHIM_SIM_API CUresult cuStreamWriteValue64_ptsz(CUstream s, CUdeviceptr a, cuuint64_t v, unsigned int f) {
  return write_value64("cuStreamWriteValue64_ptsz", s, a, v, f, true);
}
POOLSHIM_SIM_API CUresult cuStreamWaitValue64(CUstream s, CUdeviceptr a, cuuint64_t v, unsigned int f) {
  return wait_value64("cuStreamWaitValue64", s, a, v, f, false);
}
POOLSHIM_SIM_API CUresult cuStreamWaitValue64_ptsz(CUstream s, CUdeviceptr a, cuuint64_t v, unsigned int f) {
  return wait_value64("cuStreamWaitValue64_ptsz", s, a, v, f, true);
}

// --- capture ----------------------------------------------------------------------------------

namespace {

CUresult begin_capture(const char* name, CUstream hs, CUstreamCaptureMode mode, bool pt) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (mode != CU_STREAM_CAPTURE_MODE_GLOBAL && mode != CU_STREAM_CAPTURE_MODE_THREAD_LOCAL &&
      mode != CU_STREAM_CAPTURE_MODE_RELAXED)
    return CUDA_ERROR_INVALID_VALUE;
  return with_stream(hs, pt, [mode](auto&, CUstream s) {
    if (s->role == stream_role::legacy) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    if (s->capture) return CUDA_ERROR_ILLEGAL_STATE;
    state& g = get();
    auto c = std::make_shared<capture_state>();
    c->id = g.next_capture_id++;
    c->mode = mode;
    c->thread = std::this_thread::get_id();
    c->origin = s;
    c->graph = new CUgraph_st();
    g.graphs.insert(c->graph);
    c->members.insert(s);
    s->capture = c;
    g.captures.push_back(c);
    return CUDA_SUCCESS;
  });
}

CUresult end_capture(const char* name, CUstream hs, CUgraph* graph, bool pt) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (graph == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return with_stream(hs, pt, [graph](auto&, CUstream s) {
    state& g = get();
    if (!s->capture || s->capture->origin != s) return CUDA_ERROR_ILLEGAL_STATE;
    auto c = s->capture;
    if (c->mode != CU_STREAM_CAPTURE_MODE_RELAXED && c->thread != std::this_thread::get_id())
      return CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD;
    for (CUstream m : c->members) m->capture = nullptr;
    std::erase(g.captures, c);
    if (c->invalidated) {
      g.graphs.erase(c->graph);
      g.graveyard.push_back(c->graph);
      *graph = nullptr;
      return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    }
    *graph = c->graph;
    return CUDA_SUCCESS;
  });
}

CUresult is_capturing(const char* name, CUstream hs, CUstreamCaptureStatus* status, bool pt) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (status == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return with_stream(hs, pt, [status](auto&, CUstream s) {
    if (s->role == stream_role::legacy) {
      for (CUstream st : get().streams)
        if (st->ctx == s->ctx && st->capture && st->role != stream_role::legacy &&
            (st->role == stream_role::per_thread || !(st->flags & CU_STREAM_NON_BLOCKING)))
          return CUDA_ERROR_STREAM_CAPTURE_IMPLICIT;
    }
    *status = !s->capture               ? CU_STREAM_CAPTURE_STATUS_NONE
              : s->capture->invalidated ? CU_STREAM_CAPTURE_STATUS_INVALIDATED
                                        : CU_STREAM_CAPTURE_STATUS_ACTIVE;
    return CUDA_SUCCESS;
  });
}

CUresult get_capture_info(const char* name, CUstream hs, CUstreamCaptureStatus* status, cuuint64_t* id, CUgraph* graph,
                          const CUgraphNode** deps, const CUgraphEdgeData** edges, size_t* ndeps, bool pt) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (status == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return with_stream(hs, pt, [=](auto&, CUstream s) {
    *status = !s->capture               ? CU_STREAM_CAPTURE_STATUS_NONE
              : s->capture->invalidated ? CU_STREAM_CAPTURE_STATUS_INVALIDATED
                                        : CU_STREAM_CAPTURE_STATUS_ACTIVE;
    if (id) *id = s->capture ? s->capture->id : 0;
    if (graph) *graph = s->capture ? s->capture->graph : nullptr;
    if (deps) *deps = nullptr;  // the simulated graph is a sequence, not a DAG
    if (edges) *edges = nullptr;
    if (ndeps) *ndeps = 0;
    return CUDA_SUCCESS;
  });
}

}  // namespace

POOLSHIM_SIM_API CUresult cuStreamBeginCapture_v2(CUstream s, CUstreamCaptureMode m) {
  return begin_capture("cuStreamBeginCapture_v2", s, m, false);
}
POOLSHIM_SIM_API CUresult cuStreamBeginCapture_v2_ptsz(CUstream s, CUstreamCaptureMode m) {
  return begin_capture("cuStreamBeginCapture_v2_ptsz", s, m, true);
}
// v10000 (and _ptsz): no mode argument; the capture is CU_STREAM_CAPTURE_MODE_GLOBAL (UNV).
POOLSHIM_SIM_API CUresult cuStreamBeginCapture(CUstream s) {
  return begin_capture("cuStreamBeginCapture", s, CU_STREAM_CAPTURE_MODE_GLOBAL, false);
}
POOLSHIM_SIM_API CUresult cuStreamBeginCapture_ptsz(CUstream s) {
  return begin_capture("cuStreamBeginCapture_ptsz", s, CU_STREAM_CAPTURE_MODE_GLOBAL, true);
}
POOLSHIM_SIM_API CUresult cuStreamEndCapture(CUstream s, CUgraph* g) {
  return end_capture("cuStreamEndCapture", s, g, false);
}
POOLSHIM_SIM_API CUresult cuStreamEndCapture_ptsz(CUstream s, CUgraph* g) {
  return end_capture("cuStreamEndCapture_ptsz", s, g, true);
}
POOLSHIM_SIM_API CUresult cuStreamIsCapturing(CUstream s, CUstreamCaptureStatus* st) {
  return is_capturing("cuStreamIsCapturing", s, st, false);
}
POOLSHIM_SIM_API CUresult cuStreamIsCapturing_ptsz(CUstream s, CUstreamCaptureStatus* st) {
  return is_capturing("cuStreamIsCapturing_ptsz", s, st, true);
}
POOLSHIM_SIM_API CUresult cuStreamGetCaptureInfo_v3(CUstream s, CUstreamCaptureStatus* st, cuuint64_t* id, CUgraph* g,
                                                    const CUgraphNode** d, const CUgraphEdgeData** e, size_t* n) {
  return get_capture_info("cuStreamGetCaptureInfo_v3", s, st, id, g, d, e, n, false);
}
POOLSHIM_SIM_API CUresult cuStreamGetCaptureInfo_v3_ptsz(CUstream s, CUstreamCaptureStatus* st, cuuint64_t* id,
                                                         CUgraph* g, const CUgraphNode** d, const CUgraphEdgeData** e,
                                                         size_t* n) {
  return get_capture_info("cuStreamGetCaptureInfo_v3_ptsz", s, st, id, g, d, e, n, true);
}

// v10010 (status, id) and v11030 (no edge data): v3 with fewer outputs (UNV).
POOLSHIM_SIM_API CUresult cuStreamGetCaptureInfo(CUstream s, CUstreamCaptureStatus* st, cuuint64_t* id) {
  return get_capture_info("cuStreamGetCaptureInfo", s, st, id, nullptr, nullptr, nullptr, nullptr, false);
}
POOLSHIM_SIM_API CUresult cuStreamGetCaptureInfo_ptsz(CUstream s, CUstreamCaptureStatus* st, cuuint64_t* id) {
  return get_capture_info("cuStreamGetCaptureInfo_ptsz", s, st, id, nullptr, nullptr, nullptr, nullptr, true);
}
POOLSHIM_SIM_API CUresult cuStreamGetCaptureInfo_v2(CUstream s, CUstreamCaptureStatus* st, cuuint64_t* id, CUgraph* g,
                                                    const CUgraphNode** d, size_t* n) {
  return get_capture_info("cuStreamGetCaptureInfo_v2", s, st, id, g, d, nullptr, n, false);
}
POOLSHIM_SIM_API CUresult cuStreamGetCaptureInfo_v2_ptsz(CUstream s, CUstreamCaptureStatus* st, cuuint64_t* id,
                                                         CUgraph* g, const CUgraphNode** d, size_t* n) {
  return get_capture_info("cuStreamGetCaptureInfo_v2_ptsz", s, st, id, g, d, nullptr, n, true);
}

POOLSHIM_SIM_API CUresult cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode* mode) {
  if (CUresult r = api_enter("cuThreadExchangeStreamCaptureMode"); r != CUDA_SUCCESS) return r;
  if (mode == nullptr || *mode > CU_STREAM_CAPTURE_MODE_RELAXED) return CUDA_ERROR_INVALID_VALUE;
  std::swap(this_thread().capture_mode, *mode);
  return CUDA_SUCCESS;
}

// --- graphs -----------------------------------------------------------------------------------

POOLSHIM_SIM_API CUresult cuGraphInstantiateWithFlags(CUgraphExec* exec, CUgraph graph, unsigned long long /*flags*/) {
  if (CUresult r = api_enter("cuGraphInstantiateWithFlags"); r != CUDA_SUCCESS) return r;
  if (exec == nullptr) return CUDA_ERROR_INVALID_VALUE;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  if (g.graphs.count(graph) == 0) return CUDA_ERROR_INVALID_VALUE;
  auto* x = new CUgraphExec_st();
  x->nodes = graph->nodes;
  x->ctx = current_ctx();
  g.graph_execs.insert(x);
  *exec = x;
  return CUDA_SUCCESS;
}

namespace {
CUresult graph_launch(const char* name, CUgraphExec x, CUstream hs, bool pt) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  return with_stream(hs, pt, [x](auto&, CUstream s) {
    if (get().graph_execs.count(x) == 0) return CUDA_ERROR_INVALID_HANDLE;
    auto nodes = x->nodes;
    return enqueue(s, [nodes = std::move(nodes)] {
      for (auto& n : nodes)
        if (n) n();
    });
  });
}
}  // namespace

POOLSHIM_SIM_API CUresult cuGraphLaunch(CUgraphExec x, CUstream s) {
  return graph_launch("cuGraphLaunch", x, s, false);
}
POOLSHIM_SIM_API CUresult cuGraphLaunch_ptsz(CUgraphExec x, CUstream s) {
  return graph_launch("cuGraphLaunch_ptsz", x, s, true);
}

POOLSHIM_SIM_API CUresult cuGraphExecDestroy(CUgraphExec x) {
  if (CUresult r = api_enter("cuGraphExecDestroy"); r != CUDA_SUCCESS) return r;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  if (g.graph_execs.erase(x) == 0) return CUDA_ERROR_INVALID_VALUE;
  g.graveyard.push_back(x);
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuGraphDestroy(CUgraph graph) {
  if (CUresult r = api_enter("cuGraphDestroy"); r != CUDA_SUCCESS) return r;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  if (g.graphs.erase(graph) == 0) return CUDA_ERROR_INVALID_VALUE;
  g.graveyard.push_back(graph);
  return CUDA_SUCCESS;
}

// Streams, events, host callbacks, stream capture and graphs of the simulator's libcudart, with
// their _ptsz twins. Stream handles (NULL, cudaStreamLegacy, cudaStreamPerThread included) pass
// to the driver unchanged; the runtime's enums and flags equal the driver's value for value.
#include "runtime_internal.h"

namespace poolshim::sim_rt {
namespace {

template <default_stream S>
cudaError_t stream_synchronize(cudaStream_t stream) {
  return api(needs::context, [&]() -> cudaError_t { return from_driver(driver(S).cuStreamSynchronize(stream)); });
}

template <default_stream S>
cudaError_t stream_query(cudaStream_t stream) {
  return api(needs::context, [&]() -> cudaError_t { return from_driver(driver(S).cuStreamQuery(stream)); });
}

template <default_stream S>
cudaError_t stream_wait_event(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  return api(needs::context,
             [&]() -> cudaError_t { return from_driver(driver(S).cuStreamWaitEvent(stream, event, flags)); });
}

template <default_stream S>
cudaError_t stream_get_flags(cudaStream_t stream, unsigned int* flags) {
  return api(needs::context, [&]() -> cudaError_t { return from_driver(driver(S).cuStreamGetFlags(stream, flags)); });
}

template <default_stream S>
cudaError_t stream_get_id(cudaStream_t stream, unsigned long long* id) {
  return api(needs::context, [&]() -> cudaError_t { return from_driver(driver(S).cuStreamGetId(stream, id)); });
}

template <default_stream S>
cudaError_t stream_get_priority(cudaStream_t stream, int* priority) {
  return api(needs::context,
             [&]() -> cudaError_t { return from_driver(driver(S).cuStreamGetPriority(stream, priority)); });
}

template <default_stream S>
cudaError_t begin_capture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  return api(needs::context, [&]() -> cudaError_t {
    return from_driver(driver(S).cuStreamBeginCapture(stream, static_cast<CUstreamCaptureMode>(mode)));
  });
}

template <default_stream S>
cudaError_t end_capture(cudaStream_t stream, cudaGraph_t* graph) {
  return api(needs::context, [&]() -> cudaError_t { return from_driver(driver(S).cuStreamEndCapture(stream, graph)); });
}

template <default_stream S>
cudaError_t is_capturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  return api(needs::context, [&]() -> cudaError_t {
    if (status == nullptr) return cudaErrorInvalidValue;
    CUstreamCaptureStatus s = CU_STREAM_CAPTURE_STATUS_NONE;
    CUresult r = driver(S).cuStreamIsCapturing(stream, &s);
    if (r == CUDA_SUCCESS) *status = static_cast<cudaStreamCaptureStatus>(s);
    return from_driver(r);
  });
}

template <default_stream S>
cudaError_t launch_host_func(cudaStream_t stream, cudaHostFn_t fn, void* user_data) {
  return api(needs::context,
             [&]() -> cudaError_t { return from_driver(driver(S).cuLaunchHostFunc(stream, fn, user_data)); });
}

// The runtime callback receives a cudaError_t, the driver's a CUresult: a one-shot thunk
// translates between them (it runs on the driver's stream worker and frees itself).
struct callback_thunk {
  cudaStreamCallback_t callback;
  void* user_data;
};

void CUDA_CB run_callback(CUstream stream, CUresult status, void* data) {
  callback_thunk* thunk = static_cast<callback_thunk*>(data);
  const callback_thunk copy = *thunk;
  delete thunk;
  copy.callback(stream, from_driver(status), copy.user_data);
}

template <default_stream S>
cudaError_t stream_add_callback(cudaStream_t stream, cudaStreamCallback_t callback, void* user_data,
                                unsigned int flags) {
  return api(needs::context, [&]() -> cudaError_t {
    if (callback == nullptr) return cudaErrorInvalidValue;
    callback_thunk* thunk = new callback_thunk{callback, user_data};
    CUresult r = driver(S).cuStreamAddCallback(stream, run_callback, thunk, flags);
    if (r != CUDA_SUCCESS) delete thunk;  // never enqueued, so never run
    return from_driver(r);
  });
}

template <default_stream S>
cudaError_t event_record(cudaEvent_t event, cudaStream_t stream) {
  return api(needs::context, [&]() -> cudaError_t { return from_driver(driver(S).cuEventRecord(event, stream)); });
}

template <default_stream S>
cudaError_t event_record_with_flags(cudaEvent_t event, cudaStream_t stream, unsigned int flags) {
  return api(needs::context,
             [&]() -> cudaError_t { return from_driver(driver(S).cuEventRecordWithFlags(event, stream, flags)); });
}

template <default_stream S>
cudaError_t graph_launch(cudaGraphExec_t exec, cudaStream_t stream) {
  return api(needs::context, [&]() -> cudaError_t { return from_driver(driver(S).cuGraphLaunch(exec, stream)); });
}

}  // namespace
}  // namespace poolshim::sim_rt

using namespace poolshim::sim_rt;

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaStreamCreate(cudaStream_t* pStream) {
  return api(needs::context,
             [&]() -> cudaError_t { return from_driver(driver().cuStreamCreate(pStream, CU_STREAM_DEFAULT)); });
}

// cudaStreamNonBlocking is CU_STREAM_NON_BLOCKING.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaStreamCreateWithFlags(cudaStream_t* pStream, unsigned int flags) {
  return api(needs::context, [&]() -> cudaError_t { return from_driver(driver().cuStreamCreate(pStream, flags)); });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaStreamCreateWithPriority(cudaStream_t* pStream, unsigned int flags,
                                                                   int priority) {
  return api(needs::context, [&]() -> cudaError_t {
    return from_driver(driver().cuStreamCreateWithPriority(pStream, flags, priority));
  });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaStreamDestroy(cudaStream_t stream) {
  return api(needs::context, [&]() -> cudaError_t { return from_driver(driver().cuStreamDestroy(stream)); });
}

POOLSHIM_RT_STREAM_PAIR(cudaStreamSynchronize, _ptsz, stream_synchronize, (cudaStream_t stream), (stream))
POOLSHIM_RT_STREAM_PAIR(cudaStreamQuery, _ptsz, stream_query, (cudaStream_t stream), (stream))
POOLSHIM_RT_STREAM_PAIR(cudaStreamWaitEvent, _ptsz, stream_wait_event,
                        (cudaStream_t stream, cudaEvent_t event, unsigned int flags), (stream, event, flags))
POOLSHIM_RT_STREAM_PAIR(cudaStreamGetFlags, _ptsz, stream_get_flags, (cudaStream_t hStream, unsigned int* flags),
                        (hStream, flags))
POOLSHIM_RT_STREAM_PAIR(cudaStreamGetId, _ptsz, stream_get_id, (cudaStream_t hStream, unsigned long long* streamId),
                        (hStream, streamId))
POOLSHIM_RT_STREAM_PAIR(cudaStreamGetPriority, _ptsz, stream_get_priority, (cudaStream_t hStream, int* priority),
                        (hStream, priority))
POOLSHIM_RT_STREAM_PAIR(cudaStreamBeginCapture, _ptsz, begin_capture, (cudaStream_t stream, cudaStreamCaptureMode mode),
                        (stream, mode))
POOLSHIM_RT_STREAM_PAIR(cudaStreamEndCapture, _ptsz, end_capture, (cudaStream_t stream, cudaGraph_t* pGraph),
                        (stream, pGraph))
POOLSHIM_RT_STREAM_PAIR(cudaStreamIsCapturing, _ptsz, is_capturing,
                        (cudaStream_t stream, cudaStreamCaptureStatus* pCaptureStatus), (stream, pCaptureStatus))
POOLSHIM_RT_STREAM_PAIR(cudaLaunchHostFunc, _ptsz, launch_host_func,
                        (cudaStream_t stream, cudaHostFn_t fn, void* userData), (stream, fn, userData))
POOLSHIM_RT_STREAM_PAIR(cudaStreamAddCallback, _ptsz, stream_add_callback,
                        (cudaStream_t stream, cudaStreamCallback_t callback, void* userData, unsigned int flags),
                        (stream, callback, userData, flags))
POOLSHIM_RT_STREAM_PAIR(cudaEventRecord, _ptsz, event_record, (cudaEvent_t event, cudaStream_t stream), (event, stream))
POOLSHIM_RT_STREAM_PAIR(cudaEventRecordWithFlags, _ptsz, event_record_with_flags,
                        (cudaEvent_t event, cudaStream_t stream, unsigned int flags), (event, stream, flags))
POOLSHIM_RT_STREAM_PAIR(cudaGraphLaunch, _ptsz, graph_launch, (cudaGraphExec_t graphExec, cudaStream_t stream),
                        (graphExec, stream))

// The capture mode is per thread in the driver and needs no context; nothing of it is kept here.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode* mode) {
  return api(needs::driver, [&]() -> cudaError_t {
    if (mode == nullptr) return cudaErrorInvalidValue;
    CUstreamCaptureMode m = static_cast<CUstreamCaptureMode>(*mode);
    CUresult r = driver().cuThreadExchangeStreamCaptureMode(&m);
    if (r == CUDA_SUCCESS) *mode = static_cast<cudaStreamCaptureMode>(m);
    return from_driver(r);
  });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaEventCreate(cudaEvent_t* event) {
  return api(needs::context,
             [&]() -> cudaError_t { return from_driver(driver().cuEventCreate(event, CU_EVENT_DEFAULT)); });
}

// cudaEventBlockingSync / DisableTiming / Interprocess are CU_EVENT_BLOCKING_SYNC / DISABLE_TIMING /
// INTERPROCESS.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  return api(needs::context, [&]() -> cudaError_t { return from_driver(driver().cuEventCreate(event, flags)); });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaEventQuery(cudaEvent_t event) {
  return api(needs::context, [&]() -> cudaError_t { return from_driver(driver().cuEventQuery(event)); });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaEventSynchronize(cudaEvent_t event) {
  return api(needs::context, [&]() -> cudaError_t { return from_driver(driver().cuEventSynchronize(event)); });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  return api(needs::context, [&]() -> cudaError_t {
    return from_driver(driver().cuEventElapsedTime(ms, start, end));  // cuEventElapsedTime_v2
  });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaEventDestroy(cudaEvent_t event) {
  return api(needs::context, [&]() -> cudaError_t { return from_driver(driver().cuEventDestroy(event)); });
}

// cudaGraphInstantiateFlag* are CUDA_GRAPH_INSTANTIATE_FLAG_* one for one.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaGraphInstantiate(cudaGraphExec_t* pGraphExec, cudaGraph_t graph,
                                                           unsigned long long flags) {
  return api(needs::context, [&]() -> cudaError_t {
    return from_driver(driver().cuGraphInstantiateWithFlags(pGraphExec, graph, flags));
  });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaGraphExecDestroy(cudaGraphExec_t graphExec) {
  return api(needs::context, [&]() -> cudaError_t { return from_driver(driver().cuGraphExecDestroy(graphExec)); });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaGraphDestroy(cudaGraph_t graph) {
  return api(needs::context, [&]() -> cudaError_t { return from_driver(driver().cuGraphDestroy(graph)); });
}

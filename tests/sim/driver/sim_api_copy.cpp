// Simulated CUDA driver: copies and memsets, with the host-synchronisation rules of CUDA's
// "API synchronization behavior" section: pageable sources are staged at call time, pageable
// destinations make the call wait, device-to-device and memsets of device memory never make the
// host wait, and synchronous calls to or from pinned memory return when the copy is done.
#include <cstring>
#include <memory>
#include <vector>

#include "sim_state.h"

using namespace sim;

namespace {

bool deviceish(mem_class c) { return c == mem_class::device || c == mem_class::managed; }

CUresult do_copy(const char* name, uintptr_t dst, uintptr_t src, size_t n, CUstream hs, bool per_thread, bool async) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  state& g = get();
  std::unique_lock<std::mutex> lk(g.mu);
  CUstream s = nullptr;
  if (CUresult r = resolve_stream(hs, per_thread, &s); r != CUDA_SUCCESS) return r;
  if (n == 0) return CUDA_SUCCESS;
  int dev = s->ctx->device;
  resolved d, sr;
  if (CUresult r = resolve_range(dst, n, true, dev, &d); r != CUDA_SUCCESS) return r;
  if (CUresult r = resolve_range(src, n, false, dev, &sr); r != CUDA_SUCCESS) return r;

  bool src_pageable = sr.cls == mem_class::pageable;
  bool dst_pageable = d.cls == mem_class::pageable;
  bool wait_after;
  if (!async) {
    // Synchronous API: device-to-device never waits; a pageable source is staged and the call
    // returns before the DMA; everything else returns when the copy is done.
    wait_after = !(deviceish(sr.cls) && deviceish(d.cls)) && !(src_pageable && deviceish(d.cls));
  } else {
    // Async API: a pageable destination, or host-to-host through pageable memory, is synchronous.
    wait_after = dst_pageable || (src_pageable && !deviceish(d.cls));
  }
  if (s->capture && (src_pageable || dst_pageable)) {
    // Pageable memory cannot be part of a graph.
    s->capture->invalidated = true;
    return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  }
  std::function<void()> run;
  if (src_pageable && !wait_after) {
    if (!async) wait_stream_locked(lk, s, s->enqueued);  // "a stream sync is performed before the copy"
    auto staged = std::make_shared<std::vector<uint8_t>>(sr.ptr, sr.ptr + n);
    run = [to = d.ptr, staged] { std::memcpy(to, staged->data(), staged->size()); };
  } else {
    run = [to = d.ptr, from = sr.ptr, n] { std::memmove(to, from, n); };
  }
  if (CUresult r = enqueue(s, std::move(run)); r != CUDA_SUCCESS) return r;
  if (wait_after && !s->capture) wait_stream_locked(lk, s, s->enqueued);
  return sticky_or(CUDA_SUCCESS);
}

CUresult do_memset(const char* name, uintptr_t dst, uint32_t value, unsigned elem, size_t count, CUstream hs,
                   bool per_thread, bool async) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (dst % elem != 0) return CUDA_ERROR_INVALID_VALUE;
  state& g = get();
  std::unique_lock<std::mutex> lk(g.mu);
  CUstream s = nullptr;
  if (CUresult r = resolve_stream(hs, per_thread, &s); r != CUDA_SUCCESS) return r;
  if (count == 0) return CUDA_SUCCESS;
  resolved d;
  if (CUresult r = resolve_range(dst, count * elem, true, s->ctx->device, &d); r != CUDA_SUCCESS) return r;
  if (d.cls == mem_class::pageable) return CUDA_ERROR_INVALID_VALUE;  // not CUDA memory
  auto run = [to = d.ptr, value, elem, count] {
    if (elem == 1) { std::memset(to, static_cast<int>(value & 0xff), count); return; }
    for (size_t i = 0; i < count; ++i) std::memcpy(to + i * elem, &value, elem);  // little-endian low bytes
  };
  if (CUresult r = enqueue(s, std::move(run)); r != CUDA_SUCCESS) return r;
  // Synchronous memsets are asynchronous except when the target is pinned host memory.
  if (!async && d.cls == mem_class::pinned && !s->capture) wait_stream_locked(lk, s, s->enqueued);
  return sticky_or(CUDA_SUCCESS);
}

}  // namespace

// Unified-addressing copies; the typed variants check nothing more than the unified one does.
#define POOLSHIM_SIM_COPY_SYNC(fn, per_thread)                                                          \
  POOLSHIM_SIM_API CUresult fn(CUdeviceptr dst, CUdeviceptr src, size_t n) {                           \
    return do_copy(#fn, dst, src, n, nullptr, per_thread, false);                              \
  }
#define POOLSHIM_SIM_COPY_ASYNC(fn, per_thread)                                                         \
  POOLSHIM_SIM_API CUresult fn(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) {                \
    return do_copy(#fn, dst, src, n, s, per_thread, true);                                     \
  }
POOLSHIM_SIM_COPY_SYNC(cuMemcpy, false)
POOLSHIM_SIM_COPY_SYNC(cuMemcpy_ptds, true)
POOLSHIM_SIM_COPY_SYNC(cuMemcpyDtoD_v2, false)
POOLSHIM_SIM_COPY_SYNC(cuMemcpyDtoD_v2_ptds, true)
POOLSHIM_SIM_COPY_ASYNC(cuMemcpyAsync, false)
POOLSHIM_SIM_COPY_ASYNC(cuMemcpyAsync_ptsz, true)
POOLSHIM_SIM_COPY_ASYNC(cuMemcpyDtoDAsync_v2, false)
POOLSHIM_SIM_COPY_ASYNC(cuMemcpyDtoDAsync_v2_ptsz, true)

POOLSHIM_SIM_API CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
  return do_copy("cuMemcpyHtoD_v2", dst, reinterpret_cast<uintptr_t>(src), n, nullptr, false, false);
}
POOLSHIM_SIM_API CUresult cuMemcpyHtoD_v2_ptds(CUdeviceptr dst, const void* src, size_t n) {
  return do_copy("cuMemcpyHtoD_v2_ptds", dst, reinterpret_cast<uintptr_t>(src), n, nullptr, true, false);
}
POOLSHIM_SIM_API CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
  return do_copy("cuMemcpyDtoH_v2", reinterpret_cast<uintptr_t>(dst), src, n, nullptr, false, false);
}
POOLSHIM_SIM_API CUresult cuMemcpyDtoH_v2_ptds(void* dst, CUdeviceptr src, size_t n) {
  return do_copy("cuMemcpyDtoH_v2_ptds", reinterpret_cast<uintptr_t>(dst), src, n, nullptr, true, false);
}
POOLSHIM_SIM_API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream s) {
  return do_copy("cuMemcpyHtoDAsync_v2", dst, reinterpret_cast<uintptr_t>(src), n, s, false, true);
}
POOLSHIM_SIM_API CUresult cuMemcpyHtoDAsync_v2_ptsz(CUdeviceptr dst, const void* src, size_t n, CUstream s) {
  return do_copy("cuMemcpyHtoDAsync_v2_ptsz", dst, reinterpret_cast<uintptr_t>(src), n, s, true, true);
}
POOLSHIM_SIM_API CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream s) {
  return do_copy("cuMemcpyDtoHAsync_v2", reinterpret_cast<uintptr_t>(dst), src, n, s, false, true);
}
POOLSHIM_SIM_API CUresult cuMemcpyDtoHAsync_v2_ptsz(void* dst, CUdeviceptr src, size_t n, CUstream s) {
  return do_copy("cuMemcpyDtoHAsync_v2_ptsz", reinterpret_cast<uintptr_t>(dst), src, n, s, true, true);
}

// Peer copies: contexts are checked, then the copy is an ordinary device-to-device copy on the
// current context's stream (all simulated devices share the host's address space).
namespace {
CUresult check_peer_ctx(CUcontext a, CUcontext b) {
  std::lock_guard<std::mutex> lk(get().mu);
  return ctx_alive(a) && ctx_alive(b) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
}
}  // namespace
#define POOLSHIM_SIM_COPY_PEER(fn, per_thread)                                                           \
  POOLSHIM_SIM_API CUresult fn(CUdeviceptr dst, CUcontext dc, CUdeviceptr src, CUcontext sc, size_t n) { \
    if (CUresult r = check_peer_ctx(dc, sc); r != CUDA_SUCCESS) return r;                       \
    return do_copy(#fn, dst, src, n, nullptr, per_thread, false);                               \
  }
#define POOLSHIM_SIM_COPY_PEER_ASYNC(fn, per_thread)                                                      \
  POOLSHIM_SIM_API CUresult fn(CUdeviceptr dst, CUcontext dc, CUdeviceptr src, CUcontext sc, size_t n,    \
                      CUstream s) {                                                              \
    if (CUresult r = check_peer_ctx(dc, sc); r != CUDA_SUCCESS) return r;                        \
    return do_copy(#fn, dst, src, n, s, per_thread, true);                                       \
  }
POOLSHIM_SIM_COPY_PEER(cuMemcpyPeer, false)
POOLSHIM_SIM_COPY_PEER(cuMemcpyPeer_ptds, true)
POOLSHIM_SIM_COPY_PEER_ASYNC(cuMemcpyPeerAsync, false)
POOLSHIM_SIM_COPY_PEER_ASYNC(cuMemcpyPeerAsync_ptsz, true)

#define POOLSHIM_SIM_MEMSET(fn, type, elem, per_thread)                                   \
  POOLSHIM_SIM_API CUresult fn(CUdeviceptr dst, type v, size_t n) {                       \
    return do_memset(#fn, dst, v, elem, n, nullptr, per_thread, false);         \
  }
#define POOLSHIM_SIM_MEMSET_ASYNC(fn, type, elem, per_thread)                             \
  POOLSHIM_SIM_API CUresult fn(CUdeviceptr dst, type v, size_t n, CUstream s) {           \
    return do_memset(#fn, dst, v, elem, n, s, per_thread, true);                \
  }
POOLSHIM_SIM_MEMSET(cuMemsetD8_v2, unsigned char, 1, false)
POOLSHIM_SIM_MEMSET(cuMemsetD8_v2_ptds, unsigned char, 1, true)
POOLSHIM_SIM_MEMSET(cuMemsetD16_v2, unsigned short, 2, false)
POOLSHIM_SIM_MEMSET(cuMemsetD16_v2_ptds, unsigned short, 2, true)
POOLSHIM_SIM_MEMSET(cuMemsetD32_v2, unsigned int, 4, false)
POOLSHIM_SIM_MEMSET(cuMemsetD32_v2_ptds, unsigned int, 4, true)
POOLSHIM_SIM_MEMSET_ASYNC(cuMemsetD8Async, unsigned char, 1, false)
POOLSHIM_SIM_MEMSET_ASYNC(cuMemsetD8Async_ptsz, unsigned char, 1, true)
POOLSHIM_SIM_MEMSET_ASYNC(cuMemsetD16Async, unsigned short, 2, false)
POOLSHIM_SIM_MEMSET_ASYNC(cuMemsetD16Async_ptsz, unsigned short, 2, true)
POOLSHIM_SIM_MEMSET_ASYNC(cuMemsetD32Async, unsigned int, 4, false)
POOLSHIM_SIM_MEMSET_ASYNC(cuMemsetD32Async_ptsz, unsigned int, 4, true)

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

// Rows of a copy, relative to the first byte of each side's span: `rows` rows of `width` bytes,
// `dst_pitch`/`src_pitch` apart (a 1D copy is one row).
struct copy_shape {
  size_t width = 0, rows = 1, dst_pitch = 0, src_pitch = 0;
  size_t dst_span() const { return rows == 0 ? 0 : (rows - 1) * dst_pitch + width; }
  size_t src_span() const { return rows == 0 ? 0 : (rows - 1) * src_pitch + width; }
  void run(uint8_t* to, const uint8_t* from) const {
    if (rows == 1) {
      std::memmove(to, from, width);
      return;
    }
    for (size_t y = 0; y < rows; ++y) std::memmove(to + y * dst_pitch, from + y * src_pitch, width);
  }
};

// Called after api_enter.
CUresult submit_copy(uintptr_t dst, uintptr_t src, copy_shape shape, CUstream hs, bool per_thread, bool async) {
  state& g = get();
  std::unique_lock<std::mutex> lk(g.mu);
  CUstream s = nullptr;
  if (CUresult r = resolve_stream(hs, per_thread, &s); r != CUDA_SUCCESS) return r;
  if (shape.width == 0 || shape.rows == 0) return CUDA_SUCCESS;
  int dev = s->ctx->device;
  resolved d, sr;
  if (CUresult r = resolve_range(dst, shape.dst_span(), true, dev, &d); r != CUDA_SUCCESS) return r;
  if (CUresult r = resolve_range(src, shape.src_span(), false, dev, &sr); r != CUDA_SUCCESS) return r;

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
    auto staged = std::make_shared<std::vector<uint8_t>>(sr.ptr, sr.ptr + shape.src_span());
    run = [to = d.ptr, staged, shape] { shape.run(to, staged->data()); };
  } else {
    run = [to = d.ptr, from = sr.ptr, shape] { shape.run(to, from); };
  }
  if (CUresult r = enqueue(s, std::move(run)); r != CUDA_SUCCESS) return r;
  if (wait_after && !s->capture) wait_stream_locked(lk, s, s->enqueued);
  return sticky_or(CUDA_SUCCESS);
}

CUresult do_copy(const char* name, uintptr_t dst, uintptr_t src, size_t n, CUstream hs, bool per_thread, bool async) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  copy_shape shape;
  shape.width = n;
  return submit_copy(dst, src, shape, hs, per_thread, async);
}

// cuMemcpy2D: host, device and unified operands; arrays are not simulated.
CUresult do_copy_2d(const char* name, const CUDA_MEMCPY2D* p, CUstream hs, bool per_thread, bool async) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
  auto side = [](CUmemorytype type, const void* host, CUdeviceptr dev, size_t x, size_t y, size_t pitch,
                 uintptr_t* out) {
    uintptr_t base = 0;
    switch (type) {
      case CU_MEMORYTYPE_HOST:
        base = reinterpret_cast<uintptr_t>(host);
        break;
      case CU_MEMORYTYPE_DEVICE:
      case CU_MEMORYTYPE_UNIFIED:
        base = dev;
        break;
      default:
        return CUDA_ERROR_NOT_SUPPORTED;  // CUarray operands
    }
    *out = base + y * pitch + x;
    return CUDA_SUCCESS;
  };
  if (p->Height > 1 && (p->srcPitch < p->WidthInBytes || p->dstPitch < p->WidthInBytes))
    return CUDA_ERROR_INVALID_VALUE;
  uintptr_t src = 0, dst = 0;
  if (CUresult r = side(p->srcMemoryType, p->srcHost, p->srcDevice, p->srcXInBytes, p->srcY, p->srcPitch, &src);
      r != CUDA_SUCCESS)
    return r;
  if (CUresult r = side(p->dstMemoryType, p->dstHost, p->dstDevice, p->dstXInBytes, p->dstY, p->dstPitch, &dst);
      r != CUDA_SUCCESS)
    return r;
  copy_shape shape;
  shape.width = p->WidthInBytes;
  shape.rows = p->Height;
  shape.dst_pitch = p->dstPitch;
  shape.src_pitch = p->srcPitch;
  return submit_copy(dst, src, shape, hs, per_thread, async);
}

// The v2000 CUDA_MEMCPY2D: 32-bit offsets, pitches, sizes and device pointers (zero-extended).
CUresult do_copy_2d_v1(const char* name, const CUDA_MEMCPY2D_v1* p, CUstream hs, bool async) {
  if (p == nullptr) return do_copy_2d(name, nullptr, hs, false, async);
  CUDA_MEMCPY2D w{};
  w.srcXInBytes = p->srcXInBytes;
  w.srcY = p->srcY;
  w.srcMemoryType = p->srcMemoryType;
  w.srcHost = p->srcHost;
  w.srcDevice = p->srcDevice;
  w.srcArray = p->srcArray;
  w.srcPitch = p->srcPitch;
  w.dstXInBytes = p->dstXInBytes;
  w.dstY = p->dstY;
  w.dstMemoryType = p->dstMemoryType;
  w.dstHost = p->dstHost;
  w.dstDevice = p->dstDevice;
  w.dstArray = p->dstArray;
  w.dstPitch = p->dstPitch;
  w.WidthInBytes = p->WidthInBytes;
  w.Height = p->Height;
  return do_copy_2d(name, &w, hs, false, async);
}

// A memset of `rows` rows of `count` elements, `pitch` bytes apart (a 1D memset is one row).
CUresult do_memset(const char* name, uintptr_t dst, uint32_t value, unsigned elem, size_t count, CUstream hs,
                   bool per_thread, bool async, size_t rows = 1, size_t pitch = 0) {
  if (CUresult r = api_enter(name); r != CUDA_SUCCESS) return r;
  if (dst % elem != 0) return CUDA_ERROR_INVALID_VALUE;
  state& g = get();
  std::unique_lock<std::mutex> lk(g.mu);
  CUstream s = nullptr;
  if (CUresult r = resolve_stream(hs, per_thread, &s); r != CUDA_SUCCESS) return r;
  if (count == 0 || rows == 0) return CUDA_SUCCESS;
  if (rows > 1 && pitch < count * elem) return CUDA_ERROR_INVALID_VALUE;
  size_t span = (rows - 1) * pitch + count * elem;
  resolved d;
  if (CUresult r = resolve_range(dst, span, true, s->ctx->device, &d); r != CUDA_SUCCESS) return r;
  if (d.cls == mem_class::pageable) return CUDA_ERROR_INVALID_VALUE;  // not CUDA memory
  auto run = [to = d.ptr, value, elem, count, rows, pitch] {
    for (size_t y = 0; y < rows; ++y) {
      uint8_t* row = to + y * pitch;
      if (elem == 1) {
        std::memset(row, static_cast<int>(value & 0xff), count);
        continue;
      }
      for (size_t i = 0; i < count; ++i) std::memcpy(row + i * elem, &value, elem);  // little-endian low bytes
    }
  };
  if (CUresult r = enqueue(s, std::move(run)); r != CUDA_SUCCESS) return r;
  // Synchronous memsets are asynchronous except when the target is pinned host memory.
  if (!async && d.cls == mem_class::pinned && !s->capture) wait_stream_locked(lk, s, s->enqueued);
  return sticky_or(CUDA_SUCCESS);
}

}  // namespace

// Unified-addressing copies; the typed variants check nothing more than the unified one does.
#define POOLSHIM_SIM_COPY_SYNC(fn, per_thread)                               \
  POOLSHIM_SIM_API CUresult fn(CUdeviceptr dst, CUdeviceptr src, size_t n) { \
    return do_copy(#fn, dst, src, n, nullptr, per_thread, false);            \
  }
#define POOLSHIM_SIM_COPY_ASYNC(fn, per_thread)                                          \
  POOLSHIM_SIM_API CUresult fn(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) { \
    return do_copy(#fn, dst, src, n, s, per_thread, true);                               \
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

// The v2000 (and cuMemcpyDtoDAsync v3000) ABIs: 32-bit device pointers (zero-extended) and byte
// counts; the legacy stream only (no per-thread variants existed). Otherwise as _v2 (UNV).
POOLSHIM_SIM_API CUresult cuMemcpyHtoD(CUdeviceptr_v1 dst, const void* src, unsigned int n) {
  return do_copy("cuMemcpyHtoD", dst, reinterpret_cast<uintptr_t>(src), n, nullptr, false, false);
}
POOLSHIM_SIM_API CUresult cuMemcpyDtoH(void* dst, CUdeviceptr_v1 src, unsigned int n) {
  return do_copy("cuMemcpyDtoH", reinterpret_cast<uintptr_t>(dst), src, n, nullptr, false, false);
}
POOLSHIM_SIM_API CUresult cuMemcpyDtoD(CUdeviceptr_v1 dst, CUdeviceptr_v1 src, unsigned int n) {
  return do_copy("cuMemcpyDtoD", dst, src, n, nullptr, false, false);
}
POOLSHIM_SIM_API CUresult cuMemcpyHtoDAsync(CUdeviceptr_v1 dst, const void* src, unsigned int n, CUstream s) {
  return do_copy("cuMemcpyHtoDAsync", dst, reinterpret_cast<uintptr_t>(src), n, s, false, true);
}
POOLSHIM_SIM_API CUresult cuMemcpyDtoHAsync(void* dst, CUdeviceptr_v1 src, unsigned int n, CUstream s) {
  return do_copy("cuMemcpyDtoHAsync", reinterpret_cast<uintptr_t>(dst), src, n, s, false, true);
}
POOLSHIM_SIM_API CUresult cuMemcpyDtoDAsync(CUdeviceptr_v1 dst, CUdeviceptr_v1 src, unsigned int n, CUstream s) {
  return do_copy("cuMemcpyDtoDAsync", dst, src, n, s, false, true);
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
    if (CUresult r = api_enter(#fn); r != CUDA_SUCCESS) return r;                                        \
    if (CUresult r = check_peer_ctx(dc, sc); r != CUDA_SUCCESS) return r;                                \
    return submit_copy(dst, src, copy_shape{n}, nullptr, per_thread, false);                             \
  }
#define POOLSHIM_SIM_COPY_PEER_ASYNC(fn, per_thread)                                                                 \
  POOLSHIM_SIM_API CUresult fn(CUdeviceptr dst, CUcontext dc, CUdeviceptr src, CUcontext sc, size_t n, CUstream s) { \
    if (CUresult r = api_enter(#fn); r != CUDA_SUCCESS) return r;                                                    \
    if (CUresult r = check_peer_ctx(dc, sc); r != CUDA_SUCCESS) return r;                                            \
    return submit_copy(dst, src, copy_shape{n}, s, per_thread, true);                                                \
  }
POOLSHIM_SIM_COPY_PEER(cuMemcpyPeer, false)
POOLSHIM_SIM_COPY_PEER(cuMemcpyPeer_ptds, true)
POOLSHIM_SIM_COPY_PEER_ASYNC(cuMemcpyPeerAsync, false)
POOLSHIM_SIM_COPY_PEER_ASYNC(cuMemcpyPeerAsync_ptsz, true)

#define POOLSHIM_SIM_MEMSET(fn, type, elem, per_thread)                 \
  POOLSHIM_SIM_API CUresult fn(CUdeviceptr dst, type v, size_t n) {     \
    return do_memset(#fn, dst, v, elem, n, nullptr, per_thread, false); \
  }
#define POOLSHIM_SIM_MEMSET_ASYNC(fn, type, elem, per_thread)                   \
  POOLSHIM_SIM_API CUresult fn(CUdeviceptr dst, type v, size_t n, CUstream s) { \
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

// v2000 memsets: 32-bit device pointer (zero-extended) and counts; legacy stream only (UNV).
POOLSHIM_SIM_API CUresult cuMemsetD8(CUdeviceptr_v1 dst, unsigned char v, unsigned int n) {
  return do_memset("cuMemsetD8", dst, v, 1, n, nullptr, false, false);
}
POOLSHIM_SIM_API CUresult cuMemsetD16(CUdeviceptr_v1 dst, unsigned short v, unsigned int n) {
  return do_memset("cuMemsetD16", dst, v, 2, n, nullptr, false, false);
}
POOLSHIM_SIM_API CUresult cuMemsetD32(CUdeviceptr_v1 dst, unsigned int v, unsigned int n) {
  return do_memset("cuMemsetD32", dst, v, 4, n, nullptr, false, false);
}

#define POOLSHIM_SIM_COPY_2D(fn, per_thread) \
  POOLSHIM_SIM_API CUresult fn(const CUDA_MEMCPY2D* p) { return do_copy_2d(#fn, p, nullptr, per_thread, false); }
#define POOLSHIM_SIM_COPY_2D_ASYNC(fn, per_thread) \
  POOLSHIM_SIM_API CUresult fn(const CUDA_MEMCPY2D* p, CUstream s) { return do_copy_2d(#fn, p, s, per_thread, true); }
POOLSHIM_SIM_COPY_2D(cuMemcpy2D_v2, false)
POOLSHIM_SIM_COPY_2D(cuMemcpy2D_v2_ptds, true)
POOLSHIM_SIM_COPY_2D(cuMemcpy2DUnaligned_v2, false)
POOLSHIM_SIM_COPY_2D(cuMemcpy2DUnaligned_v2_ptds, true)
POOLSHIM_SIM_COPY_2D_ASYNC(cuMemcpy2DAsync_v2, false)
POOLSHIM_SIM_COPY_2D_ASYNC(cuMemcpy2DAsync_v2_ptsz, true)
POOLSHIM_SIM_API CUresult cuMemcpy2D(const CUDA_MEMCPY2D_v1* p) {
  return do_copy_2d_v1("cuMemcpy2D", p, nullptr, false);
}
POOLSHIM_SIM_API CUresult cuMemcpy2DUnaligned(const CUDA_MEMCPY2D_v1* p) {
  return do_copy_2d_v1("cuMemcpy2DUnaligned", p, nullptr, false);
}
POOLSHIM_SIM_API CUresult cuMemcpy2DAsync(const CUDA_MEMCPY2D_v1* p, CUstream s) {
  return do_copy_2d_v1("cuMemcpy2DAsync", p, s, true);
}

#define POOLSHIM_SIM_MEMSET_2D(fn, type, elem, per_thread)                                  \
  POOLSHIM_SIM_API CUresult fn(CUdeviceptr dst, size_t pitch, type v, size_t w, size_t h) { \
    return do_memset(#fn, dst, v, elem, w, nullptr, per_thread, false, h, pitch);           \
  }
#define POOLSHIM_SIM_MEMSET_2D_ASYNC(fn, type, elem, per_thread)                                        \
  POOLSHIM_SIM_API CUresult fn(CUdeviceptr dst, size_t pitch, type v, size_t w, size_t h, CUstream s) { \
    return do_memset(#fn, dst, v, elem, w, s, per_thread, true, h, pitch);                              \
  }
POOLSHIM_SIM_MEMSET_2D(cuMemsetD2D8_v2, unsigned char, 1, false)
POOLSHIM_SIM_MEMSET_2D(cuMemsetD2D8_v2_ptds, unsigned char, 1, true)
POOLSHIM_SIM_MEMSET_2D(cuMemsetD2D32_v2, unsigned int, 4, false)
POOLSHIM_SIM_MEMSET_2D(cuMemsetD2D32_v2_ptds, unsigned int, 4, true)
POOLSHIM_SIM_API CUresult cuMemsetD2D8(CUdeviceptr_v1 dst, unsigned int pitch, unsigned char v, unsigned int w,
                                       unsigned int h) {  // v2000, as cuMemsetD8
  return do_memset("cuMemsetD2D8", dst, v, 1, w, nullptr, false, false, h, pitch);
}
POOLSHIM_SIM_API CUresult cuMemsetD2D32(CUdeviceptr_v1 dst, unsigned int pitch, unsigned int v, unsigned int w,
                                        unsigned int h) {  // v2000
  return do_memset("cuMemsetD2D32", dst, v, 4, w, nullptr, false, false, h, pitch);
}
POOLSHIM_SIM_MEMSET_2D_ASYNC(cuMemsetD2D8Async, unsigned char, 1, false)
POOLSHIM_SIM_MEMSET_2D_ASYNC(cuMemsetD2D8Async_ptsz, unsigned char, 1, true)
POOLSHIM_SIM_MEMSET_2D_ASYNC(cuMemsetD2D32Async, unsigned int, 4, false)
POOLSHIM_SIM_MEMSET_2D_ASYNC(cuMemsetD2D32Async_ptsz, unsigned int, 4, true)

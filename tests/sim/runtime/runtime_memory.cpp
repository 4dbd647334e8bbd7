// Memory calls of the simulator's libcudart: device, managed, pinned and stream-ordered
// allocation, copies and memsets (with their _ptds/_ptsz twins), pointer attributes and legacy
// IPC. Each is a translation onto one driver call; the driver decides validity, except where
// cudart itself answers first (size-0 cudaMalloc, cudaFree(NULL), bad copy kinds, NULL outputs).
#include <cstring>

#include "runtime_internal.h"

namespace poolshim::sim_rt {
namespace {

bool valid_copy_kind(cudaMemcpyKind kind) noexcept {
  switch (kind) {
    case cudaMemcpyHostToHost:
    case cudaMemcpyHostToDevice:
    case cudaMemcpyDeviceToHost:
    case cudaMemcpyDeviceToDevice:
    case cudaMemcpyDefault:
      return true;
    default:
      return false;
  }
}

// Copies go to the driver function of their kind, as cudart 13.0 calls them (cuMemcpyHtoD_v2,
// cuMemcpyDtoH_v2, cuMemcpyDtoHAsync_v2, ... per the recording); cudaMemcpyDefault and
// host-to-host go to cuMemcpy / cuMemcpyAsync, where under unified addressing the driver infers
// the direction from the pointers. A zero-byte copy is a successful no-op in the runtime,
// whatever the pointers are.
template <default_stream S>
cudaError_t memcpy_sync(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  return api(needs::context, [&]() -> cudaError_t {
    if (!valid_copy_kind(kind)) return cudaErrorInvalidMemcpyDirection;
    if (count == 0) return cudaSuccess;
    const driver_table& d = driver(S);
    switch (kind) {
      case cudaMemcpyHostToDevice:
        return from_driver(d.cuMemcpyHtoD(to_dptr(dst), src, count));
      case cudaMemcpyDeviceToHost:
        return from_driver(d.cuMemcpyDtoH(dst, to_dptr(src), count));
      case cudaMemcpyDeviceToDevice:
        return from_driver(d.cuMemcpyDtoD(to_dptr(dst), to_dptr(src), count));
      default:
        return from_driver(d.cuMemcpy(to_dptr(dst), to_dptr(src), count));
    }
  });
}

template <default_stream S>
cudaError_t memcpy_async(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t stream) {
  return api(needs::context, [&]() -> cudaError_t {
    if (!valid_copy_kind(kind)) return cudaErrorInvalidMemcpyDirection;
    if (count == 0) return cudaSuccess;
    const driver_table& d = driver(S);
    switch (kind) {
      case cudaMemcpyHostToDevice:
        return from_driver(d.cuMemcpyHtoDAsync(to_dptr(dst), src, count, stream));
      case cudaMemcpyDeviceToHost:
        return from_driver(d.cuMemcpyDtoHAsync(dst, to_dptr(src), count, stream));
      case cudaMemcpyDeviceToDevice:
        return from_driver(d.cuMemcpyDtoDAsync(to_dptr(dst), to_dptr(src), count, stream));
      default:
        return from_driver(d.cuMemcpyAsync(to_dptr(dst), to_dptr(src), count, stream));
    }
  });
}

template <default_stream S>
cudaError_t memset_sync(void* devPtr, int value, size_t count) {
  return api(needs::context, [&]() -> cudaError_t {
    if (count == 0) return cudaSuccess;
    return from_driver(driver(S).cuMemsetD8(to_dptr(devPtr), static_cast<unsigned char>(value), count));
  });
}

template <default_stream S>
cudaError_t memset_async(void* devPtr, int value, size_t count, cudaStream_t stream) {
  return api(needs::context, [&]() -> cudaError_t {
    if (count == 0) return cudaSuccess;
    return from_driver(driver(S).cuMemsetD8Async(to_dptr(devPtr), static_cast<unsigned char>(value), count, stream));
  });
}

// 2D copies go to cuMemcpy2DUnaligned (cudart 13.0 never looks up cuMemcpy2D) and
// cuMemcpy2DAsync with unified operands: under unified addressing the driver tells host from
// device memory itself, as cudart does for cudaMemcpyDefault.
CUDA_MEMCPY2D copy_2d_params(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height) {
  CUDA_MEMCPY2D p{};
  p.srcMemoryType = CU_MEMORYTYPE_UNIFIED;
  p.srcDevice = to_dptr(src);
  p.srcPitch = spitch;
  p.dstMemoryType = CU_MEMORYTYPE_UNIFIED;
  p.dstDevice = to_dptr(dst);
  p.dstPitch = dpitch;
  p.WidthInBytes = width;
  p.Height = height;
  return p;
}

template <default_stream S>
cudaError_t memcpy_2d_sync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                           cudaMemcpyKind kind) {
  return api(needs::context, [&]() -> cudaError_t {
    if (!valid_copy_kind(kind)) return cudaErrorInvalidMemcpyDirection;
    if (width == 0 || height == 0) return cudaSuccess;
    if (dpitch < width || spitch < width) return cudaErrorInvalidPitchValue;
    CUDA_MEMCPY2D p = copy_2d_params(dst, dpitch, src, spitch, width, height);
    return from_driver(driver(S).cuMemcpy2DUnaligned(&p));
  });
}

template <default_stream S>
cudaError_t memcpy_2d_async(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                            cudaMemcpyKind kind, cudaStream_t stream) {
  return api(needs::context, [&]() -> cudaError_t {
    if (!valid_copy_kind(kind)) return cudaErrorInvalidMemcpyDirection;
    if (width == 0 || height == 0) return cudaSuccess;
    if (dpitch < width || spitch < width) return cudaErrorInvalidPitchValue;
    CUDA_MEMCPY2D p = copy_2d_params(dst, dpitch, src, spitch, width, height);
    return from_driver(driver(S).cuMemcpy2DAsync(&p, stream));
  });
}

template <default_stream S>
cudaError_t memset_2d_sync(void* devPtr, size_t pitch, int value, size_t width, size_t height) {
  return api(needs::context, [&]() -> cudaError_t {
    if (width == 0 || height == 0) return cudaSuccess;
    return from_driver(
        driver(S).cuMemsetD2D8(to_dptr(devPtr), pitch, static_cast<unsigned char>(value), width, height));
  });
}

template <default_stream S>
cudaError_t memset_2d_async(void* devPtr, size_t pitch, int value, size_t width, size_t height, cudaStream_t stream) {
  return api(needs::context, [&]() -> cudaError_t {
    if (width == 0 || height == 0) return cudaSuccess;
    return from_driver(
        driver(S).cuMemsetD2D8Async(to_dptr(devPtr), pitch, static_cast<unsigned char>(value), width, height, stream));
  });
}

template <default_stream S>
cudaError_t malloc_async(void** devPtr, size_t size, cudaStream_t stream) {
  return api(needs::context, [&]() -> cudaError_t {
    if (devPtr == nullptr) return cudaErrorInvalidValue;
    CUdeviceptr p = 0;
    CUresult r = driver(S).cuMemAllocAsync(&p, size, stream);
    if (r == CUDA_SUCCESS) *devPtr = from_dptr(p);
    return from_driver(r);
  });
}

template <default_stream S>
cudaError_t free_async(void* devPtr, cudaStream_t stream) {
  return api(needs::context,
             [&]() -> cudaError_t { return from_driver(driver(S).cuMemFreeAsync(to_dptr(devPtr), stream)); });
}

// Peer copies name devices; the driver wants their contexts, so both primary contexts are
// initialised as the real runtime does.
cudaError_t memcpy_peer(void* dst, int dstDevice, const void* src, int srcDevice, size_t count, bool async,
                        cudaStream_t stream) {
  return api(needs::context, [&]() -> cudaError_t {
    CUcontext dst_ctx = nullptr;
    CUcontext src_ctx = nullptr;
    CUresult r = primary_context(dstDevice, &dst_ctx);
    if (r == CUDA_SUCCESS) r = primary_context(srcDevice, &src_ctx);
    if (r != CUDA_SUCCESS) return from_driver(r);
    if (count == 0) return cudaSuccess;
    const driver_table& d = driver();
    r = async ? d.cuMemcpyPeerAsync(to_dptr(dst), dst_ctx, to_dptr(src), src_ctx, count, stream)
              : d.cuMemcpyPeer(to_dptr(dst), dst_ctx, to_dptr(src), src_ctx, count);
    return from_driver(r);
  });
}

}  // namespace
}  // namespace poolshim::sim_rt

using namespace poolshim::sim_rt;

// cuMemAlloc refuses 0 bytes; cudaMalloc succeeds and hands back NULL without asking the driver.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaMalloc(void** devPtr, size_t size) {
  return api(needs::context, [&]() -> cudaError_t {
    if (devPtr == nullptr) return cudaErrorInvalidValue;
    if (size == 0) {
      *devPtr = nullptr;
      return cudaSuccess;
    }
    CUdeviceptr p = 0;
    CUresult r = driver().cuMemAlloc(&p, size);
    if (r == CUDA_SUCCESS) *devPtr = from_dptr(p);
    return from_driver(r);
  });
}

// cudaFree(NULL) still initialises the context (programs call cudaFree(0) for exactly that), but
// frees nothing. Any other pointer goes to cuMemFree_v2 unchecked: the driver decides.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaFree(void* devPtr) {
  return api(needs::context, [&]() -> cudaError_t {
    if (devPtr == nullptr) return cudaSuccess;
    return from_driver(driver().cuMemFree(to_dptr(devPtr)));
  });
}

// ElementSizeBytes 16, the widest the driver accepts, so the pitch suits any element type.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaMallocPitch(void** devPtr, size_t* pitch, size_t width, size_t height) {
  return api(needs::context, [&]() -> cudaError_t {
    if (devPtr == nullptr || pitch == nullptr) return cudaErrorInvalidValue;
    CUdeviceptr p = 0;
    CUresult r = driver().cuMemAllocPitch(&p, pitch, width, height, 16);
    if (r == CUDA_SUCCESS) *devPtr = from_dptr(p);
    return from_driver(r);
  });
}

// cudaMemAttachGlobal/Host are CU_MEM_ATTACH_GLOBAL/HOST.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaMallocManaged(void** devPtr, size_t size, unsigned int flags) {
  return api(needs::context, [&]() -> cudaError_t {
    if (devPtr == nullptr) return cudaErrorInvalidValue;
    CUdeviceptr p = 0;
    CUresult r = driver().cuMemAllocManaged(&p, size, flags);
    if (r == CUDA_SUCCESS) *devPtr = from_dptr(p);
    return from_driver(r);
  });
}

// cudaMallocHost is cudaHostAlloc with cudaHostAllocDefault: both call cuMemHostAlloc, never
// cuMemAllocHost, as cudart 13.0 does. The cudaHostAlloc* flags are the CU_MEMHOSTALLOC_* bits
// one for one.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaHostAlloc(void** pHost, size_t size, unsigned int flags) {
  return api(needs::context, [&]() -> cudaError_t {
    if (pHost == nullptr) return cudaErrorInvalidValue;
    return from_driver(driver().cuMemHostAlloc(pHost, size, flags));
  });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaMallocHost(void** ptr, size_t size) {
  return api(needs::context, [&]() -> cudaError_t {
    if (ptr == nullptr) return cudaErrorInvalidValue;
    return from_driver(driver().cuMemHostAlloc(ptr, size, cudaHostAllocDefault));
  });
}

// Like free(NULL) and cudaFree(NULL), a NULL pointer is a successful no-op.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaFreeHost(void* ptr) {
  return api(needs::context, [&]() -> cudaError_t {
    if (ptr == nullptr) return cudaSuccess;
    return from_driver(driver().cuMemFreeHost(ptr));
  });
}

// The cudaHostRegister* flags are the CU_MEMHOSTREGISTER_* bits one for one.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaHostRegister(void* ptr, size_t size, unsigned int flags) {
  return api(needs::context,
             [&]() -> cudaError_t { return from_driver(driver().cuMemHostRegister(ptr, size, flags)); });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaHostUnregister(void* ptr) {
  return api(needs::context, [&]() -> cudaError_t { return from_driver(driver().cuMemHostUnregister(ptr)); });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaHostGetDevicePointer(void** pDevice, void* pHost, unsigned int flags) {
  return api(needs::context, [&]() -> cudaError_t {
    if (pDevice == nullptr) return cudaErrorInvalidValue;
    CUdeviceptr p = 0;
    CUresult r = driver().cuMemHostGetDevicePointer(&p, pHost, flags);
    if (r == CUDA_SUCCESS) *pDevice = from_dptr(p);
    return from_driver(r);
  });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaHostGetFlags(unsigned int* pFlags, void* pHost) {
  return api(needs::context, [&]() -> cudaError_t { return from_driver(driver().cuMemHostGetFlags(pFlags, pHost)); });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaMemGetInfo(size_t* free, size_t* total) {
  return api(needs::context, [&]() -> cudaError_t { return from_driver(driver().cuMemGetInfo(free, total)); });
}

POOLSHIM_RT_STREAM_PAIR(cudaMallocAsync, _ptsz, malloc_async, (void** devPtr, size_t size, cudaStream_t hStream),
                        (devPtr, size, hStream))
POOLSHIM_RT_STREAM_PAIR(cudaFreeAsync, _ptsz, free_async, (void* devPtr, cudaStream_t hStream), (devPtr, hStream))

POOLSHIM_RT_STREAM_PAIR(cudaMemcpy, _ptds, memcpy_sync, (void* dst, const void* src, size_t count, cudaMemcpyKind kind),
                        (dst, src, count, kind))
POOLSHIM_RT_STREAM_PAIR(cudaMemcpyAsync, _ptsz, memcpy_async,
                        (void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t stream),
                        (dst, src, count, kind, stream))
POOLSHIM_RT_STREAM_PAIR(cudaMemset, _ptds, memset_sync, (void* devPtr, int value, size_t count), (devPtr, value, count))
POOLSHIM_RT_STREAM_PAIR(cudaMemsetAsync, _ptsz, memset_async,
                        (void* devPtr, int value, size_t count, cudaStream_t stream), (devPtr, value, count, stream))

POOLSHIM_RT_STREAM_PAIR(cudaMemcpy2D, _ptds, memcpy_2d_sync,
                        (void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                         cudaMemcpyKind kind),
                        (dst, dpitch, src, spitch, width, height, kind))
POOLSHIM_RT_STREAM_PAIR(cudaMemcpy2DAsync, _ptsz, memcpy_2d_async,
                        (void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                         cudaMemcpyKind kind, cudaStream_t stream),
                        (dst, dpitch, src, spitch, width, height, kind, stream))
POOLSHIM_RT_STREAM_PAIR(cudaMemset2D, _ptds, memset_2d_sync,
                        (void* devPtr, size_t pitch, int value, size_t width, size_t height),
                        (devPtr, pitch, value, width, height))
POOLSHIM_RT_STREAM_PAIR(cudaMemset2DAsync, _ptsz, memset_2d_async,
                        (void* devPtr, size_t pitch, int value, size_t width, size_t height, cudaStream_t stream),
                        (devPtr, pitch, value, width, height, stream))

// libcudart.so.13 has no per-thread variants of the peer copies.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaMemcpyPeer(void* dst, int dstDevice, const void* src, int srcDevice,
                                                     size_t count) {
  return memcpy_peer(dst, dstDevice, src, srcDevice, count, false, nullptr);
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaMemcpyPeerAsync(void* dst, int dstDevice, const void* src, int srcDevice,
                                                          size_t count, cudaStream_t stream) {
  return memcpy_peer(dst, dstDevice, src, srcDevice, count, true, stream);
}

// One cuPointerGetAttributes call, which (unlike the singular cuPointerGetAttribute) succeeds
// with zeroed values for memory CUDA does not know. Since CUDA 11 the runtime reports such memory
// as cudaMemoryTypeUnregistered with success. Its `device` is not documented for that case; this
// runtime gives -2, the value reported from real CUDA 11+ runs (unverified here).
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaPointerGetAttributes(cudaPointerAttributes* attributes, const void* ptr) {
  return api(needs::context, [&]() -> cudaError_t {
    if (attributes == nullptr) return cudaErrorInvalidValue;
    unsigned int memory_type = 0;
    int ordinal = -2;
    CUdeviceptr device_pointer = 0;
    void* host_pointer = nullptr;
    unsigned int is_managed = 0;  // the driver writes a boolean; a zeroed int reads right either way
    CUpointer_attribute which[] = {CU_POINTER_ATTRIBUTE_MEMORY_TYPE, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                                   CU_POINTER_ATTRIBUTE_DEVICE_POINTER, CU_POINTER_ATTRIBUTE_HOST_POINTER,
                                   CU_POINTER_ATTRIBUTE_IS_MANAGED};
    void* out[] = {&memory_type, &ordinal, &device_pointer, &host_pointer, &is_managed};
    CUresult r = driver().cuPointerGetAttributes(5, which, out, to_dptr(ptr));
    if (r != CUDA_SUCCESS) return from_driver(r);

    cudaPointerAttributes a{};
    a.devicePointer = from_dptr(device_pointer);
    a.hostPointer = host_pointer;
    a.device = ordinal;
    if (is_managed != 0 || memory_type == CU_MEMORYTYPE_UNIFIED) {
      a.type = cudaMemoryTypeManaged;
    } else if (memory_type == CU_MEMORYTYPE_DEVICE) {
      a.type = cudaMemoryTypeDevice;
    } else if (memory_type == CU_MEMORYTYPE_HOST) {
      a.type = cudaMemoryTypeHost;
    } else {
      a.type = cudaMemoryTypeUnregistered;
      a.device = -2;
    }
    *attributes = a;
    return cudaSuccess;
  });
}

static_assert(sizeof(cudaIpcMemHandle_t) == sizeof(CUipcMemHandle), "IPC handles are 64 bytes in both APIs");

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaIpcGetMemHandle(cudaIpcMemHandle_t* handle, void* devPtr) {
  return api(needs::context, [&]() -> cudaError_t {
    if (handle == nullptr) return cudaErrorInvalidValue;
    CUipcMemHandle h{};
    CUresult r = driver().cuIpcGetMemHandle(&h, to_dptr(devPtr));
    if (r == CUDA_SUCCESS) std::memcpy(handle, &h, sizeof h);
    return from_driver(r);
  });
}

// cudaIpcMemLazyEnablePeerAccess is CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaIpcOpenMemHandle(void** devPtr, cudaIpcMemHandle_t handle,
                                                           unsigned int flags) {
  return api(needs::context, [&]() -> cudaError_t {
    if (devPtr == nullptr) return cudaErrorInvalidValue;
    CUipcMemHandle h{};
    std::memcpy(&h, &handle, sizeof h);
    CUdeviceptr p = 0;
    CUresult r = driver().cuIpcOpenMemHandle(&p, h, flags);
    if (r == CUDA_SUCCESS) *devPtr = from_dptr(p);
    return from_driver(r);
  });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaIpcCloseMemHandle(void* devPtr) {
  return api(needs::context,
             [&]() -> cudaError_t { return from_driver(driver().cuIpcCloseMemHandle(to_dptr(devPtr))); });
}

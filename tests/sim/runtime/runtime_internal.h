// Private to the simulator's libcudart.so.13: the driver table reached through cuGetProcAddress_v2,
// the api() wrapper every export runs its body in (sticky error, lazy driver load, context, last
// error), and the declarations the toolkit headers make only for nvcc or for per-thread builds.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <new>

// Every runtime export carries this; everything else stays hidden (-fvisibility=hidden), and the
// version script puts the exports under the node `libcudart.so.13`.
#define POOLSHIM_RT_API extern "C" __attribute__((visibility("default")))

// The per-thread-default-stream exports and the nvcc start-up entry points. cuda_runtime_api.h
// declares the former only with CUDA_API_PER_THREAD_DEFAULT_STREAM (and then under the plain
// names' macros), crt/host_runtime.h and crt/device_functions.h the latter only inside nvcc.
// Signatures follow those headers exactly.
extern "C" {
cudaError_t CUDARTAPI cudaMemcpy_ptds(void* dst, const void* src, size_t count, enum cudaMemcpyKind kind);
cudaError_t CUDARTAPI cudaMemset_ptds(void* devPtr, int value, size_t count);
cudaError_t CUDARTAPI cudaMemcpy2D_ptds(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                                        size_t height, enum cudaMemcpyKind kind);
cudaError_t CUDARTAPI cudaMemcpy2DAsync_ptsz(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                                             size_t height, enum cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t CUDARTAPI cudaMemset2D_ptds(void* devPtr, size_t pitch, int value, size_t width, size_t height);
cudaError_t CUDARTAPI cudaMemset2DAsync_ptsz(void* devPtr, size_t pitch, int value, size_t width, size_t height,
                                             cudaStream_t stream);
cudaError_t CUDARTAPI cudaMemcpyAsync_ptsz(void* dst, const void* src, size_t count, enum cudaMemcpyKind kind,
                                           cudaStream_t stream);
cudaError_t CUDARTAPI cudaMemsetAsync_ptsz(void* devPtr, int value, size_t count, cudaStream_t stream);
cudaError_t CUDARTAPI cudaMallocAsync_ptsz(void** devPtr, size_t size, cudaStream_t hStream);
cudaError_t CUDARTAPI cudaFreeAsync_ptsz(void* devPtr, cudaStream_t hStream);
cudaError_t CUDARTAPI cudaStreamSynchronize_ptsz(cudaStream_t stream);
cudaError_t CUDARTAPI cudaStreamQuery_ptsz(cudaStream_t stream);
cudaError_t CUDARTAPI cudaStreamWaitEvent_ptsz(cudaStream_t stream, cudaEvent_t event, unsigned int flags);
cudaError_t CUDARTAPI cudaStreamGetFlags_ptsz(cudaStream_t hStream, unsigned int* flags);
cudaError_t CUDARTAPI cudaStreamGetId_ptsz(cudaStream_t hStream, unsigned long long* streamId);
cudaError_t CUDARTAPI cudaStreamGetPriority_ptsz(cudaStream_t hStream, int* priority);
cudaError_t CUDARTAPI cudaStreamBeginCapture_ptsz(cudaStream_t stream, enum cudaStreamCaptureMode mode);
cudaError_t CUDARTAPI cudaStreamEndCapture_ptsz(cudaStream_t stream, cudaGraph_t* pGraph);
cudaError_t CUDARTAPI cudaStreamIsCapturing_ptsz(cudaStream_t stream, enum cudaStreamCaptureStatus* pCaptureStatus);
cudaError_t CUDARTAPI cudaLaunchHostFunc_ptsz(cudaStream_t stream, cudaHostFn_t fn, void* userData);
cudaError_t CUDARTAPI cudaStreamAddCallback_ptsz(cudaStream_t stream, cudaStreamCallback_t callback, void* userData,
                                                 unsigned int flags);
cudaError_t CUDARTAPI cudaEventRecord_ptsz(cudaEvent_t event, cudaStream_t stream);
cudaError_t CUDARTAPI cudaEventRecordWithFlags_ptsz(cudaEvent_t event, cudaStream_t stream, unsigned int flags);
cudaError_t CUDARTAPI cudaGraphLaunch_ptsz(cudaGraphExec_t graphExec, cudaStream_t stream);
cudaError_t CUDARTAPI cudaLaunchKernel_ptsz(const void* func, dim3 gridDim, dim3 blockDim, void** args,
                                            size_t sharedMem, cudaStream_t stream);
cudaError_t CUDARTAPI cudaGetDriverEntryPoint_ptsz(const char* symbol, void** funcPtr, unsigned long long flags,
                                                   enum cudaDriverEntryPointQueryResult* driverStatus);
cudaError_t CUDARTAPI cudaGetDriverEntryPointByVersion_ptsz(const char* symbol, void** funcPtr,
                                                            unsigned int cudaVersion, unsigned long long flags,
                                                            enum cudaDriverEntryPointQueryResult* driverStatus);

void** CUDARTAPI __cudaRegisterFatBinary(void* fatCubin);
void CUDARTAPI __cudaRegisterFatBinaryEnd(void** fatCubinHandle);
void CUDARTAPI __cudaUnregisterFatBinary(void** fatCubinHandle);
char CUDARTAPI __cudaInitModule(void** fatCubinHandle);
void CUDARTAPI __cudaRegisterFunction(void** fatCubinHandle, const char* hostFun, char* deviceFun,
                                      const char* deviceName, int thread_limit, uint3* tid, uint3* bid, dim3* bDim,
                                      dim3* gDim, int* wSize);
void CUDARTAPI __cudaRegisterVar(void** fatCubinHandle, char* hostVar, char* deviceAddress, const char* deviceName,
                                 int ext, size_t size, int constant, int global);
void CUDARTAPI __cudaRegisterManagedVar(void** fatCubinHandle, void** hostVarPtrAddress, char* deviceAddress,
                                        const char* deviceName, int ext, size_t size, int constant, int global);
unsigned CUDARTAPI __cudaPushCallConfiguration(dim3 gridDim, dim3 blockDim, size_t sharedMem,
                                               struct CUstream_st* stream);
cudaError_t CUDARTAPI __cudaPopCallConfiguration(dim3* gridDim, dim3* blockDim, size_t* sharedMem, void* stream);
cudaError_t CUDARTAPI __cudaGetKernel(cudaKernel_t* kernel, const void* func);
cudaError_t CUDARTAPI __cudaLaunchKernel(cudaKernel_t kernel, dim3 gridDim, dim3 blockDim, void** args,
                                         size_t sharedMem, cudaStream_t stream);
cudaError_t CUDARTAPI __cudaLaunchKernel_ptsz(cudaKernel_t kernel, dim3 gridDim, dim3 blockDim, void** args,
                                              size_t sharedMem, cudaStream_t stream);
}

// PFN types cudaTypedefs.h declares only under __CUDA_API_VERSION_INTERNAL: the old (CUDA 7.0)
// ABI of the primary-context release and reset, which NVIDIA's cudart 13.0 looks up (at 7000) and
// uses. Same signatures as the _v11000 ones; the driver answers with the unsuffixed exports.
namespace poolshim::sim_rt {
using PFN_cuDevicePrimaryCtxRelease_v7000 = CUresult(CUDAAPI*)(CUdevice_v1 dev);
using PFN_cuDevicePrimaryCtxReset_v7000 = CUresult(CUDAAPI*)(CUdevice_v1 dev);
}  // namespace poolshim::sim_rt

// X(name, PFN type, cudaVersion, per-thread cudaVersion): every driver entry point this runtime
// uses, and no other. Each is the answer to one of the lookups NVIDIA's cudart 13.0 makes
// (cudart_lookups.inc, generated from tests/sim/fixtures/cudart-13.0-lookups.tsv): the legacy
// table's entry is the answer to (name, cudaVersion, CU_GET_PROC_ADDRESS_DEFAULT), the per-thread
// table's to (name, per-thread cudaVersion, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) where
// that column is not 0 (0: the per-thread table shares the legacy entry). runtime_core.cpp
// static_asserts that each of them is in the record. The per-thread version is the one the record
// asks (mostly 7000, when the _ptds/_ptsz exports appeared); the _ptds/_ptsz PFN types have the
// legacy ones' signatures. `name` is the base name handed to cuGetProcAddress_v2; as a member name
// it goes through cuda.h's macros (cuMemAlloc -> cuMemAlloc_v2), consistently so.
#define POOLSHIM_RT_DRIVER_ENTRIES(X)                                                          \
  X(cuInit, PFN_cuInit_v2000, 2000, 0)                                                         \
  X(cuDriverGetVersion, PFN_cuDriverGetVersion_v2020, 2020, 0)                                 \
  X(cuDeviceGet, PFN_cuDeviceGet_v2000, 2000, 0)                                               \
  X(cuDeviceGetCount, PFN_cuDeviceGetCount_v2000, 2000, 0)                                     \
  X(cuDeviceGetName, PFN_cuDeviceGetName_v2000, 2000, 0)                                       \
  X(cuDeviceGetUuid, PFN_cuDeviceGetUuid_v9020, 9020, 0)                                       \
  X(cuDeviceTotalMem, PFN_cuDeviceTotalMem_v3020, 3020, 0)                                     \
  X(cuDeviceGetAttribute, PFN_cuDeviceGetAttribute_v2000, 2000, 0)                             \
  X(cuDeviceCanAccessPeer, PFN_cuDeviceCanAccessPeer_v4000, 4000, 0)                           \
  X(cuDevicePrimaryCtxRetain, PFN_cuDevicePrimaryCtxRetain_v7000, 7000, 0)                     \
  X(cuDevicePrimaryCtxRelease, poolshim::sim_rt::PFN_cuDevicePrimaryCtxRelease_v7000, 7000, 0) \
  X(cuDevicePrimaryCtxReset, poolshim::sim_rt::PFN_cuDevicePrimaryCtxReset_v7000, 7000, 0)     \
  X(cuCtxGetCurrent, PFN_cuCtxGetCurrent_v4000, 4000, 0)                                       \
  X(cuCtxSetCurrent, PFN_cuCtxSetCurrent_v4000, 4000, 0)                                       \
  X(cuCtxGetDevice, PFN_cuCtxGetDevice_v13000, 13000, 0)                                       \
  X(cuCtxSynchronize, PFN_cuCtxSynchronize_v13000, 13000, 0)                                   \
  X(cuCtxEnablePeerAccess, PFN_cuCtxEnablePeerAccess_v4000, 4000, 0)                           \
  X(cuCtxDisablePeerAccess, PFN_cuCtxDisablePeerAccess_v4000, 4000, 0)                         \
  X(cuLibraryLoadData, PFN_cuLibraryLoadData_v12000, 12000, 0)                                 \
  X(cuLibraryUnload, PFN_cuLibraryUnload_v12000, 12000, 0)                                     \
  X(cuMemAlloc, PFN_cuMemAlloc_v3020, 3020, 0)                                                 \
  X(cuMemAllocPitch, PFN_cuMemAllocPitch_v3020, 3020, 0)                                       \
  X(cuMemFree, PFN_cuMemFree_v3020, 3020, 0)                                                   \
  X(cuMemGetInfo, PFN_cuMemGetInfo_v3020, 3020, 0)                                             \
  X(cuMemHostAlloc, PFN_cuMemHostAlloc_v2020, 2020, 0)                                         \
  X(cuMemFreeHost, PFN_cuMemFreeHost_v2000, 2000, 0)                                           \
  X(cuMemHostGetDevicePointer, PFN_cuMemHostGetDevicePointer_v3020, 3020, 0)                   \
  X(cuMemHostGetFlags, PFN_cuMemHostGetFlags_v2030, 2030, 0)                                   \
  X(cuMemHostRegister, PFN_cuMemHostRegister_v6050, 6050, 0)                                   \
  X(cuMemHostUnregister, PFN_cuMemHostUnregister_v4000, 4000, 0)                               \
  X(cuMemAllocManaged, PFN_cuMemAllocManaged_v6000, 6000, 0)                                   \
  X(cuMemAllocAsync, PFN_cuMemAllocAsync_v11020, 11020, 11020)                                 \
  X(cuMemFreeAsync, PFN_cuMemFreeAsync_v11020, 11020, 11020)                                   \
  X(cuMemcpy, PFN_cuMemcpy_v4000, 4000, 7000)                                                  \
  X(cuMemcpyAsync, PFN_cuMemcpyAsync_v4000, 4000, 7000)                                        \
  X(cuMemcpyHtoD, PFN_cuMemcpyHtoD_v3020, 3020, 7000)                                          \
  X(cuMemcpyDtoH, PFN_cuMemcpyDtoH_v3020, 3020, 7000)                                          \
  X(cuMemcpyDtoD, PFN_cuMemcpyDtoD_v3020, 3020, 7000)                                          \
  X(cuMemcpyHtoDAsync, PFN_cuMemcpyHtoDAsync_v3020, 3020, 7000)                                \
  X(cuMemcpyDtoHAsync, PFN_cuMemcpyDtoHAsync_v3020, 3020, 7000)                                \
  X(cuMemcpyDtoDAsync, PFN_cuMemcpyDtoDAsync_v3020, 3020, 7000)                                \
  X(cuMemcpyPeer, PFN_cuMemcpyPeer_v4000, 4000, 0)                                             \
  X(cuMemcpyPeerAsync, PFN_cuMemcpyPeerAsync_v4000, 4000, 0)                                   \
  X(cuMemsetD8, PFN_cuMemsetD8_v3020, 3020, 7000)                                              \
  X(cuMemsetD8Async, PFN_cuMemsetD8Async_v3020, 3020, 7000)                                    \
  X(cuMemcpy2DUnaligned, PFN_cuMemcpy2DUnaligned_v3020, 3020, 7000)                            \
  X(cuMemcpy2DAsync, PFN_cuMemcpy2DAsync_v3020, 3020, 7000)                                    \
  X(cuMemsetD2D8, PFN_cuMemsetD2D8_v3020, 3020, 7000)                                          \
  X(cuMemsetD2D8Async, PFN_cuMemsetD2D8Async_v3020, 3020, 7000)                                \
  X(cuPointerGetAttributes, PFN_cuPointerGetAttributes_v7000, 7000, 0)                         \
  X(cuIpcGetMemHandle, PFN_cuIpcGetMemHandle_v4010, 4010, 0)                                   \
  X(cuIpcOpenMemHandle, PFN_cuIpcOpenMemHandle_v11000, 11000, 0)                               \
  X(cuIpcCloseMemHandle, PFN_cuIpcCloseMemHandle_v4010, 4010, 0)                               \
  X(cuStreamCreate, PFN_cuStreamCreate_v2000, 2000, 0)                                         \
  X(cuStreamCreateWithPriority, PFN_cuStreamCreateWithPriority_v5050, 5050, 0)                 \
  X(cuStreamDestroy, PFN_cuStreamDestroy_v4000, 4000, 0)                                       \
  X(cuStreamSynchronize, PFN_cuStreamSynchronize_v2000, 2000, 7000)                            \
  X(cuStreamQuery, PFN_cuStreamQuery_v2000, 2000, 7000)                                        \
  X(cuStreamWaitEvent, PFN_cuStreamWaitEvent_v3020, 3020, 7000)                                \
  X(cuStreamGetFlags, PFN_cuStreamGetFlags_v5050, 5050, 7000)                                  \
  X(cuStreamGetId, PFN_cuStreamGetId_v12000, 12000, 12000)                                     \
  X(cuStreamGetPriority, PFN_cuStreamGetPriority_v5050, 5050, 7000)                            \
  X(cuLaunchHostFunc, PFN_cuLaunchHostFunc_v10000, 10000, 10000)                               \
  X(cuStreamAddCallback, PFN_cuStreamAddCallback_v5000, 5000, 7000)                            \
  X(cuStreamBeginCapture, PFN_cuStreamBeginCapture_v10010, 10010, 10010)                       \
  X(cuStreamEndCapture, PFN_cuStreamEndCapture_v10000, 10000, 10000)                           \
  X(cuStreamIsCapturing, PFN_cuStreamIsCapturing_v10000, 10000, 10000)                         \
  X(cuThreadExchangeStreamCaptureMode, PFN_cuThreadExchangeStreamCaptureMode_v10010, 10010, 0) \
  X(cuEventCreate, PFN_cuEventCreate_v2000, 2000, 0)                                           \
  X(cuEventRecord, PFN_cuEventRecord_v2000, 2000, 7000)                                        \
  X(cuEventRecordWithFlags, PFN_cuEventRecordWithFlags_v11010, 11010, 11010)                   \
  X(cuEventQuery, PFN_cuEventQuery_v2000, 2000, 0)                                             \
  X(cuEventSynchronize, PFN_cuEventSynchronize_v2000, 2000, 0)                                 \
  X(cuEventElapsedTime, PFN_cuEventElapsedTime_v12080, 12080, 0)                               \
  X(cuEventDestroy, PFN_cuEventDestroy_v4000, 4000, 0)                                         \
  X(cuGraphInstantiateWithFlags, PFN_cuGraphInstantiateWithFlags_v11040, 11040, 0)             \
  X(cuGraphLaunch, PFN_cuGraphLaunch_v10000, 10000, 10000)                                     \
  X(cuGraphExecDestroy, PFN_cuGraphExecDestroy_v10000, 10000, 0)                               \
  X(cuGraphDestroy, PFN_cuGraphDestroy_v10000, 10000, 0)

namespace poolshim::sim_rt {

inline constexpr int runtime_cuda_version = CUDART_VERSION;  // 13000

// The lookups NVIDIA's cudart 13.0 makes through cuGetProcAddress_v2, in its order (row i is
// lookup i + 1 of the record; CMake checks the numbering). All are made when the driver is loaded.
struct driver_lookup {
  const char* symbol;  // "" for the first, empty-named lookup
  int version;
  unsigned flags;  // CU_GET_PROC_ADDRESS_DEFAULT or _PER_THREAD_DEFAULT_STREAM
};
inline constexpr driver_lookup cudart_lookups[] = {
#define POOLSHIM_RT_LOOKUP(order, symbol, version, flags) {symbol, version, flags},
#include "cudart_lookups.inc"
#undef POOLSHIM_RT_LOOKUP
};
inline constexpr int cudart_lookup_count = static_cast<int>(sizeof cudart_lookups / sizeof cudart_lookups[0]);

constexpr bool same_symbol(const char* a, const char* b) noexcept {
  while (*a != '\0' && *a == *b) {
    ++a;
    ++b;
  }
  return *a == *b;
}

// The position of the lookup (symbol, version, flags) in cudart_lookups, or -1 if cudart 13.0
// never makes it.
constexpr int lookup_index(const char* symbol, int version, unsigned flags) noexcept {
  for (int i = 0; i < cudart_lookup_count; ++i) {
    const driver_lookup& l = cudart_lookups[i];
    if (l.version == version && l.flags == flags && same_symbol(l.symbol, symbol)) return i;
  }
  return -1;
}

struct driver_table {
#define POOLSHIM_RT_MEMBER(name, pfn, version, per_thread) pfn name = nullptr;
  POOLSHIM_RT_DRIVER_ENTRIES(POOLSHIM_RT_MEMBER)
#undef POOLSHIM_RT_MEMBER
  PFN_cuGetProcAddress_v12000 get_proc_address = nullptr;  // from dlsym, the one lookup not made through itself
};

// Which default stream a stream argument of 0 means: the plain exports use the legacy stream, the
// _ptds/_ptsz exports the calling thread's per-thread stream. The two tables differ only in the
// entries marked per_thread above, which come from the driver's per-thread lookup.
enum class default_stream { legacy, per_thread };

// The driver table for `s`. Valid only inside an api() body with needs::driver or needs::context.
const driver_table& driver(default_stream s = default_stream::legacy) noexcept;

// What a runtime call needs before its body runs. Once the exit handler (see runtime_core.cpp) has
// released the runtime's libraries and contexts, calls that need the driver return
// cudaErrorCudartUnloading, as NVIDIA's cudart does at that point of process exit.
enum class needs {
  nothing,  // no driver: pure bookkeeping (still returns a sticky error)
  driver,   // libcuda.so.1 loaded, cuInit succeeded, devices enumerated and fat binaries loaded;
            // every such call starts with cuCtxGetCurrent, as cudart's calls do
  context,  // and a context current on this thread (the primary context of the current device)
};

cudaError_t enter(needs n) noexcept;
cudaError_t leave(cudaError_t e) noexcept;

// Runs `body` as a runtime call: a sticky error short-cuts it, the driver and context are set up
// as `n` asks, and a failure becomes this thread's last error (and the process's sticky error if
// it is one of those).
template <class Body>
cudaError_t api(needs n, Body&& body) noexcept {
  cudaError_t e = enter(n);
  if (e == cudaSuccess) {
    try {
      e = body();
    } catch (const std::bad_alloc&) {
      e = cudaErrorMemoryAllocation;
    }
  }
  return leave(e);
}

// CUresult -> cudaError_t. Pure: leave() is where sticky errors are recorded.
cudaError_t from_driver(CUresult r) noexcept;

// The runtime's current device: the device of the current context if one is current, else the
// device chosen with cudaSetDevice on this thread (0 by default).
int current_device() noexcept;

// The primary context of `device`, retained once per process on first need.
CUresult primary_context(int device, CUcontext* ctx) noexcept;

// The devices as the start-up enumeration found them (valid after enter(needs::driver)).
int device_count() noexcept;

// True in the process whose start-up loaded the driver state this runtime holds (false before
// start-up and in a forked child, which inherits that state but must not release it).
bool in_initialising_process() noexcept;

// Loads the driver if that has not happened yet (dlopen, cuGetProcAddress_v2 and the record's
// lookups); cudaSuccess when libcuda.so.1 and every entry point above were found (whether or not
// cuInit then succeeded).
cudaError_t driver_load_error() noexcept;

// Defined in runtime_device.cpp: what cudart reads of a device at start-up and for
// cudaGetDeviceProperties (cuDeviceGetName, cuDeviceTotalMem, cuDeviceGetUuid, cuDeviceGetAttribute).
CUresult read_device_properties(cudaDeviceProp& p, CUdevice dev) noexcept;

// Defined in runtime_startup.cpp: the registered fat binaries as driver libraries. The first
// is called at start-up and then by every call that needs the driver (cheap unless a fat binary
// was registered since: cuLibraryLoadData for each such one, in registration order); the second
// at exit (cuLibraryUnload for each loaded library).
void load_registered_fat_binaries() noexcept;
void unload_fat_binaries() noexcept;

// Defined in runtime_errors.cpp: nullptr for a code the runtime does not know.
const char* error_name(int code) noexcept;
const char* error_description(int code) noexcept;

inline CUdeviceptr to_dptr(const void* p) noexcept {
  return static_cast<CUdeviceptr>(reinterpret_cast<std::uintptr_t>(p));
}
inline void* from_dptr(CUdeviceptr p) noexcept { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(p)); }

}  // namespace poolshim::sim_rt

// Defines a plain export and its per-thread-default-stream twin (`name` + `suffix`, _ptds or _ptsz)
// from one body, `impl<default_stream>`, so the two never drift apart.
#define POOLSHIM_RT_STREAM_PAIR(name, suffix, impl, params, args)                     \
  POOLSHIM_RT_API cudaError_t CUDARTAPI name params {                                 \
    return poolshim::sim_rt::impl<poolshim::sim_rt::default_stream::legacy> args;     \
  }                                                                                   \
  POOLSHIM_RT_API cudaError_t CUDARTAPI name##suffix params {                         \
    return poolshim::sim_rt::impl<poolshim::sim_rt::default_stream::per_thread> args; \
  }

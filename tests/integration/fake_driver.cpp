// A minimal libcuda.so.1 stand-in that behaves as NVIDIA's driver is expected to and the simulator
// does not: linked -Bsymbolic-functions, its cuGetProcAddress hands out its own addresses (the
// simulator takes them through its GOT, so it hands out the preloaded shim's exports and the
// shim's pointer mapping is never exercised), one of them an internal function that is not the
// export (cuMemAlloc at 3020), one the old CUDA 2.0 export (cuMemAlloc at 2000, which the shim wraps
// as it wraps every variant it lists), and one a variant the shim does not list (cuMemAlloc at
// 13000 here: a driver newer than the shim, say, that added one).
#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>

#include <atomic>
#include <cstring>

#define FAKE_API extern "C" __attribute__((visibility("default")))

namespace {

std::atomic<int> g_internal_alloc_calls{0};
std::atomic<unsigned long long> g_next{0x100000};
std::atomic<int> g_unlisted_alloc_calls{0};

CUresult internal_mem_alloc(CUdeviceptr* dptr, size_t bytes) {
  g_internal_alloc_calls.fetch_add(1);
  if (dptr == nullptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  *dptr = g_next.fetch_add((bytes + 511) & ~size_t{511});
  return CUDA_SUCCESS;
}

// The variant no hook row names (same arguments as cuMemAlloc_v2).
CUresult unlisted_mem_alloc(CUdeviceptr* dptr, size_t bytes) {
  g_unlisted_alloc_calls.fetch_add(1);
  return internal_mem_alloc(dptr, bytes);
}

}  // namespace

FAKE_API CUresult cuInit(unsigned int) { return CUDA_SUCCESS; }
FAKE_API CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytes) { return internal_mem_alloc(dptr, bytes); }
FAKE_API CUresult cuMemAlloc(unsigned int* dptr, unsigned int bytes) {  // the CUDA 2.0 ABI
  if (dptr == nullptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  *dptr = 0x1000;
  return CUDA_SUCCESS;
}
FAKE_API CUresult cuMemFree_v2(CUdeviceptr dptr) { return dptr ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE; }
FAKE_API CUresult cuCtxCreate_v2(CUcontext* c, unsigned int, CUdevice) {
  *c = reinterpret_cast<CUcontext>(0x2);
  return CUDA_SUCCESS;
}
FAKE_API CUresult cuCtxCreate_v4(CUcontext* c, CUctxCreateParams*, unsigned int, CUdevice) {
  *c = reinterpret_cast<CUcontext>(0x4);
  return CUDA_SUCCESS;
}
FAKE_API CUresult cuGetProcAddress_v2(const char* symbol, void** pfn, int version, cuuint64_t,
                                      CUdriverProcAddressQueryResult* status) {
  if (symbol == nullptr || pfn == nullptr) return CUDA_ERROR_INVALID_VALUE;
  void* p = nullptr;
  if (std::strcmp(symbol, "cuMemAlloc") == 0) {
    p = version >= 13000  ? reinterpret_cast<void*>(&unlisted_mem_alloc)
        : version >= 3020 ? reinterpret_cast<void*>(&internal_mem_alloc)
                          : reinterpret_cast<void*>(&cuMemAlloc);
  } else if (std::strcmp(symbol, "cuMemFree") == 0 && version >= 3020) {
    p = reinterpret_cast<void*>(&cuMemFree_v2);
  } else if (std::strcmp(symbol, "cuCtxCreate") == 0) {
    p = version >= 12050 ? reinterpret_cast<void*>(&cuCtxCreate_v4) : reinterpret_cast<void*>(&cuCtxCreate_v2);
  } else if (std::strcmp(symbol, "cuGetProcAddress") == 0 && version >= 12000) {
    p = reinterpret_cast<void*>(&cuGetProcAddress_v2);
  } else if (std::strcmp(symbol, "cuInit") == 0) {
    p = reinterpret_cast<void*>(&cuInit);
  }
  *pfn = p;
  if (status) *status = p ? CU_GET_PROC_ADDRESS_SUCCESS : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
  return CUDA_SUCCESS;
}
FAKE_API CUresult cuGetProcAddress(const char* symbol, void** pfn, int version, cuuint64_t flags) {
  return cuGetProcAddress_v2(symbol, pfn, version, flags, nullptr);
}

// For the test: how often the internal allocation function ran (through any route).
FAKE_API int poolshim_fake_driver_internal_alloc_calls() { return g_internal_alloc_calls.load(); }
FAKE_API int poolshim_fake_driver_unlisted_alloc_calls() { return g_unlisted_alloc_calls.load(); }

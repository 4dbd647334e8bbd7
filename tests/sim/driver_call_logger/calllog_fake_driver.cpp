// A tiny fake libcuda for the driver-call logger's self-test: cuGetProcAddress in both ABIs, a few
// entry points (one with a signature no wrapper could guess) and a data symbol. It lets the
// logger be tested without the simulator or a GPU.
#include <cuda.h>
// cuda.h maps cuGetProcAddress to _v2; the fake exports the legacy 4-argument one as well.
#undef cuGetProcAddress

#include <atomic>
#include <cstring>

extern "C" {

// Many integer and floating-point arguments, a struct passed and returned by value on the stack:
// whatever a thunk disturbed would show up in the result.
struct fake_wide {
  long a, b, c, d;
  double x;
};

[[gnu::visibility("default")]] int cuFakeData = 42;

[[gnu::visibility("default")]] std::atomic<long> cuFakeFreeCalls{0};

[[gnu::visibility("default")]] CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
  if (!p || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  *p = static_cast<CUdeviceptr>(0x1000 + bytes);
  return CUDA_SUCCESS;
}

[[gnu::visibility("default")]] CUresult cuMemFree_v2(CUdeviceptr) {
  cuFakeFreeCalls.fetch_add(1, std::memory_order_relaxed);
  return CUDA_SUCCESS;
}

[[gnu::visibility("default")]] fake_wide cuFakeWide(int i1, long i2, int i3, long i4, int i5, long i6, int i7, long i8,
                                                    double d1, float f2, fake_wide w, double d3) {
  fake_wide r{};
  r.a = i1 + i2 + i3 + i4;
  r.b = i5 + i6 + i7 + i8;
  r.c = w.a * 1000 + w.b * 100 + w.c * 10 + w.d;
  r.d = i8 - i1;
  r.x = d1 * 2.0 + static_cast<double>(f2) + w.x + d3;
  return r;
}

CUresult lookup(const char* symbol, void** pfn, int version, CUdriverProcAddressQueryResult* st);

[[gnu::visibility("default")]] CUresult cuGetProcAddress_v2(const char* symbol, void** pfn, int version, cuuint64_t,
                                                            CUdriverProcAddressQueryResult* st) {
  return lookup(symbol, pfn, version, st);
}

[[gnu::visibility("default")]] CUresult cuGetProcAddress(const char* symbol, void** pfn, int version, cuuint64_t) {
  return lookup(symbol, pfn, version, nullptr);
}

CUresult lookup(const char* symbol, void** pfn, int version, CUdriverProcAddressQueryResult* st) {
  if (!symbol || !pfn) return CUDA_ERROR_INVALID_VALUE;
  void* f = nullptr;
  if (std::strcmp(symbol, "cuMemAlloc") == 0) f = reinterpret_cast<void*>(&cuMemAlloc_v2);
  if (std::strcmp(symbol, "cuMemFree") == 0) f = reinterpret_cast<void*>(&cuMemFree_v2);
  if (std::strcmp(symbol, "cuFakeWide") == 0) f = reinterpret_cast<void*>(&cuFakeWide);
  if (std::strcmp(symbol, "cuGetProcAddress") == 0) {
    f = version >= 12000 ? reinterpret_cast<void*>(&cuGetProcAddress_v2) : reinterpret_cast<void*>(&cuGetProcAddress);
  }
  *pfn = f;
  if (st) *st = f ? CU_GET_PROC_ADDRESS_SUCCESS : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
  return CUDA_SUCCESS;
}

}  // extern "C"

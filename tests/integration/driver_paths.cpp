// Every way a program reaches the driver is intercepted, with the ABI the caller asked for:
// direct calls of a -lcuda program, dlopen + dlsym, cuGetProcAddress (CUDA 11.3 ABI) and
// cuGetProcAddress_v2 at cudaVersion 11000, 12000 and 13000 (cuCtxCreate is a different function at
// each), per-thread-stream lookups (_ptsz), and cudaGetDriverEntryPointByVersion. Results go to
// stdout (the same with and without the shim); which hook saw each call is checked on stderr.
#define __CUDA_API_VERSION_INTERNAL 1  // declare every ABI variant, to call each by its own name
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cstdio>

#include "shim_probe.h"

namespace {

void report(const char* what, int r) { std::printf("%s: %d\n", what, r); }

// Runs `call` and checks that exactly `times` calls reached the hook `hook`.
template <class F>
void expect_hook(const char* what, const char* hook, int times, F&& call) {
  poolshim_counters before = shim_probe::counters();
  int r = call();
  poolshim_counters after = shim_probe::counters();
  report(what, r);
  char label[256];
  std::snprintf(label, sizeof label, "%s -> %s", what, hook);
  shim_probe::check_delta(label, shim_probe::hook_calls(before, hook), shim_probe::hook_calls(after, hook), times);
}

CUdevice g_dev = 0;
CUcontext g_primary = nullptr;

// cuCtxCreate makes the new context current; the next step runs in the primary context again.
int restore(CUresult r) {
  cuCtxSetCurrent(g_primary);
  return r;
}

// Allocates and frees one block through `alloc` (a cuMemAlloc_v2-ABI pointer).
int alloc_free(PFN_cuMemAlloc_v3020 alloc) {
  if (alloc == nullptr) return -1;
  CUdeviceptr p = 0;
  CUresult r = alloc(&p, 1 << 16);
  if (r != CUDA_SUCCESS) return r;
  return cuMemFree_v2(p);
}

// Creates a context with the cuCtxCreate ABI the pointer has, then destroys it.
int ctx_v2(void* f) {
  CUcontext c = nullptr;
  CUresult r = reinterpret_cast<PFN_cuCtxCreate_v3020>(f)(&c, 0, g_dev);
  return restore(r == CUDA_SUCCESS ? cuCtxDestroy_v2(c) : r);
}
int ctx_v3(void* f) {
  CUcontext c = nullptr;
  CUresult r = reinterpret_cast<PFN_cuCtxCreate_v11040>(f)(&c, nullptr, 0, 0, g_dev);
  return restore(r == CUDA_SUCCESS ? cuCtxDestroy_v2(c) : r);
}
int ctx_v4(void* f) {
  CUcontext c = nullptr;
  CUresult r = reinterpret_cast<PFN_cuCtxCreate_v12050>(f)(&c, nullptr, 0, g_dev);
  return restore(r == CUDA_SUCCESS ? cuCtxDestroy_v2(c) : r);
}

void* lookup_v2(const char* name, int version, cuuint64_t flags) {
  void* f = nullptr;
  CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
  CUresult r = cuGetProcAddress_v2(name, &f, version, flags, &status);
  std::printf("cuGetProcAddress_v2(%s, %d, %llu): %d status %d found %d\n", name, version,
              static_cast<unsigned long long>(flags), r, status, f != nullptr);
  return f;
}

void* lookup_v1(const char* name, int version, cuuint64_t flags) {
  void* f = nullptr;
  CUresult r = cuGetProcAddress(name, &f, version, flags);
  std::printf("cuGetProcAddress(%s, %d, %llu): %d found %d\n", name, version, static_cast<unsigned long long>(flags), r,
              f != nullptr);
  return f;
}

}  // namespace

int main() {
  shim_probe::check_presence();
  report("cuInit", cuInit(0));
  report("cuDeviceGet", cuDeviceGet(&g_dev, 0));
  report("cuDevicePrimaryCtxRetain", cuDevicePrimaryCtxRetain(&g_primary, g_dev));
  report("cuCtxSetCurrent", cuCtxSetCurrent(g_primary));

  // 1. -lcuda: the program's own references bind to the shim's exports.
  expect_hook("direct cuMemAlloc_v2", "cuMemAlloc_v2", 1, [] { return alloc_free(&cuMemAlloc_v2); });

  // 2. dlopen + dlsym on the driver's handle; a name we do not hook is the driver's own.
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  std::printf("dlopen libcuda.so.1: %d\n", lib != nullptr);
  expect_hook("dlsym(libcuda) cuMemAlloc_v2", "cuMemAlloc_v2", 1,
              [&] { return alloc_free(reinterpret_cast<PFN_cuMemAlloc_v3020>(dlsym(lib, "cuMemAlloc_v2"))); });
  expect_hook("dlsym(RTLD_DEFAULT) cuMemAlloc_v2", "cuMemAlloc_v2", 1,
              [&] { return alloc_free(reinterpret_cast<PFN_cuMemAlloc_v3020>(dlsym(RTLD_DEFAULT, "cuMemAlloc_v2"))); });
  std::printf("dlsym(libcuda) cuInit is the driver's: %d\n",
              dlsym(lib, "cuInit") == dlsym(RTLD_DEFAULT, "cuInit") && dlsym(lib, "cuInit") != nullptr);
  std::printf("dlsym(libcuda) of an unknown name: %d\n", dlsym(lib, "cuNoSuchEntryPoint") != nullptr);
  auto gpa_from_dlsym = reinterpret_cast<PFN_cuGetProcAddress_v12000>(dlsym(lib, "cuGetProcAddress_v2"));
  expect_hook("dlsym(libcuda) cuGetProcAddress_v2 lookup", "cuGetProcAddress_v2", 1, [&] {
    void* f = nullptr;
    return gpa_from_dlsym("cuMemAlloc", &f, 12000, CU_GET_PROC_ADDRESS_DEFAULT, nullptr);
  });

  // 3. cuGetProcAddress_v2 and the 4-argument cuGetProcAddress at three CUDA versions.
  for (int version : {11000, 12000, 13000}) {
    for (int v1 = 0; v1 < 2; ++v1) {
      auto look = v1 ? lookup_v1 : lookup_v2;
      char what[128];
      std::snprintf(what, sizeof what, "%s cuMemAlloc@%d", v1 ? "v1" : "v2", version);
      void* f = look("cuMemAlloc", version, CU_GET_PROC_ADDRESS_DEFAULT);
      expect_hook(what, "cuMemAlloc_v2", 1, [&] { return alloc_free(reinterpret_cast<PFN_cuMemAlloc_v3020>(f)); });
      // cuCtxCreate: _v2 below 11.4, _v3 from 11.4, _v4 from 12.5 (CUDA 13's only ABI).
      void* c = look("cuCtxCreate", version, CU_GET_PROC_ADDRESS_DEFAULT);
      std::snprintf(what, sizeof what, "%s cuCtxCreate@%d", v1 ? "v1" : "v2", version);
      if (version < 11040) {
        expect_hook(what, "cuCtxCreate_v2", 1, [&] { return ctx_v2(c); });
      } else if (version < 12050) {
        expect_hook(what, "cuCtxCreate_v3", 1, [&] { return ctx_v3(c); });
      } else {
        expect_hook(what, "cuCtxCreate_v4", 1, [&] { return ctx_v4(c); });
      }
    }
  }

  // Per-thread default stream: the _ptsz ABI variant is handed out and intercepted.
  void* alloc_async_pt = lookup_v2("cuMemAllocAsync", 12000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM);
  void* free_async_pt = lookup_v2("cuMemFreeAsync", 12000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM);
  expect_hook("ptsz cuMemAllocAsync", "cuMemAllocAsync_ptsz", 1, [&] {
    CUdeviceptr p = 0;
    CUresult r = reinterpret_cast<PFN_cuMemAllocAsync_v11020_ptsz>(alloc_async_pt)(&p, 4096, nullptr);
    if (r != CUDA_SUCCESS) return static_cast<int>(r);
    return static_cast<int>(reinterpret_cast<PFN_cuMemFreeAsync_v11020_ptsz>(free_async_pt)(p, nullptr));
  });
  void* alloc_async = lookup_v2("cuMemAllocAsync", 12000, CU_GET_PROC_ADDRESS_LEGACY_STREAM);
  expect_hook("legacy cuMemAllocAsync", "cuMemAllocAsync", 1, [&] {
    CUdeviceptr p = 0;
    CUresult r = reinterpret_cast<PFN_cuMemAllocAsync_v11020>(alloc_async)(&p, 4096, nullptr);
    if (r != CUDA_SUCCESS) return static_cast<int>(r);
    return static_cast<int>(cuMemFreeAsync(p, nullptr)) + static_cast<int>(cuStreamSynchronize(nullptr));
  });

  // A lookup of cuGetProcAddress itself hands back a lookup that is intercepted too.
  void* gpa = lookup_v2("cuGetProcAddress", 12000, CU_GET_PROC_ADDRESS_DEFAULT);
  expect_hook("cuGetProcAddress via itself", "cuGetProcAddress_v2", 1, [&] {
    void* f = nullptr;
    return reinterpret_cast<PFN_cuGetProcAddress_v12000>(gpa)("cuMemFree", &f, 12000, 0, nullptr);
  });
  // A name too old for its ABI is answered by the driver, untouched.
  lookup_v2("cuMemAlloc", 2000, CU_GET_PROC_ADDRESS_DEFAULT);

  // 4. The runtime's entry-point lookup goes through the driver's cuGetProcAddress_v2.
  expect_hook("cudaGetDriverEntryPointByVersion cuMemAlloc", "cuMemAlloc_v2", 1, [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult status{};
    cudaError_t e = cudaGetDriverEntryPointByVersion("cuMemAlloc", &f, 12000, cudaEnableDefault, &status);
    if (e != cudaSuccess) return static_cast<int>(e);
    return alloc_free(reinterpret_cast<PFN_cuMemAlloc_v3020>(f));
  });
  expect_hook("cudaGetDriverEntryPointByVersion cuCtxCreate@13000", "cuCtxCreate_v4", 1, [] {
    void* f = nullptr;
    cudaError_t e = cudaGetDriverEntryPointByVersion("cuCtxCreate", &f, 13000, cudaEnableDefault, nullptr);
    return e != cudaSuccess ? static_cast<int>(e) : ctx_v4(f);
  });

  poolshim_counters end = shim_probe::counters();
  shim_probe::check(end.lookups_unknown == 0 || shim_probe::expected() != shim_probe::expect::shim, "lookups_unknown",
                    static_cast<long long>(end.lookups_unknown), 0);
  report("cuDevicePrimaryCtxRelease", cuDevicePrimaryCtxRelease_v2(g_dev));
  return shim_probe::finish("driver_paths");
}

// Against fake_driver (a libcuda.so.1 that hands out its own addresses, as NVIDIA's is expected
// to): cuGetProcAddress results are mapped onto the shim's wrappers, whether the driver returns its
// export or an internal function for the ABI; the old CUDA 2.0 ABI is wrapped as itself (issue #12);
// a variant the shim does not list passes through (counted as unknown, logged once); a name we do
// not hook is the driver's own.
#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>
#include <cudaTypedefs.h>
#include <dlfcn.h>

#include <cstdio>

#include "shim_probe.h"

int main() {
  shim_probe::check_presence();
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    std::fprintf(stderr, "mapping_program: cannot load the fake libcuda.so.1: %s\n", dlerror());
    return 1;
  }
  auto gpa = reinterpret_cast<PFN_cuGetProcAddress_v12000>(dlsym(lib, "cuGetProcAddress_v2"));
  auto internal_calls = reinterpret_cast<int (*)()>(dlsym(lib, "poolshim_fake_driver_internal_alloc_calls"));
  auto unlisted_calls = reinterpret_cast<int (*)()>(dlsym(lib, "poolshim_fake_driver_unlisted_alloc_calls"));
  poolshim_counters before = shim_probe::counters();

  void* alloc = nullptr;
  gpa("cuMemAlloc", &alloc, 12000, 0, nullptr);
  CUdeviceptr d = 0;
  int r = reinterpret_cast<PFN_cuMemAlloc_v3020>(alloc)(&d, 4096);
  std::printf("cuMemAlloc@12000: %d, driver ran it: %d\n", r, internal_calls());
  void* free_fn = nullptr;
  gpa("cuMemFree", &free_fn, 12000, 0, nullptr);
  std::printf("cuMemFree@12000: %d\n", reinterpret_cast<PFN_cuMemFree_v3020>(free_fn)(d));
  void* ctx_fn = nullptr;
  gpa("cuCtxCreate", &ctx_fn, 13000, 0, nullptr);
  CUcontext c = nullptr;
  r = reinterpret_cast<PFN_cuCtxCreate_v12050>(ctx_fn)(&c, nullptr, 0, 0);
  std::printf("cuCtxCreate@13000: %d ctx %p\n", r, static_cast<void*>(c));
  void* old_alloc = nullptr;
  gpa("cuMemAlloc", &old_alloc, 2000, 0, nullptr);
  unsigned old_ptr = 0;
  r = reinterpret_cast<CUresult (*)(unsigned*, unsigned)>(old_alloc)(&old_ptr, 64);
  std::printf("cuMemAlloc@2000 (CUDA 2.0 ABI): %d ptr %#x\n", r, old_ptr);
  for (int i = 0; i < 2; ++i) {  // twice: the unknown pointer is logged once
    void* unlisted = nullptr;
    gpa("cuMemAlloc", &unlisted, 13000, 0, nullptr);
    CUdeviceptr p = 0;
    r = reinterpret_cast<PFN_cuMemAlloc_v3020>(unlisted)(&p, 64);
    std::printf("cuMemAlloc@13000 (a variant the shim does not list): %d, driver ran it: %d\n", r, unlisted_calls());
  }
  void* init = nullptr;
  gpa("cuInit", &init, 12000, 0, nullptr);
  std::printf("cuInit is the driver's: %d\n", init == dlsym(lib, "cuInit"));

  poolshim_counters after = shim_probe::counters();
  using shim_probe::check_delta;
  using shim_probe::hook_calls;
  check_delta("cuMemAlloc_v2 hook (driver returned an internal address)", hook_calls(before, "cuMemAlloc_v2"),
              hook_calls(after, "cuMemAlloc_v2"), 1);
  check_delta("cuMemFree_v2 hook (driver returned its export)", hook_calls(before, "cuMemFree_v2"),
              hook_calls(after, "cuMemFree_v2"), 1);
  check_delta("cuCtxCreate_v4 hook", hook_calls(before, "cuCtxCreate_v4"), hook_calls(after, "cuCtxCreate_v4"), 1);
  check_delta("cuMemAlloc hook (the CUDA 2.0 export)", hook_calls(before, "cuMemAlloc"),
              hook_calls(after, "cuMemAlloc"), 1);
  check_delta("lookups_unknown (the unlisted variant, twice)", before.lookups_unknown, after.lookups_unknown, 2);
  check_delta("lookups_wrapped", before.lookups_wrapped, after.lookups_wrapped, 4);
  return shim_probe::finish("mapping_program");
}

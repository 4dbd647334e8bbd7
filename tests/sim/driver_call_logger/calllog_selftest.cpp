// Self-test program for the driver-call logger, run under LD_PRELOAD=libpoolshim_calllog.so against
// calllog_fake_driver: it checks that wrapped pointers still behave exactly like the real ones
// (arguments, struct returns, concurrent counting) while the ctest compares the written map with
// calllog_selftest_expected.txt line for line.
#include <cuda.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "poolshim_calllog.h"

namespace {

struct fake_wide {
  long a, b, c, d;
  double x;
};

using gpa_v2_fn = CUresult (*)(const char*, void**, int, cuuint64_t, CUdriverProcAddressQueryResult*);
using gpa_v1_fn = CUresult (*)(const char*, void**, int, cuuint64_t);
using alloc_fn = CUresult (*)(CUdeviceptr*, size_t);
using free_fn = CUresult (*)(CUdeviceptr);
using wide_fn = fake_wide (*)(int, long, int, long, int, long, int, long, double, float, fake_wide, double);

int g_failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "calllog_selftest: FAILED: %s\n", what);
    ++g_failures;
  }
}

// True when p is code of the library that defines `symbol_in_lib` (the fake driver).
bool in_same_object(const void* p, const void* reference) {
  Dl_info a{}, b{};
  return dladdr(p, &a) && dladdr(reference, &b) && a.dli_fbase == b.dli_fbase;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <path of libpoolshim_calllog_fakecuda.so>\n", argv[0]);
    return 2;
  }
  if (!poolshim_calllog_phase) {
    std::fprintf(stderr, "calllog_selftest: run me with LD_PRELOAD=libpoolshim_calllog.so\n");
    return 2;
  }
  void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    std::fprintf(stderr, "calllog_selftest: dlopen: %s\n", dlerror());
    return 2;
  }
  const int* data = static_cast<const int*>(dlsym(h, "cuFakeData"));

  poolshim_calllog_mark("lookup");
  auto gpa = reinterpret_cast<gpa_v2_fn>(dlsym(h, "cuGetProcAddress_v2"));
  expect(gpa != nullptr, "dlsym finds cuGetProcAddress_v2");
  if (!gpa) return 1;
  expect(!in_same_object(reinterpret_cast<void*>(gpa), data), "cuGetProcAddress_v2 is wrapped");
  expect(data && *data == 42, "a data symbol is handed back unwrapped");
  void* p = nullptr;
  CUdriverProcAddressQueryResult st{};
  expect(gpa("cuMemAlloc", &p, 13000, 0, &st) == CUDA_SUCCESS && p && st == CU_GET_PROC_ADDRESS_SUCCESS,
         "cuMemAlloc is found");
  auto mem_alloc = reinterpret_cast<alloc_fn>(p);
  expect(!in_same_object(p, data), "cuMemAlloc is wrapped");
  void* again = nullptr;
  gpa("cuMemAlloc", &again, 13000, 0, nullptr);
  expect(again == p, "the same lookup gets the same thunk");
  void* nope = reinterpret_cast<void*>(1);
  expect(
      gpa("cuNoSuchThing", &nope, 13000, 0, &st) == CUDA_SUCCESS && !nope && st == CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND,
      "an unknown symbol stays unknown");
  void* wide = nullptr;
  gpa("cuFakeWide", &wide, 12000, 2, nullptr);
  void* self = nullptr;
  gpa("cuGetProcAddress", &self, 11030, 0, nullptr);
  auto gpa_v1 = reinterpret_cast<gpa_v1_fn>(self);
  expect(gpa_v1 && !in_same_object(self, data), "cuGetProcAddress through itself is wrapped");
  void* fr = nullptr;
  if (gpa_v1) gpa_v1("cuMemFree", &fr, 11030, 0);
  auto mem_free = reinterpret_cast<free_fn>(fr);
  expect(mem_free != nullptr, "cuMemFree is found through the 4-argument lookup");
  auto direct_free = reinterpret_cast<free_fn>(dlsym(h, "cuMemFree_v2"));
  expect(direct_free && !in_same_object(reinterpret_cast<void*>(direct_free), data),
         "dlsym of a driver function is wrapped");

  poolshim_calllog_mark("alloc");
  for (int i = 0; i < 3; ++i) {
    CUdeviceptr d = 0;
    expect(mem_alloc(&d, 256) == CUDA_SUCCESS && d == 0x1000 + 256, "wrapped cuMemAlloc_v2 works");
  }
  expect(mem_alloc(nullptr, 1) == CUDA_ERROR_INVALID_VALUE, "wrapped cuMemAlloc_v2 returns errors");

  poolshim_calllog_mark("wide");
  if (wide) {
    auto f = reinterpret_cast<wide_fn>(wide);
    fake_wide w{1, 2, 3, 4, 0.25};
    fake_wide r = f(1, 2, 3, 4, 5, 6, 7, 80, 1.5, 0.5f, w, 0.125);
    expect(r.a == 10 && r.b == 98 && r.c == 1234 && r.d == 79 && r.x == 3.875,
           "a wrapped function with stack arguments and a struct return sees and returns the same");
  } else {
    expect(false, "cuFakeWide is found");
  }

  poolshim_calllog_mark("threads");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) mem_free(0);
    });
  for (auto& t : threads) t.join();
  direct_free(0);

  poolshim_calllog_mark("idle");
  return g_failures == 0 ? 0 : 1;
}

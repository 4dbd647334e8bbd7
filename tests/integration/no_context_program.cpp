// Threads with no current context, and calls before cuInit, get CUDA's own errors through the
// shim, unchanged (stdout is compared with a run without the shim), and the hooks still see them.
#include <cuda.h>

#include <cstdio>
#include <thread>

#include "shim_probe.h"

namespace {

void calls(const char* when) {
  CUdeviceptr d = 0;
  std::printf("%s cuMemAlloc: %d\n", when, cuMemAlloc(&d, 4096));
  std::printf("%s cuMemFree: %d\n", when, cuMemFree(0x1000));
  size_t free_bytes = 0, total = 0;
  std::printf("%s cuMemGetInfo: %d\n", when, cuMemGetInfo(&free_bytes, &total));
  void* h = nullptr;
  std::printf("%s cuMemHostAlloc: %d\n", when, cuMemHostAlloc(&h, 4096, 0));
  std::printf("%s cuMemAllocHost: %d\n", when, cuMemAllocHost(&h, 4096));
  CUstream s = nullptr;
  std::printf("%s cuStreamCreate: %d\n", when, cuStreamCreate(&s, 0));
  std::printf("%s cuMemAllocAsync: %d\n", when, cuMemAllocAsync(&d, 4096, nullptr));
  std::printf("%s cuMemAllocManaged: %d\n", when, cuMemAllocManaged(&d, 4096, CU_MEM_ATTACH_GLOBAL));
  std::printf("%s cuMemAlloc(null out): %d\n", when, cuMemAlloc(nullptr, 4096));
  CUcontext current = nullptr;
  std::printf("%s cuCtxGetCurrent: %d null %d\n", when, cuCtxGetCurrent(&current), current == nullptr);
}

}  // namespace

int main() {
  shim_probe::check_presence();
  poolshim_counters before = shim_probe::counters();
  calls("before cuInit:");
  std::printf("cuInit: %d\n", cuInit(0));
  std::thread t([] { calls("thread without context:"); });
  t.join();
  poolshim_counters after = shim_probe::counters();
  shim_probe::check_delta("cuMemAlloc_v2 calls", shim_probe::hook_calls(before, "cuMemAlloc_v2"),
                          shim_probe::hook_calls(after, "cuMemAlloc_v2"), 4);
  shim_probe::check_delta("device_allocs (none succeed)", before.device_allocs, after.device_allocs, 0);
  return shim_probe::finish("no_context_program");
}

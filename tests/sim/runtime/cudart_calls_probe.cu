// cudart_calls_probe: makes each runtime call the stand-in cudart must translate exactly as NVIDIA's
// cudart 13.0 does (shared/cudart-13.0/README.md), one per marked phase, so that under
// libpoolshim_calllog.so the map shows its lookups in order (ctest sim.cudart_lookups_match_record)
// and the driver calls of each runtime call. nvcc-built, so start-up registers a fat binary as any
// nvcc-built program does; the phase "exit" holds what the runtime calls at process exit.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "poolshim_calllog.h"

namespace {

constexpr size_t kBytes = 1 << 16;

void phase(const char* name) {
  std::fprintf(stderr, "cudart_calls_probe: phase %s\n", name);
  poolshim_calllog_mark(name);
}

bool ok(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return true;
  std::fprintf(stderr, "cudart_calls_probe: %s failed: %s (%d)\n", what, cudaGetErrorName(e), static_cast<int>(e));
  return false;
}

#define PROBE_TRY(call)       \
  do {                        \
    if (!ok((call), #call)) { \
      return 1;               \
    }                         \
  } while (0)

int run() {
  phase("first_call");
  int count = 0;
  PROBE_TRY(cudaGetDeviceCount(&count));

  phase("cudaSetDevice");
  PROBE_TRY(cudaSetDevice(0));

  phase("cudaMalloc");
  void* d = nullptr;
  PROBE_TRY(cudaMalloc(&d, kBytes));

  std::vector<unsigned char> host(kBytes, 0x5a);
  phase("cudaMemcpy(HtoD)");
  PROBE_TRY(cudaMemcpy(d, host.data(), kBytes, cudaMemcpyHostToDevice));

  phase("cudaMemcpy(DtoH)");
  PROBE_TRY(cudaMemcpy(host.data(), d, kBytes, cudaMemcpyDeviceToHost));

  phase("cudaStreamCreate");
  cudaStream_t s = nullptr;
  PROBE_TRY(cudaStreamCreate(&s));

  phase("cudaMemcpyAsync(DtoH)");
  PROBE_TRY(cudaMemcpyAsync(host.data(), d, kBytes, cudaMemcpyDeviceToHost, s));

  phase("cudaStreamSynchronize");
  PROBE_TRY(cudaStreamSynchronize(s));

  phase("cudaStreamDestroy");
  PROBE_TRY(cudaStreamDestroy(s));

  phase("cudaMallocHost");
  void* h1 = nullptr;
  PROBE_TRY(cudaMallocHost(&h1, kBytes));

  phase("cudaFreeHost(cudaMallocHost)");
  PROBE_TRY(cudaFreeHost(h1));

  phase("cudaHostAlloc");
  void* h2 = nullptr;
  PROBE_TRY(cudaHostAlloc(&h2, kBytes, cudaHostAllocDefault));

  phase("cudaFreeHost(cudaHostAlloc)");
  PROBE_TRY(cudaFreeHost(h2));

  phase("cudaDeviceSynchronize");
  PROBE_TRY(cudaDeviceSynchronize());

  phase("cudaFree");
  PROBE_TRY(cudaFree(d));

  phase("exit");
  return 0;
}

}  // namespace

int main(int argc, char**) {
  if (argc != 1) {
    std::fprintf(stderr, "usage: cudart_calls_probe   (run it under libpoolshim_calllog.so to log its phases)\n");
    return 2;
  }
  return run();
}

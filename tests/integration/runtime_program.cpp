// An unmodified runtime-API program (shared cudart, real headers): allocates and frees device,
// pinned, managed and stream-ordered memory, moves data through it and prints what it saw. Its
// stdout must be the same with and without the shim, in every mode; under the shim every cudaMalloc,
// cudaFree, cudaHostAlloc, ... must be seen by the driver hooks (checked on stderr).
#include <cuda_runtime.h>

#include <cstdio>
#include <vector>

#include "shim_probe.h"

namespace {

int g_mallocs = 0, g_frees = 0, g_host_allocs = 0, g_host_frees = 0;

void report(const char* what, cudaError_t e) { std::printf("%s: %d (%s)\n", what, e, cudaGetErrorName(e)); }

}  // namespace

int main() {
  shim_probe::check_presence();
  poolshim_counters before = shim_probe::counters();

  int devices = 0;
  report("cudaGetDeviceCount", cudaGetDeviceCount(&devices));
  std::printf("devices: %d\n", devices);

  // Device memory of several sizes, filled, copied back and checked.
  std::vector<void*> blocks;
  for (size_t bytes : {size_t{256}, size_t{4096}, size_t{1} << 20, size_t{3} << 20, size_t{64} << 20}) {
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    report("cudaMalloc", e);
    if (e == cudaSuccess) ++g_mallocs, blocks.push_back(p);
  }
  std::vector<unsigned char> host(4096);
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<unsigned char>(i * 7);
  report("cudaMemcpy H2D", cudaMemcpy(blocks[1], host.data(), host.size(), cudaMemcpyHostToDevice));
  report("cudaMemcpy D2D", cudaMemcpy(blocks[2], blocks[1], host.size(), cudaMemcpyDeviceToDevice));
  std::vector<unsigned char> back(host.size());
  report("cudaMemcpy D2H", cudaMemcpy(back.data(), blocks[2], back.size(), cudaMemcpyDeviceToHost));
  unsigned sum = 0;
  for (unsigned char c : back) sum = sum * 31 + c;
  std::printf("checksum: %u, same: %d\n", sum, back == host);

  // Misuse keeps CUDA's own answers (and cudaGetLastError's).
  report("cudaFree(interior)", cudaFree(static_cast<char*>(blocks[2]) + 512));
  report("cudaGetLastError", cudaGetLastError());
  void* zero = nullptr;
  report("cudaMalloc(0)", cudaMalloc(&zero, 0));
  std::printf("cudaMalloc(0) pointer is null: %d\n", zero == nullptr);
  report("cudaFree(nullptr)", cudaFree(nullptr));

  size_t free_bytes = 0, total_bytes = 0;
  report("cudaMemGetInfo", cudaMemGetInfo(&free_bytes, &total_bytes));
  std::printf("total: %zu\n", total_bytes);

  for (void* p : blocks) {
    cudaError_t e = cudaFree(p);
    report("cudaFree", e);
    if (e == cudaSuccess) ++g_frees;
  }

  // Pinned memory: cudaHostAlloc (mapped and not) and cudaMallocHost.
  void* pinned = nullptr;
  cudaError_t e = cudaHostAlloc(&pinned, 1 << 16, cudaHostAllocMapped);
  report("cudaHostAlloc(mapped)", e);
  if (e == cudaSuccess) ++g_host_allocs;
  void* dev_view = nullptr;
  report("cudaHostGetDevicePointer", cudaHostGetDevicePointer(&dev_view, pinned, 0));
  unsigned flags = 0;
  report("cudaHostGetFlags", cudaHostGetFlags(&flags, pinned));
  std::printf("host flags: %u\n", flags);
  void* pinned2 = nullptr;
  e = cudaMallocHost(&pinned2, 1 << 12);
  report("cudaMallocHost", e);
  if (e == cudaSuccess) ++g_host_allocs;
  for (void* p : {pinned, pinned2}) {
    e = cudaFreeHost(p);
    report("cudaFreeHost", e);
    if (e == cudaSuccess) ++g_host_frees;
  }

  // Managed and stream-ordered memory pass through (tracked).
  void* managed = nullptr;
  report("cudaMallocManaged", cudaMallocManaged(&managed, 1 << 16));
  report("cudaFree(managed)", cudaFree(managed));
  cudaStream_t stream = nullptr;
  report("cudaStreamCreate", cudaStreamCreate(&stream));
  void* async = nullptr;
  report("cudaMallocAsync", cudaMallocAsync(&async, 1 << 20, stream));
  report("cudaMemsetAsync", cudaMemsetAsync(async, 1, 1 << 20, stream));
  report("cudaFreeAsync", cudaFreeAsync(async, stream));
  report("cudaStreamSynchronize", cudaStreamSynchronize(stream));
  report("cudaStreamDestroy", cudaStreamDestroy(stream));

  poolshim_counters after = shim_probe::counters();
  shim_probe::check_delta("device_allocs", before.device_allocs, after.device_allocs, g_mallocs);
  shim_probe::check_delta("device_frees (incl. managed)", before.device_frees, after.device_frees, g_frees + 1);
  shim_probe::check_delta("device_alloc_bytes", before.device_alloc_bytes, after.device_alloc_bytes,
                          256 + 4096 + (1 << 20) + (3 << 20) + (64 << 20));
  shim_probe::check_delta("host_allocs", before.host_allocs, after.host_allocs, g_host_allocs);
  shim_probe::check_delta("host_frees", before.host_frees, after.host_frees, g_host_frees);
  shim_probe::check_delta("managed_allocs", before.managed_allocs, after.managed_allocs, 1);
  shim_probe::check_delta("async_allocs", before.async_allocs, after.async_allocs, 1);
  shim_probe::check_delta("async_frees", before.async_frees, after.async_frees, 1);
  shim_probe::check_delta("streams_created", before.streams_created, after.streams_created, 1);
  shim_probe::check_delta("cuMemHostGetDevicePointer_v2 calls",
                          shim_probe::hook_calls(before, "cuMemHostGetDevicePointer_v2"),
                          shim_probe::hook_calls(after, "cuMemHostGetDevicePointer_v2"), 1);
  shim_probe::check_delta("lookups_unknown", before.lookups_unknown, after.lookups_unknown, 0);
  return shim_probe::finish("runtime_program");
}

// Pinned host memory under the shim: every cudaHostAlloc flag combination (and cudaMallocHost),
// asynchronous copies to and from device memory with the bytes checked, cudaHostGetDevicePointer,
// cudaHostGetFlags and cudaPointerGetAttributes (base and interior pointers, two devices), and the
// errors of interior, double and foreign frees. stdout must be identical with and without the shim
// (run_compare.sh); in pool mode the program also checks that a second allocation of a size is a
// pool hit and that write-combined memory bypassed the pool.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "shim_probe.h"

namespace {

int g_host_allocs = 0;
int g_host_frees = 0;

bool bytes_are(const unsigned char* p, std::size_t n, unsigned seed) {
  for (std::size_t i = 0; i < n; ++i)
    if (p[i] != static_cast<unsigned char>(i * 7 + seed)) return false;
  return true;
}

void exercise(unsigned flags, bool malloc_host, std::size_t n, void* dev, cudaStream_t s) {
  void* h = nullptr;
  const cudaError_t ea = malloc_host ? cudaMallocHost(&h, n) : cudaHostAlloc(&h, n, flags);
  std::printf("%s flags=%u size=%zu: alloc=%d", malloc_host ? "cudaMallocHost" : "cudaHostAlloc", flags, n,
              static_cast<int>(ea));
  if (ea != cudaSuccess) {
    std::printf("\n");
    return;
  }
  ++g_host_allocs;
  auto* b = static_cast<unsigned char*>(h);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<unsigned char>(i * 7 + flags);
  // Host -> device, host cleared, device -> host, all asynchronous on one stream.
  cudaError_t ec = cudaMemcpyAsync(dev, h, n, cudaMemcpyHostToDevice, s);
  if (ec == cudaSuccess) ec = cudaStreamSynchronize(s);
  std::memset(h, 0, n);
  if (ec == cudaSuccess) ec = cudaMemcpyAsync(h, dev, n, cudaMemcpyDeviceToHost, s);
  if (ec == cudaSuccess) ec = cudaStreamSynchronize(s);
  std::printf(" copies=%d bytes_ok=%d", static_cast<int>(ec), bytes_are(b, n, flags) ? 1 : 0);

  unsigned got = 0, got_inner = 0;
  const cudaError_t ef = cudaHostGetFlags(&got, h);
  const cudaError_t efi = cudaHostGetFlags(&got_inner, b + n / 2);
  std::printf(" getflags=%d:%u inner=%d:%u", static_cast<int>(ef), got, static_cast<int>(efi), got_inner);
  void* d = nullptr;
  void* d_inner = nullptr;
  const cudaError_t ed = cudaHostGetDevicePointer(&d, h, 0);
  const cudaError_t edi = cudaHostGetDevicePointer(&d_inner, b + n / 2, 0);
  std::printf(" devptr=%d same=%d inner=%d same=%d", static_cast<int>(ed), d == h ? 1 : 0, static_cast<int>(edi),
              d_inner == b + n / 2 ? 1 : 0);
  cudaPointerAttributes a{}, ai{};
  const cudaError_t ep = cudaPointerGetAttributes(&a, h);
  const cudaError_t epi = cudaPointerGetAttributes(&ai, b + n - 1);
  std::printf(" attrs=%d type=%d device=%d host_same=%d dev_same=%d inner=%d type=%d host_same=%d",
              static_cast<int>(ep), static_cast<int>(a.type), a.device, a.hostPointer == h ? 1 : 0,
              a.devicePointer == h ? 1 : 0, static_cast<int>(epi), static_cast<int>(ai.type),
              ai.hostPointer == b + n - 1 ? 1 : 0);

  // Misuse: unregistering pinned memory (never a slab's base under the shim), an interior pointer,
  // then the real free, a double free and the queries of freed memory.
  std::printf(" unregister=%d", static_cast<int>(cudaHostUnregister(h)));
  std::printf(" last=%d", static_cast<int>(cudaGetLastError()));
  if (n >= 8192) {
    std::printf(" interior_free=%d", static_cast<int>(cudaFreeHost(b + 4096)));
    std::printf(" last=%d", static_cast<int>(cudaGetLastError()));
  }
  const cudaError_t e1 = cudaFreeHost(h);
  if (e1 == cudaSuccess) ++g_host_frees;
  const cudaError_t e2 = cudaFreeHost(h);
  std::printf(" free=%d double_free=%d last=%d", static_cast<int>(e1), static_cast<int>(e2),
              static_cast<int>(cudaGetLastError()));
  unsigned after_flags = 0;
  void* after_d = nullptr;
  std::printf(" freed_getflags=%d freed_devptr=%d", static_cast<int>(cudaHostGetFlags(&after_flags, h)),
              static_cast<int>(cudaHostGetDevicePointer(&after_d, h, 0)));
  std::printf(" last=%d\n", static_cast<int>(cudaGetLastError()));
}

}  // namespace

int main() {
  shim_probe::check_presence();
  if (cudaSetDevice(0) != cudaSuccess || cudaFree(nullptr) != cudaSuccess) {
    std::printf("no device\n");
    return 1;
  }
  poolshim_counters before = shim_probe::counters();
  const bool pool_mode = shim_probe::expected() == shim_probe::expect::shim && before.mode == 0;
  constexpr std::size_t kMax = std::size_t{3} << 20;
  void* dev = nullptr;
  cudaStream_t s = nullptr;
  if (cudaMalloc(&dev, kMax) != cudaSuccess || cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess) {
    std::printf("setup failed\n");
    return 1;
  }
  const unsigned all_flags[] = {0,
                                cudaHostAllocPortable,
                                cudaHostAllocMapped,
                                cudaHostAllocPortable | cudaHostAllocMapped,
                                cudaHostAllocWriteCombined,
                                cudaHostAllocMapped | cudaHostAllocWriteCombined,
                                cudaHostAllocPortable | cudaHostAllocMapped | cudaHostAllocWriteCombined};
  const std::size_t sizes[] = {1000, 200000, kMax - 12345};
  for (std::size_t n : sizes) {
    exercise(0, true, n, dev, s);
    for (unsigned f : all_flags) exercise(f, false, n, dev, s);
  }
  // Unknown flags and a foreign pointer: the driver's errors.
  void* h = nullptr;
  std::printf("bad_flags=%d last=%d\n", static_cast<int>(cudaHostAlloc(&h, 4096, 0x80)),
              static_cast<int>(cudaGetLastError()));
  std::vector<char> pageable(4096);
  std::printf("foreign_free=%d last=%d\n", static_cast<int>(cudaFreeHost(pageable.data())),
              static_cast<int>(cudaGetLastError()));

  // Pinned memory allocated with device 1 current names device 1.
  int devices = 0;
  cudaGetDeviceCount(&devices);
  if (devices > 1 && cudaSetDevice(1) == cudaSuccess) {
    void* h1 = nullptr;
    if (cudaMallocHost(&h1, 5000) == cudaSuccess) {
      ++g_host_allocs;
      cudaSetDevice(0);
      cudaPointerAttributes a{};
      std::printf("device 1 pinned: attrs=%d type=%d device=%d\n", static_cast<int>(cudaPointerGetAttributes(&a, h1)),
                  static_cast<int>(a.type), a.device);
      if (cudaFreeHost(h1) == cudaSuccess) ++g_host_frees;
    }
    cudaSetDevice(0);
  }

  // The second allocation of a size is a pool hit.
  poolshim_counters mid = shim_probe::counters();
  void* first = nullptr;
  void* second = nullptr;
  if (cudaMallocHost(&first, 64 << 10) == cudaSuccess) ++g_host_allocs;
  poolshim_counters one = shim_probe::counters();
  if (cudaFreeHost(first) == cudaSuccess) ++g_host_frees;
  if (cudaMallocHost(&second, 64 << 10) == cudaSuccess) ++g_host_allocs;
  poolshim_counters two = shim_probe::counters();
  if (cudaFreeHost(second) == cudaSuccess) ++g_host_frees;
  std::printf("second allocation done\n");

  cudaStreamDestroy(s);
  cudaFree(dev);
  poolshim_counters after = shim_probe::counters();
  shim_probe::check_delta("host_allocs", before.host_allocs, after.host_allocs, g_host_allocs);
  shim_probe::check_delta("host_frees", before.host_frees, after.host_frees, g_host_frees);
  if (pool_mode) {
    shim_probe::check(after.version >= 3, "counters version", after.version, 3);
    // Every allocation but the write-combined ones (3 flag sets x 3 sizes) reached a pool.
    shim_probe::check(
        after.host_pool_requests - before.host_pool_requests == static_cast<unsigned long long>(g_host_allocs - 9),
        "host_pool_requests", static_cast<long long>(after.host_pool_requests - before.host_pool_requests),
        g_host_allocs - 9);
    shim_probe::check(two.host_pool_hits - one.host_pool_hits == 1, "second allocation is a pool hit",
                      static_cast<long long>(two.host_pool_hits - one.host_pool_hits), 1);
    shim_probe::check(two.host_pool_slabs == mid.host_pool_slabs, "no new slab for the second allocation",
                      static_cast<long long>(two.host_pool_slabs), static_cast<long long>(mid.host_pool_slabs));
    shim_probe::check(after.host_pool_bytes_in_use == 0, "no pooled pinned bytes left in use",
                      static_cast<long long>(after.host_pool_bytes_in_use), 0);
    shim_probe::check(after.host_pool_peak_in_use >= kMax - 12345, "peak pinned in use",
                      static_cast<long long>(after.host_pool_peak_in_use), static_cast<long long>(kMax - 12345));
  } else {
    shim_probe::check(after.host_pool_requests == 0, "no host pool outside pool mode",
                      static_cast<long long>(after.host_pool_requests), 0);
  }
  return shim_probe::finish("host_pool_program");
}

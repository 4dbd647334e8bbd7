// Known call sites for the report views' test (stats_views_test.sh): which frames are shown, the
// bottom-up view, and the memory_viz snapshot's pool segments and failed allocations. Each line
// marked "mark: NAME" allocates; everything is kept to the end unless said otherwise:
//   site_direct     512 KiB device                                              (mark: direct)
//   two lambdas     256 KiB and 384 KiB device, from two lambdas of main        (mark: lambda a, lambda b)
//   helper          64 KiB device, called by caller_one and by caller_two        (mark: helper)
//   site_same_line  128 KiB with cudaMalloc and 128 KiB with cudaMallocManaged, on one line: two
//                   stacks that differ only in the runtime's frames               (mark: same line)
//   site_packed     16 x 8 KiB device; the odd ones freed (holes in the segment)  (mark: packed)
//   site_oom        1 TiB device: fails, nothing is allocated                    (mark: oom)
// Then it prints "block PTR BYTES BASE SIZE" for each device block still allocated: its address,
// size, and the pool segment that holds it as cuMemGetAddressRange says (in pool mode a small
// block's range is its 2 MiB segment), and "done".
#include <cuda.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

struct kept {
  void* ptr;
  std::size_t bytes;
};
std::vector<kept> g_kept;

void keep(void* p, std::size_t bytes) {
  if (p != nullptr) g_kept.push_back({p, bytes});
}

[[gnu::noinline]] void* site_direct() {
  void* p = nullptr;
  cudaMalloc(&p, 512 << 10);  // mark: direct
  return p;
}

[[gnu::noinline]] void* helper() {
  void* p = nullptr;
  cudaMalloc(&p, 64 << 10);  // mark: helper
  return p;
}
[[gnu::noinline]] void* caller_one() { return helper(); }  // mark: caller one
[[gnu::noinline]] void* caller_two() { return helper(); }  // mark: caller two

[[gnu::noinline]] void* site_same_line(bool managed) {
  void* p = nullptr;
  const cudaError_t e = managed ? cudaMallocManaged(&p, 128 << 10) : cudaMalloc(&p, 128 << 10);  // mark: same line
  return e == cudaSuccess ? p : nullptr;
}

[[gnu::noinline]] void site_packed() {
  void* p[16] = {};
  for (void*& q : p) cudaMalloc(&q, 8 << 10);  // mark: packed
  for (int i = 1; i < 16; i += 2) cudaFree(p[i]);
  for (int i = 0; i < 16; i += 2) keep(p[i], 8 << 10);
}

[[gnu::noinline]] bool site_oom() {
  void* p = nullptr;
  const bool failed = cudaMalloc(&p, std::size_t{1} << 40) != cudaSuccess;  // mark: oom
  (void)cudaGetLastError();
  return failed;
}

}  // namespace

int main() {
  keep(site_direct(), 512 << 10);
  auto lambda_a = [](std::size_t n) __attribute__((noinline)) {
    void* p = nullptr;
    cudaMalloc(&p, n);  // mark: lambda a
    return p;
  };
  auto lambda_b = [](std::size_t n) __attribute__((noinline)) {
    void* p = nullptr;
    cudaMalloc(&p, n);  // mark: lambda b
    return p;
  };
  keep(lambda_a(256 << 10), 256 << 10);
  keep(lambda_b(384 << 10), 384 << 10);
  keep(caller_one(), 64 << 10);
  keep(caller_two(), 64 << 10);
  for (const bool managed : {false, true}) {  // one call of site_same_line: one return address
    void* p = site_same_line(managed);
    if (p == nullptr) return 2;
    if (!managed) keep(p, 128 << 10);  // managed memory is the driver's, not the pool's
  }
  site_packed();
  if (!site_oom()) return 3;
  for (const kept& k : g_kept) {
    CUdeviceptr base = 0;
    std::size_t size = 0;
    if (cuMemGetAddressRange(&base, &size, reinterpret_cast<CUdeviceptr>(k.ptr)) != CUDA_SUCCESS) return 4;
    std::printf("block %llu %zu %llu %zu\n", static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(k.ptr)),
                k.bytes, static_cast<unsigned long long>(base), size);
  }
  std::printf("done\n");
  return 0;
}

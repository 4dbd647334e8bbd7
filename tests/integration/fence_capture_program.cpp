// Pooled blocks freed while a blocking stream is being captured (relaxed mode, where cudaFree is
// legal): the capture must stay valid and replay exactly what the program put in it. In fence mode
// the frees fill a batch during the capture, and the fence that falls due then must be deferred: a
// record on the legacy stream would invalidate the capture of a blocking stream (and one on the
// capturing stream would join the graph). After the capture the freed blocks are reused.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "shim_probe.h"

namespace {

constexpr int k_blocks = 80;  // more than a fence batch
constexpr std::size_t k_block_bytes = 4096;
constexpr std::size_t k_target_bytes = 65536;

bool fence_mode() {
  const char* sync = std::getenv("POOLSHIM_FREE_SYNC");
  return sync != nullptr && std::strcmp(sync, "fence") == 0;
}

}  // namespace

int main() {
  shim_probe::check_presence();
  cudaStream_t s = nullptr;
  void* target = nullptr;
  if (cudaStreamCreate(&s) != cudaSuccess || cudaMalloc(&target, k_target_bytes) != cudaSuccess) return 2;
  std::vector<void*> blocks(k_blocks);
  int allocated = 0;
  for (void*& b : blocks) allocated += cudaMalloc(&b, k_block_bytes) == cudaSuccess;
  std::printf("allocated before the capture: %d\n", allocated);
  const poolshim_counters before = shim_probe::counters();

  std::printf("begin capture: %d\n", cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
  std::printf("captured memset: %d\n", cudaMemsetAsync(target, 0x5a, k_target_bytes, s));
  int freed = 0;
  for (void* b : blocks) freed += cudaFree(b) == cudaSuccess;
  std::printf("freed during the capture: %d\n", freed);
  std::printf("captured second memset: %d\n", cudaMemsetAsync(target, 0x3c, k_target_bytes / 2, s));
  cudaGraph_t graph = nullptr;
  std::printf("end capture: %d\n", cudaStreamEndCapture(s, &graph));

  cudaGraphExec_t exec = nullptr;
  std::printf("instantiate: %d\n", cudaGraphInstantiate(&exec, graph, 0));
  std::printf("launch: %d\n", cudaGraphLaunch(exec, s));
  std::printf("synchronize: %d\n", cudaStreamSynchronize(s));
  std::vector<unsigned char> got(k_target_bytes);
  std::printf("copy back: %d\n", cudaMemcpy(got.data(), target, k_target_bytes, cudaMemcpyDeviceToHost));
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < k_target_bytes; ++i) wrong += got[i] != (i < k_target_bytes / 2 ? 0x3c : 0x5a);
  std::printf("graph replayed the captured work: %s\n", wrong == 0 ? "yes" : "no");

  // After the capture the blocks come back from the pool (once a fence has passed, in fence mode).
  int again = 0;
  for (void*& b : blocks) again += cudaMalloc(&b, k_block_bytes) == cudaSuccess;
  for (void* b : blocks) again += cudaFree(b) == cudaSuccess;
  std::printf("allocated and freed after the capture: %d\n", again);

  const poolshim_counters after = shim_probe::counters();
  if (shim_probe::expected() == shim_probe::expect::shim && after.mode == 0) {
    shim_probe::check(after.pool_hits - before.pool_hits >= k_blocks, "pool hits after the capture",
                      static_cast<long long>(after.pool_hits - before.pool_hits), k_blocks);
    if (fence_mode()) {
      shim_probe::check(after.fences_deferred > before.fences_deferred, "a fence was deferred during the capture",
                        static_cast<long long>(after.fences_deferred - before.fences_deferred), 1);
      shim_probe::check(after.fences_completed > 0, "fences_completed > 0",
                        static_cast<long long>(after.fences_completed), 1);
    }
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaFree(target);
  cudaStreamDestroy(s);
  return shim_probe::finish("fence_capture_program");
}

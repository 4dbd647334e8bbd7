// Static constructors and destructors that allocate and free through CUDA, in a library
// (static_ctor_lib, initialised before the shim) and in the program itself, work under the shim
// and are all seen by it.
#include <cuda_runtime.h>

#include <cstdio>

#include "shim_probe.h"

extern "C" int poolshim_test_static_lib_loaded();

namespace {

struct program_global {
  void* block = nullptr;
  program_global() { std::printf("program constructor: cudaMalloc %d\n", cudaMalloc(&block, 4096)); }
  ~program_global() {
    std::printf("program destructor: cudaFree %d\n", cudaFree(block));
    std::fflush(stdout);
  }
} g_program_global;

}  // namespace

int main() {
  shim_probe::check_presence();
  std::printf("library loaded: %d\n", poolshim_test_static_lib_loaded());
  poolshim_counters c = shim_probe::counters();
  // Counted since process start: the library's cudaMalloc+cudaFree+cudaHostAlloc and ours.
  shim_probe::check_delta("device_allocs since start", 0, c.device_allocs, 2);
  shim_probe::check_delta("device_frees since start", 0, c.device_frees, 1);
  shim_probe::check_delta("host_allocs since start", 0, c.host_allocs, 1);
  return shim_probe::finish("static_ctor_program");
}

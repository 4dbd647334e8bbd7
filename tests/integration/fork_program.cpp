// fork under the shim: a child forked before CUDA was used can use it (and counts only its own
// calls); a child of a process that used CUDA starts with zero counters, gets CUDA's own answer
// for a CUDA call, and can still log, look up symbols and exit cleanly.
#include <cuda_runtime.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

#include "shim_probe.h"

namespace {

int wait_child(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

int main() {
  shim_probe::check_presence();
  std::fflush(stdout);
  pid_t early = fork();
  if (early == 0) {
    poolshim_counters before = shim_probe::counters();
    void* p = nullptr;
    cudaError_t a = cudaMalloc(&p, 1 << 20);
    cudaError_t f = cudaFree(p);
    std::printf("early child: cudaMalloc %d cudaFree %d\n", a, f);
    poolshim_counters after = shim_probe::counters();
    shim_probe::check_delta("early child device_allocs", before.device_allocs, after.device_allocs, 1);
    std::fflush(stdout);
    _exit(shim_probe::finish("fork_program early child"));
  }
  std::printf("early child exit: %d\n", wait_child(early));

  void* blocks[3] = {};
  for (void*& b : blocks) std::printf("parent cudaMalloc: %d\n", cudaMalloc(&b, 4096));
  // Threads that use CUDA while the fork happens: their locks must not hang the child.
  std::thread busy([] {
    for (int i = 0; i < 200; ++i) {
      void* p = nullptr;
      if (cudaMalloc(&p, 512) == cudaSuccess) cudaFree(p);
    }
  });
  std::fflush(stdout);
  pid_t late = fork();
  if (late == 0) {
    poolshim_counters c = shim_probe::counters();
    shim_probe::check(c.device_allocs == 0, "late child device_allocs", static_cast<long long>(c.device_allocs), 0);
    void* p = nullptr;
    std::printf("late child: cudaMalloc %d\n", cudaMalloc(&p, 4096));
    std::printf("late child: counters reachable %d\n",
                shim_probe::counters_fn() != nullptr || shim_probe::expected() == shim_probe::expect::none);
    std::fflush(stdout);
    _exit(shim_probe::finish("fork_program late child"));
  }
  busy.join();
  std::printf("late child exit: %d\n", wait_child(late));
  for (void* b : blocks) std::printf("parent cudaFree: %d\n", cudaFree(b));
  return shim_probe::finish("fork_program");
}

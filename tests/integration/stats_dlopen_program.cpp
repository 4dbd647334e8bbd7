// Call-site statistics and the loader's lock: one thread allocates and frees in a loop (each event
// unwinds, which reads the loader's module list) while the main thread dlopens and dlcloses a
// library whose constructor and destructor allocate and free (inside dlopen, under the loader's
// lock). Neither may deadlock; the ctest's timeout is the judge, and the program checks its work.
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <atomic>
#include <cstdio>
#include <thread>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s LIBRARY\n", argv[0]);
    return 2;
  }
  if (cudaFree(nullptr) != cudaSuccess) return 2;
  std::atomic<bool> stop{false};
  std::atomic<long> pairs{0};
  std::thread other([&] {
    while (!stop.load()) {
      void* p = nullptr;
      if (cudaMalloc(&p, 4096) != cudaSuccess || cudaFree(p) != cudaSuccess) return;
      pairs.fetch_add(1);
    }
  });
  // Until both sides have done plenty at the same time (or 20 s: then the ctest times out first).
  int loads = 0;
  for (int i = 0; i < 100000 && (loads < 50 || pairs.load() < 2000); ++i) {
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      std::fprintf(stderr, "dlopen: %s\n", dlerror());
      break;
    }
    ++loads;
    dlclose(lib);
  }
  stop.store(true);
  other.join();
  std::printf("loads=%d pairs=%ld\n", loads, pairs.load());
  return loads >= 50 && pairs.load() >= 2000 ? 0 : 1;
}

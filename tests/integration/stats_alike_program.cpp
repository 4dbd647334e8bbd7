// Call sites that read alike unless the report says where they are, and figures that tie, for
// stats_alike_test.sh:
//   two_sites     1 MiB device from each of two lines of one function, kept
//   caller_a/_b   each calls helper, which allocates 256 KiB from its one line, kept
//   held_1..held_4  1, 2, 3 and 4 MiB, all live at the process peak, all freed after it: live 0,
//                 bytes at the peak 1 to 4 MiB (a tie on live broken by the bytes at the peak)
//   tiny          4 KiB, freed at once before anything else: live 0, nothing at the peak
// --hold: then also same_line (128 KiB with cudaMalloc and 128 KiB with cudaMallocManaged on one
// line, kept: two stacks that differ only in the runtime's frames), prints "ready" after all of it
// and waits to be killed.
#include <cuda_runtime.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace {

[[gnu::noinline]] void two_sites(void** a, void** b) {
  cudaMalloc(a, 1 << 20);  // mark: two_sites first
  cudaMalloc(b, 1 << 20);  // mark: two_sites second
}
[[gnu::noinline]] void* helper() {
  void* p = nullptr;
  cudaMalloc(&p, 256 << 10);  // mark: helper's call
  return p;
}
[[gnu::noinline]] void* caller_a() { return helper(); }
[[gnu::noinline]] void* caller_b() { return helper(); }
[[gnu::noinline]] void tiny() {
  void* p = nullptr;
  cudaMalloc(&p, 4 << 10);
  cudaFree(p);
}
[[gnu::noinline]] void* held_1() {
  void* p = nullptr;
  cudaMalloc(&p, 1 << 20);
  return p;
}
[[gnu::noinline]] void* held_2() {
  void* p = nullptr;
  cudaMalloc(&p, 2 << 20);
  return p;
}
[[gnu::noinline]] void* held_3() {
  void* p = nullptr;
  cudaMalloc(&p, 3 << 20);
  return p;
}
[[gnu::noinline]] void* held_4() {
  void* p = nullptr;
  cudaMalloc(&p, 4 << 20);
  return p;
}

[[gnu::noinline]] bool same_line(void** a, void** b) {
  return cudaMalloc(a, 128 << 10) == cudaSuccess && cudaMallocManaged(b, 128 << 10) == cudaSuccess;  // mark: same line
}

}  // namespace

int main(int argc, char** argv) {
  const bool hold = argc > 1 && std::strcmp(argv[1], "--hold") == 0;
  tiny();
  void* held[] = {held_1(), held_2(), held_3(), held_4()};
  for (void* p : held)
    if (p == nullptr || cudaFree(p) != cudaSuccess) return 2;
  void *a = nullptr, *b = nullptr;
  two_sites(&a, &b);
  if (a == nullptr || b == nullptr || caller_a() == nullptr || caller_b() == nullptr) return 2;
  void *c = nullptr, *d = nullptr;
  if (hold && !same_line(&c, &d)) return 2;
  std::printf("ready\n");
  std::fflush(stdout);
  if (hold)
    for (;;) pause();
  return 0;
}

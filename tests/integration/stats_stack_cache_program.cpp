// The recorder's per-thread stack cache against stacks that break its premises
// (stats_stack_cache_test.sh):
//   alloca N     N allocations alternating between via_p and via_q, reached from one call
//                instruction; alloca in reach() puts both at the same stack pointer, with reach()'s
//                return address in different places, so a cached via_p stack still "validates" for
//                via_q (the old slot holds via_p's return address). The report must tell them apart.
//   coroutine    allocations on a coroutine stack (makecontext), which is then partly unmapped,
//                and allocations at the very same stack pointer on what is left of it: reading the
//                first stack's remembered slots would fault. The program must not crash.
#include <alloca.h>
#include <cuda_runtime.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

bool g_allocate = true;
std::uintptr_t g_leaf_frame = 0;  // where leaf's frame was, last time

[[gnu::noinline]] int leaf() {
  g_leaf_frame = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
  void* p = nullptr;
  if (g_allocate && (cudaMalloc(&p, 1 << 20) != cudaSuccess || cudaFree(p) != cudaSuccess)) return 1;
  asm volatile("" ::: "memory");
  return 0;
}
std::size_t g_pad = 4096;  // reach()'s alloca under via_p, set so that leaf's frame is where via_q's is

[[gnu::noinline]] int reach(std::size_t pad) {
  volatile char* room = static_cast<char*>(alloca(pad + 16));
  room[0] = 1;
  const int r = leaf();
  asm volatile("" ::: "memory");
  return r;
}

[[gnu::noinline]] int via_p() {  // small frame, reach() pads it with alloca
  const int r = reach(g_pad);
  asm volatile("" ::: "memory");
  return r;
}

[[gnu::noinline]] int via_q() {  // the same 4 KiB as a frame of its own, left unwritten
  char room[4096 + 16];
  asm volatile("" : : "r"(room) : "memory");
  const int r = reach(0);
  asm volatile("" ::: "memory");
  return r;
}

int (*volatile g_paths[2])() = {via_p, via_q};

[[gnu::noinline]] int alternate(long n) {
  for (long i = 0; i < n; ++i)
    if (g_paths[i % 2]() != 0) return 1;
  return 0;
}

// Both paths must reach leaf() at one stack address: measure each without allocating, pad via_p.
int alloca_paths(long n) {
  g_allocate = false;
  alternate(1);
  const std::uintptr_t p = g_leaf_frame;
  alternate(2);
  const std::uintptr_t q = g_leaf_frame;
  g_pad += p - q;  // (p - q) is a multiple of 16: alloca rounds to it
  alternate(2);
  if (g_leaf_frame != q || g_pad > 16384) return 3;
  g_allocate = true;
  return alternate(n);
}

// --- coroutine ---
ucontext_t g_main, g_co;
std::uintptr_t g_h_frame = 0;  // h1's frame address, as seen in the first coroutine
int g_rc = 0;

[[gnu::noinline]] int h3() { return g_allocate ? leaf() : 0; }
[[gnu::noinline]] int h2() {
  const int r = h3();
  asm volatile("" ::: "memory");
  return r;
}
[[gnu::noinline]] int h1() {
  g_h_frame = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
  int r = 0;
  for (int i = 0; i < 4 && r == 0; ++i) r = h2();  // cached from the second on
  asm volatile("" ::: "memory");
  return r;
}
[[gnu::noinline]] void deep() {  // 160 KiB of frame above h1: its outer slots are far up
  char room[160 << 10];
  asm volatile("" : : "r"(room) : "memory");
  g_rc |= h1();
  asm volatile("" ::: "memory");
}
void entry_deep() { deep(); }
[[gnu::noinline]] void shallow() {
  g_rc |= h1();
  asm volatile("" ::: "memory");
}
void entry_shallow() { shallow(); }

void run_on(void* lo, std::size_t size, void (*fn)()) {
  getcontext(&g_co);
  g_co.uc_stack.ss_sp = lo;
  g_co.uc_stack.ss_size = size;
  g_co.uc_link = &g_main;
  makecontext(&g_co, fn, 0);
  swapcontext(&g_main, &g_co);
}

int coroutine() {
  constexpr std::size_t k_size = 256 << 10;
  void* mem = mmap(nullptr, k_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 2;
  auto* base = static_cast<char*>(mem);
  // Where does h1's frame sit below the top of a stack when reached through shallow()?
  g_allocate = false;
  run_on(base, k_size, entry_shallow);
  const std::uintptr_t below_top = reinterpret_cast<std::uintptr_t>(base + k_size) - g_h_frame;
  g_allocate = true;
  run_on(base, k_size, entry_deep);  // cached with slots up to the top of the mapping
  const std::uintptr_t target = g_h_frame;
  if (target - reinterpret_cast<std::uintptr_t>(base) + below_top > k_size / 2) return 3;
  if (munmap(base + k_size / 2, k_size / 2) != 0) return 2;  // deep()'s upper part goes away
  // The same h1 frame address again, on the lower half only.
  run_on(base, target + below_top - reinterpret_cast<std::uintptr_t>(base), entry_shallow);
  if (g_h_frame != target) {
    std::fprintf(stderr, "coroutine: h1 at %#lx, wanted %#lx\n", static_cast<unsigned long>(g_h_frame),
                 static_cast<unsigned long>(target));
    return 4;
  }
  munmap(base, k_size / 2);
  return g_rc;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[1], "alloca") == 0) {
    if (cudaFree(nullptr) != cudaSuccess || alloca_paths(std::atol(argv[2])) != 0) return 1;
  } else if (argc == 2 && std::strcmp(argv[1], "coroutine") == 0) {
    if (cudaFree(nullptr) != cudaSuccess) return 1;
    if (const int rc = coroutine(); rc != 0) return rc;
  } else {
    std::fprintf(stderr, "usage: %s alloca N | coroutine\n", argv[0]);
    return 2;
  }
  std::printf("done\n");
  return 0;
}

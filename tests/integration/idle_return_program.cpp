// A CUDA program for the idle-memory tests (idle_return_test.sh, issue #17), run under the shim on
// the simulator with a node-wide device (POOLSHIM_SIM_NODE_FILE). One role per run:
//   hold --blocks N --mib M [--keep K] [--pinned-mib P [--pinned-keep]] --ready FILE [--go FILE] [--watch]
//        allocates N blocks of M MiB (each filled with its own byte), frees all but the first K
//        (their memory is then the pool's idle cache) and P MiB of pinned memory likewise (kept live
//        to the end with --pinned-keep); writes
//        "ready=1" to FILE, then waits for FILE --go; --watch notes (CLOCK_MONOTONIC, ms) when its
//        pool's reserved bytes first fell ("returned_ms=T"). At the end the kept blocks are read back
//        and checked: a block in use is never taken, whatever was given back meanwhile.
//   need --mib M       one cudaMalloc of M MiB: prints "start_ms=T0 served_ms=T1 result=NAME".
//   timeout --mib M    allocates and frees M MiB with one more block kept live, then waits for the
//                      pool's reserved bytes to fall unasked (POOLSHIM_IDLE_RELEASE_MS): prints
//                      "released_after_ms=T kept_reserved=B", the live block checked.
//   api                poolshim_trim, poolshim_release_all and poolshim_preallocate (through dlsym, as
//                      a program without the shim's headers at link time would).
// Exit 0 when every check passed.
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "shim_probe.h"

namespace {

constexpr std::size_t k_mib = std::size_t{1} << 20;
int g_errors = 0;

void fail(const char* what) {
  ++g_errors;
  std::fprintf(stderr, "idle_return: FAIL: %s\n", what);
}

bool ok(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return true;
  ++g_errors;
  std::fprintf(stderr, "idle_return: %s: %s\n", what, cudaGetErrorName(e));
  return false;
}

long long now_ms() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<long long>(t.tv_sec) * 1000 + t.tv_nsec / 1000000;
}

bool exists(const std::string& f) { return !f.empty() && access(f.c_str(), F_OK) == 0; }

void write_file(const std::string& f, const std::string& text) {
  if (FILE* o = std::fopen((f + ".tmp").c_str(), "w")) {
    std::fputs(text.c_str(), o);
    std::fclose(o);
    std::rename((f + ".tmp").c_str(), f.c_str());
  }
}

std::uint64_t reserved() { return shim_probe::counters().pool_bytes_reserved; }

void fill(void* d, std::size_t bytes, unsigned char v) { ok(cudaMemset(d, v, bytes), "cudaMemset"); }

// Every 4 KiB of the block still holds its byte.
bool intact(void* d, std::size_t bytes, unsigned char v) {
  std::vector<unsigned char> h(bytes);
  if (!ok(cudaMemcpy(h.data(), d, bytes, cudaMemcpyDeviceToHost), "D2H")) return false;
  for (std::size_t i = 0; i < bytes; i += 4096)
    if (h[i] != v) return false;
  return true;
}

struct args {
  std::string role, ready, go;
  int blocks = 4, keep = 0;
  std::size_t mib = 32, pinned_mib = 0;
  bool watch = false;
  bool pinned_keep = false;
};

int hold(const args& a) {
  const std::size_t bytes = a.mib * k_mib;
  std::vector<void*> v;
  for (int i = 0; i < a.blocks; ++i) {
    void* d = nullptr;
    if (!ok(cudaMalloc(&d, bytes), "cudaMalloc")) return 1;
    fill(d, bytes, static_cast<unsigned char>(i + 1));
    v.push_back(d);
  }
  for (int i = a.keep; i < a.blocks; ++i) ok(cudaFree(v[static_cast<std::size_t>(i)]), "cudaFree");
  void* pinned = nullptr;
  if (a.pinned_mib != 0 && ok(cudaMallocHost(&pinned, a.pinned_mib * k_mib), "cudaMallocHost") && !a.pinned_keep) {
    ok(cudaFreeHost(pinned), "cudaFreeHost");
    pinned = nullptr;
  }
  const std::uint64_t before = reserved();
  char line[160];
  std::snprintf(line, sizeof line, "ready=1 pid=%d reserved=%llu\n", static_cast<int>(getpid()),
                static_cast<unsigned long long>(before));
  write_file(a.ready, line);
  long long returned_ms = -1;
  for (long long until = now_ms() + 30000; now_ms() < until && !exists(a.go);) {
    if (a.watch && returned_ms < 0 && reserved() < before) returned_ms = now_ms();
    usleep(1000);
  }
  for (int i = 0; i < a.keep; ++i)
    if (!intact(v[static_cast<std::size_t>(i)], bytes, static_cast<unsigned char>(i + 1)))
      fail("a kept block lost its bytes");
  const std::uint64_t after = reserved();
  if (after < static_cast<std::uint64_t>(a.keep) * bytes) fail("the pool holds less than its live blocks");
  std::printf("hold: reserved_before=%llu reserved_after=%llu returned_ms=%lld errors=%d\n",
              static_cast<unsigned long long>(before), static_cast<unsigned long long>(after), returned_ms, g_errors);
  for (int i = 0; i < a.keep; ++i) ok(cudaFree(v[static_cast<std::size_t>(i)]), "cudaFree");
  if (pinned != nullptr) ok(cudaFreeHost(pinned), "cudaFreeHost");
  return g_errors == 0 ? 0 : 1;
}

int need(const args& a) {
  void* d = nullptr;
  ok(cudaFree(nullptr), "cudaFree(0)");  // start-up (context, daemon connection) before the clock
  const long long t0 = now_ms();
  const cudaError_t e = cudaMalloc(&d, a.mib * k_mib);
  const long long t1 = now_ms();
  std::printf("need: start_ms=%lld served_ms=%lld result=%s\n", t0, t1, cudaGetErrorName(e));
  if (e != cudaSuccess) return 1;
  fill(d, a.mib * k_mib, 0x5a);
  const bool good = intact(d, a.mib * k_mib, 0x5a);
  ok(cudaFree(d), "cudaFree");
  return good && g_errors == 0 ? 0 : 1;
}

int unasked(const args& a) {
  void *live = nullptr, *idle = nullptr, *pinned = nullptr;
  if (!ok(cudaMalloc(&live, 4 * k_mib), "cudaMalloc") || !ok(cudaMalloc(&idle, a.mib * k_mib), "cudaMalloc") ||
      !ok(cudaMallocHost(&pinned, k_mib), "cudaMallocHost"))
    return 1;
  fill(live, 4 * k_mib, 0x33);
  ok(cudaFree(idle), "cudaFree");
  ok(cudaFreeHost(pinned), "cudaFreeHost");
  const std::uint64_t before = reserved();
  if (shim_probe::counters().host_pool_bytes_reserved == 0) fail("no pinned slab held after the free");
  const long long t0 = now_ms();
  long long t1 = -1, t_pinned = -1;
  while (now_ms() - t0 < 10000 && (t1 < 0 || t_pinned < 0)) {
    if (t1 < 0 && reserved() < before) t1 = now_ms();
    if (t_pinned < 0 && shim_probe::counters().host_pool_bytes_reserved == 0) t_pinned = now_ms();
    usleep(1000);
  }
  if (t_pinned < 0) fail("the idle pinned slab was not released unasked within 10 s");
  std::printf("timeout: pinned_released_after_ms=%lld\n", t_pinned < 0 ? -1 : t_pinned - t0);
  if (t1 < 0) fail("the idle memory was not released unasked within 10 s");
  if (!intact(live, 4 * k_mib, 0x33)) fail("the live block lost its bytes");
  const std::uint64_t kept = reserved();
  if (kept < 4 * k_mib) fail("the live block's segment was released");
  std::printf("timeout: released_after_ms=%lld reserved_before=%llu kept_reserved=%llu errors=%d\n",
              t1 < 0 ? -1 : t1 - t0, static_cast<unsigned long long>(before), static_cast<unsigned long long>(kept),
              g_errors);
  ok(cudaFree(live), "cudaFree");
  return g_errors == 0 ? 0 : 1;
}

template <class F>
F api_fn(const char* name) {
  auto f = reinterpret_cast<F>(dlsym(RTLD_DEFAULT, name));
  if (f == nullptr) fail(name);
  return f;
}

int api() {
  auto trim = api_fn<poolshim_trim_fn>("poolshim_trim");
  auto release_all = api_fn<poolshim_release_all_fn>("poolshim_release_all");
  auto preallocate = api_fn<poolshim_preallocate_fn>("poolshim_preallocate");
  if (trim == nullptr || release_all == nullptr || preallocate == nullptr) return 1;
  void *live = nullptr, *a = nullptr, *b = nullptr;
  ok(cudaMalloc(&live, 2 * k_mib), "cudaMalloc");
  fill(live, 2 * k_mib, 0x77);
  ok(cudaMalloc(&a, 16 * k_mib), "cudaMalloc");
  ok(cudaMalloc(&b, 32 * k_mib), "cudaMalloc");
  ok(cudaFree(a), "cudaFree");
  ok(cudaFree(b), "cudaFree");
  const std::uint64_t r0 = reserved();
  const std::size_t t = trim(1);
  std::printf("api: reserved=%llu trim(1)=%zu\n", static_cast<unsigned long long>(r0), t);
  if (t < 16 * k_mib) fail("poolshim_trim(1) gave back less than one idle segment");
  if (reserved() != r0 - t) fail("poolshim_trim's bytes are not what the pool let go");
  const std::size_t all = release_all();
  std::printf("api: release_all=%zu reserved=%llu\n", all, static_cast<unsigned long long>(reserved()));
  if (t + all != 48 * k_mib) fail("trim and release_all together should give back the two idle blocks");
  if (!intact(live, 2 * k_mib, 0x77)) fail("the live block lost its bytes");
  if (release_all() != 0) fail("a second release_all found idle memory");
  const std::uint64_t r1 = reserved();
  const std::size_t pre = preallocate(0, 8 * k_mib);
  std::printf("api: preallocate(0, 8 MiB)=%zu reserved=%llu\n", pre, static_cast<unsigned long long>(reserved()));
  if (pre != 8 * k_mib || reserved() != r1 + pre) fail("poolshim_preallocate");
  if (preallocate(99, k_mib) != 0) fail("poolshim_preallocate of a device that does not exist");
  // A trim covered by the pool's other idle memory leaves the preallocation kept (below).
  void* c = nullptr;
  ok(cudaMalloc(&c, 16 * k_mib), "cudaMalloc");
  ok(cudaFree(c), "cudaFree");
  const std::size_t t2 = trim(1);
  std::printf("api: trim(1) beside a preallocation=%zu\n", t2);
  if (t2 != 16 * k_mib) fail("poolshim_trim(1) should give back the idle 16 MiB block");
  // The idle release (POOLSHIM_IDLE_RELEASE_MS, short here) keeps what was preallocated.
  usleep(600 * 1000);
  std::printf("api: after idle release reserved=%llu\n", static_cast<unsigned long long>(reserved()));
  if (reserved() < r1 + pre) fail("the idle release took preallocated memory");
  const std::uint64_t calls = shim_probe::counters().pool_hits;
  void* s = nullptr;
  ok(cudaMalloc(&s, 256 * 1024), "cudaMalloc");
  if (shim_probe::counters().pool_hits != calls + 1) fail("a small request missed the preallocated segments");
  ok(cudaFree(s), "cudaFree");
  if (release_all() < pre) fail("release_all keeps preallocated memory");
  ok(cudaFree(live), "cudaFree");
  std::printf("api: errors=%d\n", g_errors);
  return g_errors == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  args a;
  if (argc > 1) a.role = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : ""; };
    if (k == "--blocks")
      a.blocks = std::atoi(next());
    else if (k == "--mib")
      a.mib = std::strtoull(next(), nullptr, 10);
    else if (k == "--keep")
      a.keep = std::atoi(next());
    else if (k == "--pinned-mib")
      a.pinned_mib = std::strtoull(next(), nullptr, 10);
    else if (k == "--ready")
      a.ready = next();
    else if (k == "--go")
      a.go = next();
    else if (k == "--watch")
      a.watch = true;
    else if (k == "--pinned-keep")
      a.pinned_keep = true;
  }
  if (shim_probe::expected() == shim_probe::expect::shim && shim_probe::counters_fn() == nullptr) {
    std::fprintf(stderr, "idle_return: the shim is not loaded\n");
    return 1;
  }
  if (a.role == "hold") return hold(a);
  if (a.role == "need") return need(a);
  if (a.role == "timeout") return unasked(a);
  if (a.role == "api") return api();
  std::fprintf(stderr, "usage: idle_return_program hold|need|timeout|api [options]\n");
  return 2;
}

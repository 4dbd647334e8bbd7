// A CUDA program for the daemon tests (daemon_test.sh), run under the shim with POOLSHIM_SOCKET
// pointing at a test daemon. It allocates pinned buffers big enough that each takes a slab of its
// own, fills each with its own pattern, copies it to the device and back into a second pinned
// buffer, and checks every byte — before and after whatever the test does to the daemon.
//   --buffers N      pinned buffers of 40 MiB (default 2)
//   --ready FILE     write "leased_bytes=B pid=P" to FILE once the buffers are filled and checked
//   --go FILE        then wait until FILE exists before freeing
//   --hold           then wait to be killed
//   --grow SECONDS   keep adding one buffer every 250 ms for SECONDS, checking all of them each time
//   --fork-child     fork a child that outlives this process and checks its inherited mapping
//   --idle-poll S    after freeing, keep making small pinned allocations for S seconds (a process
//                    whose pinned cache sits idle while the daemon may ask for it back)
// Exit 0 when every check passed; prints "corruptions=N" and the shim's daemon counters.
#include <cuda_runtime.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "shim_probe.h"

namespace {

constexpr std::size_t k_bytes = std::size_t{40} << 20;

struct buffer {
  unsigned char* host = nullptr;
  unsigned char pattern = 0;
};

int g_errors = 0;

bool ok(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return true;
  ++g_errors;
  std::fprintf(stderr, "daemon_client: %s: %s\n", what, cudaGetErrorName(e));
  return false;
}

// Device round trip through a scratch pinned buffer; counts bytes that differ from the pattern.
long long check(const buffer& b, void* device, unsigned char* scratch) {
  if (!ok(cudaMemcpy(device, b.host, k_bytes, cudaMemcpyHostToDevice), "H2D") ||
      !ok(cudaMemcpy(scratch, device, k_bytes, cudaMemcpyDeviceToHost), "D2H"))
    return 1;
  long long bad = 0;
  for (std::size_t i = 0; i < k_bytes; i += 4096) bad += scratch[i] != b.pattern || b.host[i] != b.pattern;
  return bad;
}

bool add_buffer(std::vector<buffer>& v) {
  buffer b;
  if (!ok(cudaHostAlloc(reinterpret_cast<void**>(&b.host), k_bytes, cudaHostAllocDefault), "cudaHostAlloc"))
    return false;
  b.pattern = static_cast<unsigned char>(0x11 + 13 * v.size() + getpid() % 7);
  std::memset(b.host, b.pattern, k_bytes);
  v.push_back(b);
  return true;
}

bool file_exists(const std::string& f) {
  struct stat st {};
  return stat(f.c_str(), &st) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  int buffers = 2;
  double grow = 0, idle_poll = 0;
  bool hold = false, fork_child = false;
  std::string ready, go;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--buffers" && i + 1 < argc)
      buffers = std::atoi(argv[++i]);
    else if (a == "--ready" && i + 1 < argc)
      ready = argv[++i];
    else if (a == "--go" && i + 1 < argc)
      go = argv[++i];
    else if (a == "--grow" && i + 1 < argc)
      grow = std::atof(argv[++i]);
    else if (a == "--idle-poll" && i + 1 < argc)
      idle_poll = std::atof(argv[++i]);
    else if (a == "--hold")
      hold = true;
    else if (a == "--fork-child")
      fork_child = true;
    else {
      std::fprintf(stderr, "usage: %s [--buffers N] [--ready FILE] [--go FILE] [--hold] [--grow S] [--fork-child]\n",
                   argv[0]);
      return 2;
    }
  }
  shim_probe::check_presence();
  void* device = nullptr;
  unsigned char* scratch = nullptr;
  if (!ok(cudaMalloc(&device, k_bytes), "cudaMalloc") ||
      !ok(cudaHostAlloc(reinterpret_cast<void**>(&scratch), k_bytes, cudaHostAllocDefault), "scratch"))
    return 2;
  std::vector<buffer> v;
  long long corruptions = 0;
  for (int i = 0; i < buffers; ++i)
    if (!add_buffer(v)) return 2;
  const auto start = std::chrono::steady_clock::now();
  do {
    for (const buffer& b : v) corruptions += check(b, device, scratch);
    if (grow > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      if (!add_buffer(v)) return 2;
    }
  } while (grow > 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < grow);
  for (const buffer& b : v) corruptions += check(b, device, scratch);

  if (fork_child) {
    // The child keeps the first buffer's mapping; it checks it after this process is gone.
    int to_child[2];
    if (pipe(to_child) != 0) return 2;
    const pid_t child = fork();
    if (child == 0) {
      close(to_child[1]);
      char c;
      while (read(to_child[0], &c, 1) > 0) {
      }                                                             // EOF: the parent has exited
      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the daemon reclaims meanwhile
      long long bad = 0;
      for (std::size_t i = 0; i < k_bytes; i += 4096) bad += v[0].host[i] != v[0].pattern;
      std::printf("child mapping %s\n", bad == 0 ? "intact" : "CORRUPT");
      std::fflush(stdout);
      _exit(bad == 0 ? 0 : 1);
    }
    close(to_child[0]);
  }

  const poolshim_counters c = shim_probe::counters();
  if (!ready.empty()) {
    const std::string tmp = ready + ".tmp";
    if (FILE* f = std::fopen(tmp.c_str(), "w")) {
      std::fprintf(f, "leased_bytes=%llu pid=%d\n",
                   static_cast<unsigned long long>((c.daemon_slabs_leased - c.daemon_slabs_returned) * (64ull << 20)),
                   getpid());
      std::fclose(f);
      std::rename(tmp.c_str(), ready.c_str());
    }
  }
  if (hold)
    for (;;) pause();
  while (!go.empty() && !file_exists(go)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  for (const buffer& b : v) corruptions += check(b, device, scratch);
  for (const buffer& b : v) ok(cudaFreeHost(b.host), "cudaFreeHost");
  ok(cudaFreeHost(scratch), "cudaFreeHost scratch");
  ok(cudaFree(device), "cudaFree");
  for (const auto t0 = std::chrono::steady_clock::now();
       std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < idle_poll;) {
    void* small = nullptr;
    if (ok(cudaHostAlloc(&small, 4096, cudaHostAllocDefault), "small cudaHostAlloc")) ok(cudaFreeHost(small), "free");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const poolshim_counters e = shim_probe::counters();
  std::printf(
      "corruptions=%lld buffers=%zu daemon_slabs=%llu returned=%llu fallbacks=%llu redeclared=%llu "
      "connects=%llu refusals=%llu device_segments=%llu\n",
      corruptions, v.size(), static_cast<unsigned long long>(e.daemon_slabs_leased),
      static_cast<unsigned long long>(e.daemon_slabs_returned), static_cast<unsigned long long>(e.daemon_fallbacks),
      static_cast<unsigned long long>(e.daemon_redeclared), static_cast<unsigned long long>(e.daemon_connects),
      static_cast<unsigned long long>(e.daemon_refusals), static_cast<unsigned long long>(e.daemon_device_leases));
  return corruptions == 0 && g_errors == 0 && shim_probe::finish("daemon_client") == 0 ? 0 : 1;
}

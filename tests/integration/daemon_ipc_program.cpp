// poolshim IPC handles between processes (daemon_test.sh ipc). Roles, meeting in DIR:
//   export DIR   a 4 KiB block (a small pooled block under the shim) filled with 0x3c; its handle
//                goes to DIR/handle; once the importer has written 0x7e into the second half, the
//                exporter checks both halves, frees the block and says so (DIR/freed)
//   import DIR   opens the handle, checks the first half, writes the second, closes; then, once
//                the block was freed, tries the handle again (must fail cleanly)
//   plain DIR    opens the handle without the shim's help (run without LD_PRELOAD): must fail
// Prints what it saw; exit 0 when every check holds.
#include <cuda_runtime.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t k_bytes = 4096;

void wait_for(const std::string& f) {
  struct stat st {};
  for (int i = 0; i < 1500 && stat(f.c_str(), &st) != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
}
void touch(const std::string& f) { std::ofstream(f).put('\n'); }

bool read_handle(const std::string& dir, cudaIpcMemHandle_t* h) {
  wait_for(dir + "/handle");
  std::ifstream in(dir + "/handle", std::ios::binary);
  return static_cast<bool>(in.read(reinterpret_cast<char*>(h), sizeof *h));
}

int check(bool ok, const char* what) {
  std::printf("%s: %s\n", what, ok ? "yes" : "NO");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s export|import|plain DIR\n", argv[0]);
    return 2;
  }
  const std::string role = argv[1], dir = argv[2];
  int failures = 0;
  if (role == "export") {
    void* p = nullptr;
    if (cudaMalloc(&p, k_bytes) != cudaSuccess || cudaMemset(p, 0x3c, k_bytes) != cudaSuccess) return 2;
    cudaIpcMemHandle_t h{};
    const cudaError_t e = cudaIpcGetMemHandle(&h, p);
    std::printf("exporter: cudaIpcGetMemHandle %d (%s)\n", e, cudaGetErrorName(e));
    if (e != cudaSuccess) return 1;
    {
      std::ofstream out(dir + "/handle.tmp", std::ios::binary);
      out.write(reinterpret_cast<const char*>(&h), sizeof h);
    }
    std::rename((dir + "/handle.tmp").c_str(), (dir + "/handle").c_str());
    wait_for(dir + "/imported");
    std::vector<unsigned char> got(k_bytes);
    if (cudaMemcpy(got.data(), p, k_bytes, cudaMemcpyDeviceToHost) != cudaSuccess) return 2;
    bool first = true, second = true;
    for (std::size_t i = 0; i < k_bytes; ++i)
      (i < k_bytes / 2 ? first : second) &= got[i] == (i < k_bytes / 2 ? 0x3c : 0x7e);
    failures += check(first, "exporter: its own half intact");
    failures += check(second, "exporter: sees the importer's half");
    failures += check(cudaFree(p) == cudaSuccess, "exporter: freed the block");
    touch(dir + "/freed");
    wait_for(dir + "/late-checked");
    return failures;
  }
  cudaIpcMemHandle_t h{};
  if (!read_handle(dir, &h)) return 2;
  if (role == "plain") {
    void* q = nullptr;
    const cudaError_t e = cudaIpcOpenMemHandle(&q, h, cudaIpcMemLazyEnablePeerAccess);
    std::printf("plain importer: cudaIpcOpenMemHandle %d (%s)\n", e, cudaGetErrorName(e));
    return check(e != cudaSuccess && q == nullptr, "plain importer: refused cleanly");
  }
  if (role != "import") return 2;
  void* q = nullptr;
  const cudaError_t e = cudaIpcOpenMemHandle(&q, h, cudaIpcMemLazyEnablePeerAccess);
  std::printf("importer: cudaIpcOpenMemHandle %d (%s)\n", e, cudaGetErrorName(e));
  if (e != cudaSuccess) return 1;
  std::vector<unsigned char> got(k_bytes);
  if (cudaMemcpy(got.data(), q, k_bytes, cudaMemcpyDeviceToHost) != cudaSuccess) return 2;
  bool same = true;
  for (std::size_t i = 0; i < k_bytes; ++i) same &= got[i] == 0x3c;
  failures += check(same, "importer: sees the exporter's bytes");
  failures += check(cudaMemset(static_cast<char*>(q) + k_bytes / 2, 0x7e, k_bytes / 2) == cudaSuccess &&
                        cudaDeviceSynchronize() == cudaSuccess,
                    "importer: wrote its half");
  failures += check(cudaIpcCloseMemHandle(q) == cudaSuccess, "importer: closed the handle");
  touch(dir + "/imported");
  wait_for(dir + "/freed");
  void* late = nullptr;
  const cudaError_t l = cudaIpcOpenMemHandle(&late, h, cudaIpcMemLazyEnablePeerAccess);
  std::printf("importer: the handle of the freed block: %d (%s)\n", l, cudaGetErrorName(l));
  failures += check(l != cudaSuccess, "importer: a freed block's handle no longer opens");
  touch(dir + "/late-checked");
  return failures;
}

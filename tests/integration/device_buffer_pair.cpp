// Device named buffers end to end (issue #14), through libpoolshim_buffers with no shim, on the
// simulator here and unchanged on a GPU (gpu-check.sh): the daemon allocates the memory and holds
// it; a second process opens it by name and reads what the first wrote, ordered by the buffer's
// interprocess event (record in the writer, wait in the reader), with no device-wide
// synchronisation. Modes:
//   check            bad input, create, a reader process ordered after a held-back write, open_on
//                    another device, list, record/wait on a host buffer, close and unlink
//   reader NAME FD   (started by check) opens NAME, waits on its event, reads it back; tells the
//                    writer through FD when its wait is queued
//   hold NAME        creates a device buffer NAME, unlinks the name, says "ready", sleeps (a
//                    holder for buffers_test.sh to kill -9)
//   roundtrip N      times create, open, close, unlink, close of a 4 KiB device buffer, N rounds
//   ipc-open B64 BYTES write|check VALUE
//                    a Redis-mirrored handle opened with plain cudaIpcOpenMemHandle
//   channel          a device buffer sent over a channel by reference (issue #15): a reader
//                    process takes it and reads what the writer wrote, ordered by the event
//   channel-reader NAME FD
//                    (started by channel) the reader of that channel
// Prints "device_buffer_pair: OK" or FAIL lines; exit 0 only when everything held.
#include <cuda_runtime_api.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "poolshim/buffers.h"
#include "poolshim/channel.h"

#define POOLSHIM_PAIR_PROGRAM "device_buffer_pair"
#include "pair_checks.h"

extern char** environ;

namespace {

using pair_checks::failures;

constexpr std::uint64_t k_rows = 256, k_cols = 1024;  // float32: 1 MiB
constexpr std::size_t k_bytes = k_rows * k_cols * sizeof(float);

float pattern(std::size_t i) { return static_cast<float>(i % 977) * 0.5f + 1.0f; }

// The writer's stream is held here until the reader says its wait is queued: the read must then
// come after the write although it was queued while the write could not run.
struct gate_arg {
  int fd;
};
void CUDART_CB hold_until_reader(void* p) {
  auto* g = static_cast<gate_arg*>(p);
  pollfd f{g->fd, POLLIN, 0};
  char c = 0;
  if (poll(&f, 1, 20000) == 1) (void)!read(g->fd, &c, 1);
}

pid_t spawn_self(const std::vector<std::string>& args) {
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return -1;
  exe[n] = '\0';
  std::vector<char*> argv{exe};
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  return posix_spawn(&pid, exe, nullptr, nullptr, argv.data(), environ) == 0 ? pid : -1;
}

// The writer's side: the pattern copied into b on a stream held back behind a gate (the reader
// opens it through fds[1] once its wait is queued), then the buffer's event recorded there.
struct gated_write {
  int fds[2] = {-1, -1};
  float* pinned = nullptr;
  cudaStream_t s = nullptr;
  gate_arg g{-1};
  void start(poolshim_buffer* b) {
    EXPECT(pipe(fds) == 0, "pipe");
    g.fd = fds[0];
    std::vector<float> src(k_rows * k_cols);
    for (std::size_t i = 0; i < src.size(); ++i) src[i] = pattern(i);
    cudaMallocHost(reinterpret_cast<void**>(&pinned), k_bytes);
    std::memcpy(pinned, src.data(), k_bytes);
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    EXPECT(cudaLaunchHostFunc(s, hold_until_reader, &g) == cudaSuccess, "the gate");
    EXPECT(cudaMemcpyAsync(poolshim_buffer_data(b), pinned, k_bytes, cudaMemcpyHostToDevice, s) == cudaSuccess,
           "the write");
    EXPECT(poolshim_buffer_record(b, s) == POOLSHIM_OK, "record");
  }
  // Waits for the reader process, then opens the gate whatever it did and lets the write finish.
  void finish(pid_t reader) {
    int st = 0;
    if (reader > 0) waitpid(reader, &st, 0);
    EXPECT(reader > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the reader (its FAIL lines above)");
    (void)!write(fds[1], "x", 1);
    EXPECT(cudaStreamSynchronize(s) == cudaSuccess, "the writer's stream");
    close(fds[0]);
    close(fds[1]);
  }
};

// The reader's side of a device buffer: its description, a device pointer here, its bytes as the
// writer wrote them before its record (the writer's gate still shut when the copy is queued).
void read_device_buffer(poolshim_buffer* b, int tell_writer) {
  poolshim_buffer_info info{};
  EXPECT(poolshim_buffer_get_info(b, &info) == 0 && info.kind == POOLSHIM_BUFFER_DEVICE && info.device == 0 &&
             info.ndim == 2 && info.shape[0] == k_rows && info.shape[1] == k_cols &&
             std::strcmp(info.dtype, "f32") == 0 && info.bytes == k_bytes,
         "its description (kind %d device %d ndim %d dtype %s bytes %llu)", info.kind, info.device, info.ndim,
         info.dtype, static_cast<unsigned long long>(info.bytes));
  cudaPointerAttributes a{};
  EXPECT(cudaPointerGetAttributes(&a, poolshim_buffer_data(b)) == cudaSuccess && a.type == cudaMemoryTypeDevice,
         "the pointer is device memory here");
  cudaStream_t s = nullptr;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  float* host = nullptr;
  cudaMallocHost(reinterpret_cast<void**>(&host), k_bytes);
  EXPECT(poolshim_buffer_wait(b, s) == POOLSHIM_OK, "wait");
  cudaMemcpyAsync(host, poolshim_buffer_data(b), k_bytes, cudaMemcpyDeviceToHost, s);
  // The writer's gate is closed: its record cannot have completed, so this stream waits.
  EXPECT(cudaStreamQuery(s) == cudaErrorNotReady, "the reader's stream waits for the writer's record");
  (void)!write(tell_writer, "r", 1);
  EXPECT(cudaStreamSynchronize(s) == cudaSuccess, "the reader's stream");
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < k_rows * k_cols; ++i) wrong += host[i] != pattern(i);
  EXPECT(wrong == 0, "%zu of %zu floats differ from what the writer wrote before its record", wrong,
         static_cast<std::size_t>(k_rows * k_cols));
  cudaFreeHost(host);
  cudaStreamDestroy(s);
}

int reader(const char* name, int tell_writer) {
  poolshim_buffer* b = nullptr;
  EXPECT(poolshim_buffer_open(name, 0, &b) == POOLSHIM_OK, "open '%s'", name);
  if (b == nullptr) return 1;
  read_device_buffer(b, tell_writer);
  EXPECT(poolshim_buffer_close(b) == POOLSHIM_OK, "close in the reader");
  return failures == 0 ? 0 : 1;
}

int channel_reader(const char* name, int tell_writer) {
  poolshim_channel* c = nullptr;
  EXPECT(poolshim_channel_open(name, 0, &c) == POOLSHIM_OK, "open channel '%s'", name);
  if (c == nullptr) return 1;
  const void* p = nullptr;
  std::size_t bytes = 0;
  EXPECT(poolshim_channel_recv(c, &p, &bytes, 20000) == POOLSHIM_OK && bytes == k_bytes, "recv (%zu bytes)", bytes);
  poolshim_buffer* b = nullptr;
  EXPECT(poolshim_channel_take_buffer(c, &b) == POOLSHIM_OK && b != nullptr && poolshim_buffer_data(b) == p,
         "take the device buffer sent by reference");
  EXPECT(poolshim_channel_release(c) == POOLSHIM_OK, "release the message (the buffer is ours now)");
  if (b != nullptr) {
    read_device_buffer(b, tell_writer);
    EXPECT(poolshim_buffer_close(b) == POOLSHIM_OK, "close in the reader");
  }
  poolshim_channel_close(c);
  return failures == 0 ? 0 : 1;
}

int channel() {
  poolshim_channel* w = nullptr;
  EXPECT(poolshim_channel_create("dev.ch", 64 * 1024, 1, 0, &w) == POOLSHIM_OK, "create a channel");
  if (w == nullptr) return 1;
  const std::uint64_t shape[2] = {k_rows, k_cols};
  poolshim_buffer* b = nullptr;
  EXPECT(poolshim_buffer_create("dev.ch.buf", "f32", 2, shape, POOLSHIM_BUFFER_DEVICE, 0, 0, &b) == POOLSHIM_OK,
         "a device buffer");
  if (b == nullptr) return 1;
  gated_write gw;
  gw.start(b);
  const pid_t r = spawn_self({"channel-reader", "dev.ch", std::to_string(gw.fds[1])});
  EXPECT(r > 0, "spawn the reader");
  // Sent once the reader is attached (a send with no reader is refused, nothing sent).
  int rc = POOLSHIM_ENOREADER;
  for (int i = 0; i < 1000 && rc == POOLSHIM_ENOREADER; ++i) {
    rc = poolshim_channel_send_buffer(w, b, nullptr, 0, 5000);
    if (rc == POOLSHIM_ENOREADER) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT(rc == POOLSHIM_OK, "send the device buffer by reference (%s)", poolshim_buffer_error());
  EXPECT(poolshim_buffer_unlink("dev.ch.buf", 0) == POOLSHIM_OK, "the sender unlinks its name at once");
  gw.finish(r);
  cudaStreamDestroy(gw.s);
  cudaFreeHost(gw.pinned);
  EXPECT(poolshim_buffer_close(b) == POOLSHIM_OK, "the sender's close");
  EXPECT(poolshim_channel_close(w) == POOLSHIM_OK, "the writer closes (its hold ends)");
  poolshim_buffer* gone = nullptr;
  EXPECT(poolshim_buffer_open("dev.ch.buf", 0, &gone) == POOLSHIM_ENOENT, "gone with its name and references");
  if (failures == 0) std::printf("device_buffer_pair: channel OK\n");
  return failures == 0 ? 0 : 1;
}

int hold(const char* name) {
  const std::uint64_t shape[1] = {std::uint64_t{64} << 20};
  poolshim_buffer* b = nullptr;
  if (poolshim_buffer_create(name, "u8", 1, shape, POOLSHIM_BUFFER_DEVICE, 0, 0, &b) != POOLSHIM_OK) {
    std::printf("device_buffer_pair: FAIL: hold: create '%s': %s\n", name, poolshim_buffer_error());
    return 1;
  }
  poolshim_buffer_unlink(name, 0);  // only this process's reference keeps it now
  std::printf("ready\n");
  std::fflush(stdout);
  for (;;) pause();
}

int check() {
  const std::uint64_t shape[2] = {k_rows, k_cols};
  poolshim_buffer* b = nullptr;
  // Bad input: each refused with its reason, nothing created.
  EXPECT(poolshim_buffer_create("dev.bad", "f32", 2, shape, POOLSHIM_BUFFER_DEVICE, -1, 0, &b) == POOLSHIM_EINVAL,
         "a device buffer without a device");
  EXPECT(poolshim_buffer_create("dev.bad", "f32", 2, shape, POOLSHIM_BUFFER_DEVICE, 99, 0, &b) == POOLSHIM_EINVAL &&
             std::strstr(poolshim_buffer_error(), "does not exist") != nullptr,
         "device 99");
  EXPECT(poolshim_buffer_create("dev.bad", "f32", 2, shape, POOLSHIM_BUFFER_HOST, 0, 0, &b) == POOLSHIM_EINVAL,
         "a host buffer naming a device");
  EXPECT(poolshim_buffer_open("dev.bad", 0, &b) == POOLSHIM_ENOENT, "nothing was created by the refusals");

  EXPECT(poolshim_buffer_create("dev.a", "f32", 2, shape, POOLSHIM_BUFFER_DEVICE, 0, 0, &b) == POOLSHIM_OK, "create");
  if (b == nullptr) return 1;
  poolshim_buffer* again = nullptr;
  EXPECT(poolshim_buffer_create("dev.a", "f32", 2, shape, POOLSHIM_BUFFER_DEVICE, 0, 0, &again) == POOLSHIM_EEXIST,
         "a second create of the name");
  cudaPointerAttributes a{};
  EXPECT(cudaPointerGetAttributes(&a, poolshim_buffer_data(b)) == cudaSuccess && a.type == cudaMemoryTypeDevice &&
             a.device == 0,
         "the creator's pointer is device memory on device 0");

  // The writer: its copy held back behind a gate the reader opens once its wait is queued.
  gated_write gw;
  gw.start(b);
  const pid_t r = spawn_self({"reader", "dev.a", std::to_string(gw.fds[1])});
  EXPECT(r > 0, "spawn the reader");
  gw.finish(r);

  // Open on another device: refused, with where it lives.
  poolshim_buffer* other = nullptr;
  EXPECT(poolshim_buffer_open_on("dev.a", 0, 1, &other) == POOLSHIM_EINVAL &&
             std::strstr(poolshim_buffer_error(), "lives on device 0") != nullptr,
         "open_on device 1");
  poolshim_buffer* same = nullptr;
  EXPECT(poolshim_buffer_open_on("dev.a", 0, 0, &same) == POOLSHIM_OK, "open_on device 0");
  if (same != nullptr) {
    EXPECT(poolshim_buffer_data(same) == poolshim_buffer_data(b), "a second open in one context is the same pointer");
    EXPECT(poolshim_buffer_close(same) == POOLSHIM_OK, "close the second reference");
  }
  // The creator's mapping survives the second reference's close (CUDA counts IPC opens).
  std::vector<float> back(k_rows * k_cols);
  EXPECT(cudaMemcpy(back.data(), poolshim_buffer_data(b), k_bytes, cudaMemcpyDeviceToHost) == cudaSuccess &&
             std::memcmp(back.data(), gw.pinned, k_bytes) == 0,
         "the creator reads its buffer after another reference closed");

  poolshim_buffer_entry entries[16];
  std::size_t n = 0;
  EXPECT(poolshim_buffer_list(entries, 16, &n) == POOLSHIM_OK, "list");
  bool listed = false;
  for (std::size_t i = 0; i < n && i < 16; ++i)
    listed |= std::strcmp(entries[i].name, "dev.a") == 0 && entries[i].kind == POOLSHIM_BUFFER_DEVICE &&
              entries[i].device == 0 && entries[i].bytes == k_bytes && entries[i].references == 1;
  EXPECT(listed, "dev.a listed as a device buffer on device 0 with one reference");

  // Host buffers have no event.
  poolshim_buffer* h = nullptr;
  const std::uint64_t small[1] = {4096};
  EXPECT(poolshim_buffer_create("host.a", "u8", 1, small, POOLSHIM_BUFFER_HOST, -1, 0, &h) == POOLSHIM_OK,
         "a host buffer");
  if (h != nullptr) {
    // This process uses CUDA: its host buffers are registered (page-locked, device-mapped).
    cudaPointerAttributes ha{};
    EXPECT(cudaPointerGetAttributes(&ha, poolshim_buffer_data(h)) == cudaSuccess && ha.type == cudaMemoryTypeHost &&
               ha.devicePointer != nullptr,
           "a host buffer is registered with CUDA in a process that uses it (type %d)", static_cast<int>(ha.type));
    std::vector<unsigned char> bytes_in(4096, 0x6b);
    EXPECT(cudaMemcpy(ha.devicePointer, bytes_in.data(), 4096, cudaMemcpyHostToDevice) == cudaSuccess &&
               std::memcmp(poolshim_buffer_data(h), bytes_in.data(), 4096) == 0,
           "a copy through its device mapping lands in the buffer");
    EXPECT(poolshim_buffer_record(h, gw.s) == POOLSHIM_EINVAL, "record on a host buffer");
    EXPECT(poolshim_buffer_open_on("host.a", 0, 0, &other) == POOLSHIM_EINVAL, "open_on a device: a host buffer");
    EXPECT(poolshim_buffer_close(h) == POOLSHIM_OK && poolshim_buffer_unlink("host.a", 0) == POOLSHIM_OK,
           "the host buffer goes");
  }
  cudaStreamDestroy(gw.s);
  cudaFreeHost(gw.pinned);
  EXPECT(poolshim_buffer_unlink("dev.a", 0) == POOLSHIM_OK, "unlink");
  EXPECT(poolshim_buffer_close(b) == POOLSHIM_OK, "close");
  EXPECT(poolshim_buffer_open("dev.a", 0, &b) == POOLSHIM_ENOENT, "gone after unlink and close");
  if (failures == 0) std::printf("device_buffer_pair: OK\n");
  return failures == 0 ? 0 : 1;
}

// A plain CUDA program's view of a handle from the Redis mirror (base64 of a cudaIpcMemHandle_t):
// opened with cudaIpcOpenMemHandle as PyTorch or CuPy would, no poolshim library involved; `write`
// fills the first `bytes` with `value`, `check` verifies them.
int ipc_open(const char* b64, std::size_t bytes, const char* what, int value) {
  auto sextet = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
  };
  std::vector<unsigned char> raw;
  unsigned acc = 0;
  int bits = 0;
  for (const char* p = b64; *p != '\0' && *p != '='; ++p) {
    const int v = sextet(*p);
    if (v < 0) break;
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      raw.push_back(static_cast<unsigned char>((acc >> bits) & 0xff));
    }
  }
  cudaIpcMemHandle_t h{};
  EXPECT(raw.size() == sizeof h, "the handle decodes to %zu bytes, not %zu", raw.size(), sizeof h);
  if (raw.size() != sizeof h) return 1;
  std::memcpy(&h, raw.data(), sizeof h);
  void* p = nullptr;
  EXPECT(cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess) == cudaSuccess, "cudaIpcOpenMemHandle");
  if (p == nullptr) return 1;
  std::vector<unsigned char> host(bytes, static_cast<unsigned char>(value));
  if (std::strcmp(what, "write") == 0) {
    EXPECT(cudaMemcpy(p, host.data(), bytes, cudaMemcpyHostToDevice) == cudaSuccess, "write");
  } else {
    std::vector<unsigned char> got(bytes, 0);
    EXPECT(cudaMemcpy(got.data(), p, bytes, cudaMemcpyDeviceToHost) == cudaSuccess && got == host,
           "the bytes another process wrote through the same handle");
  }
  EXPECT(cudaIpcCloseMemHandle(p) == cudaSuccess, "cudaIpcCloseMemHandle");
  if (failures == 0) std::printf("device_buffer_pair: ipc-open %s OK\n", what);
  return failures == 0 ? 0 : 1;
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Each call's time over n rounds of create, open, close, unlink, close of a 4 KiB device buffer
// (a create or open includes opening its IPC handles in this process): p50 and p99 per call.
int roundtrip(int n) {
  static const char* names[6] = {"create", "open", "close", "unlink", "close (last)", "round"};
  std::vector<double> t[6];
  const std::uint64_t shape[1] = {4096};
  for (int i = 0; i < n; ++i) {
    poolshim_buffer *c = nullptr, *o = nullptr;
    double at[6];
    at[0] = now_ms();
    int r = poolshim_buffer_create("rt.dev", "u8", 1, shape, POOLSHIM_BUFFER_DEVICE, 0, 0, &c);
    at[1] = now_ms();
    if (r == 0) r = poolshim_buffer_open("rt.dev", 0, &o);
    at[2] = now_ms();
    if (o != nullptr) poolshim_buffer_close(o);
    at[3] = now_ms();
    if (r == 0) r = poolshim_buffer_unlink("rt.dev", 0);
    at[4] = now_ms();
    if (c != nullptr) poolshim_buffer_close(c);
    at[5] = now_ms();
    if (r != 0) {
      std::printf("device_buffer_pair: FAIL: round %d: %s\n", i, poolshim_buffer_error());
      return 1;
    }
    for (int k = 0; k < 5; ++k) t[k].push_back(at[k + 1] - at[k]);
    t[5].push_back(at[5] - at[0]);
  }
  for (int k = 0; k < 6 && n > 0; ++k) {
    std::sort(t[k].begin(), t[k].end());
    std::printf("4 KiB device buffer through the socket, %d rounds: %-12s p50 %.3f ms, p99 %.3f ms\n", n, names[k],
                t[k][t[k].size() / 2], t[k][t[k].size() * 99 / 100]);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "check") == 0) return check();
  if (argc == 4 && std::strcmp(argv[1], "reader") == 0) return reader(argv[2], std::atoi(argv[3]));
  if (argc == 3 && std::strcmp(argv[1], "hold") == 0) return hold(argv[2]);
  if (argc == 2 && std::strcmp(argv[1], "channel") == 0) return channel();
  if (argc == 4 && std::strcmp(argv[1], "channel-reader") == 0) return channel_reader(argv[2], std::atoi(argv[3]));
  if (argc == 3 && std::strcmp(argv[1], "roundtrip") == 0) return roundtrip(std::atoi(argv[2]));
  if (argc == 6 && std::strcmp(argv[1], "ipc-open") == 0)
    return ipc_open(argv[2], std::strtoull(argv[3], nullptr, 10), argv[4], std::atoi(argv[5]));
  std::fprintf(stderr,
               "usage: device_buffer_pair check | reader NAME FD | hold NAME | roundtrip N |\n"
               "       ipc-open BASE64_HANDLE BYTES write|check VALUE\n"
               "  (device named buffers through libpoolshim_buffers; POOLSHIM_SOCKET names the daemon)\n");
  return argc == 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) ? 0 : 2;
}

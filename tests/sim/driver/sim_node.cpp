// Simulated CUDA driver: node-wide device-memory accounting (sim_node.h). The file is mapped once
// per process on first use; a fork child claims a slot of its own (it holds none of the parent's
// allocations, which stay charged to the parent).
#include "sim_node.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <mutex>

namespace sim {
namespace {

std::mutex g_mu;  // the mapping and this process's slot
node_file* g_file = nullptr;
bool g_tried = false;
node_slot* g_slot = nullptr;
pid_t g_slot_pid = 0;

node_file* file() {
  if (g_tried) return g_file;
  g_tried = true;
  const char* path = std::getenv("POOLSHIM_SIM_NODE_FILE");
  if (path == nullptr || *path == '\0') return nullptr;
  const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return nullptr;
  // Every process truncates to the same size (zero-filled): creators racing agree.
  if (lseek(fd, 0, SEEK_END) < static_cast<off_t>(sizeof(node_file)) && ftruncate(fd, sizeof(node_file)) != 0) {
    close(fd);
    return nullptr;
  }
  void* m = mmap(nullptr, sizeof(node_file), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return nullptr;
  g_file = static_cast<node_file*>(m);
  g_file->magic = k_node_magic;
  g_file->version = k_node_version;
  return g_file;
}

bool alive(std::int32_t pid) { return pid > 0 && (kill(pid, 0) == 0 || errno != ESRCH); }

// This process's slot; a dead process's slot is taken over and its bytes leave the total.
node_slot* slot(node_file* f) {
  if (g_slot != nullptr && g_slot_pid == getpid()) return g_slot;
  const pid_t me = getpid();
  for (node_slot& s : f->slots) {
    std::int32_t pid = s.pid.load();
    if (pid < 0 || (pid != 0 && alive(pid))) continue;
    if (!s.pid.compare_exchange_strong(pid, me)) continue;
    for (int d = 0; d < k_node_devices; ++d) f->total[d].fetch_sub(s.used[d].exchange(0));
    g_slot = &s;
    g_slot_pid = me;
    return g_slot;
  }
  return nullptr;
}

// Slots of processes that exited holding memory (a simulated process frees nothing at exit): their
// bytes leave the total, as a GPU's do when the process goes.
void sweep(node_file* f) {
  for (node_slot& s : f->slots) {
    std::int32_t pid = s.pid.load();
    if (pid <= 0 || alive(pid) || !s.pid.compare_exchange_strong(pid, -1)) continue;
    for (int d = 0; d < k_node_devices; ++d) f->total[d].fetch_sub(s.used[d].exchange(0));
    s.pid.store(0);
  }
}

}  // namespace

bool node_reserve(int device, std::size_t bytes, std::size_t capacity) {
  std::lock_guard lk(g_mu);
  node_file* f = file();
  if (f == nullptr || device < 0 || device >= k_node_devices) return true;
  node_slot* s = slot(f);
  if (s == nullptr) return false;  // more live processes than slots: refuse rather than lose count
  std::uint64_t now = f->total[device].load();
  for (bool swept = false;;) {
    if (now + bytes > capacity) {
      if (swept) return false;
      swept = true;
      sweep(f);
      now = f->total[device].load();
      continue;
    }
    if (f->total[device].compare_exchange_weak(now, now + bytes)) break;
  }
  s->used[device].fetch_add(bytes);
  return true;
}

void node_release(int device, std::size_t bytes) {
  std::lock_guard lk(g_mu);
  if (g_file == nullptr || g_slot == nullptr || g_slot_pid != getpid() || device < 0 || device >= k_node_devices)
    return;
  g_slot->used[device].fetch_sub(bytes);
  g_file->total[device].fetch_sub(bytes);
}

bool node_used(int device, std::size_t* used) {
  std::lock_guard lk(g_mu);
  node_file* f = file();
  if (f == nullptr || device < 0 || device >= k_node_devices) return false;
  sweep(f);
  *used = f->total[device].load();
  return true;
}

}  // namespace sim

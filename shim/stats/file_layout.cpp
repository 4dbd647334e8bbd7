// The stats file's plan, creation and header (file_layout.h).
#include "stats/file_layout.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

namespace poolshim::stats {
namespace {

// The arguments, separated by spaces, cut to the field.
void read_cmdline(char* out, std::size_t cap) noexcept {
  out[0] = '\0';
  const int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  const ssize_t n = read(fd, out, cap - 1);
  close(fd);
  if (n <= 0) return;
  for (ssize_t i = 0; i < n; ++i)
    if (out[i] == '\0') out[i] = ' ';
  out[n > 0 && out[n - 1] == ' ' ? n - 1 : n] = '\0';
}

}  // namespace

poolshim_stats_layout full_layout(std::uint32_t ring, bool python) noexcept {
  return poolshim_stats_plan(k_modules, k_slots, k_arena_frames, k_live, k_shards, ring, python ? k_python_bytes : 0,
                             k_timeline_samples);
}

poolshim_stats_layout small_layout() noexcept {
  return poolshim_stats_plan(k_modules, 0, 0, k_small_live, k_small_shards, 0, 0, k_small_timeline_samples);
}

void* create_file(const char* path, std::size_t size, int* err) noexcept {
  const int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    *err = errno;
    return nullptr;
  }
  *err = posix_fallocate(fd, 0, static_cast<off_t>(size));
  void* p = *err == 0 ? mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
  if (*err == 0 && p == MAP_FAILED) *err = errno;
  close(fd);
  if (p != MAP_FAILED) return p;
  unlink(path);
  return nullptr;
}

void write_header(void* base, const poolshim_stats_layout& l, std::uint64_t start_ns, std::uint32_t depth_cap,
                  std::uint32_t flags) noexcept {
  auto* h = static_cast<poolshim_stats_header*>(base);
  poolshim_stats_init_header(h, &l);
  h->pid = getpid();
  h->uid = getuid();
  h->start_ns = start_ns;
  const ssize_t n = readlink("/proc/self/exe", h->exe, sizeof h->exe - 1);
  h->exe[n > 0 ? n : 0] = '\0';
  read_cmdline(h->cmdline, sizeof h->cmdline);
  h->depth_cap = depth_cap;
  h->flags = flags;
}

}  // namespace poolshim::stats

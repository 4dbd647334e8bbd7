// Writes a synthetic stats file (include/poolshim/stats_file.h, laid out by poolshim_stats_plan as
// the shim lays it out) with a known event ring, live table, sites and pool counters, for testing
// poolshim-stats' readers of parts a real run may not fill yet (stats_tool_test.sh). Its frames are addresses of
// the fake_* functions below in this very executable (listed as the file's module), so the tool
// symbolises them to these names and this file's lines.
//
// usage: stats_fake_file OUT [--no-ring]
//
// The scenario (device 0 unless said; ring capacity 8, 10 events written, so events 0 and 1 are
// gone from it; "A" blocks are 1 MiB from fake_alloc_a, B1 is 3 MiB from fake_alloc_b on device 1,
// P is 64 KiB pinned from fake_alloc_pinned):
//   0 alloc A1 0x7f0000000000    1 alloc A2 0x7f0000100000    2 free A1
//   3 alloc P 0x600000 (pinned)  4 alloc B1 0x7f1000000000 (device 1)
//   5 alloc A3 0x7f0000000000    6 free A3 (bytes 0 in the event: the size is the alloc's)
//   7 alloc A4 0x7f0000200000    8 free P                     9 free 0x7f0000900000 (bytes 0,
//                                                                  never seen allocated)
// Live at the end: A2, A4 (device 0), B1 (device 1). Pool counters: device 7 hits of 8, host 0 of 0.
#include <fcntl.h>
#include <link.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

#include "poolshim/stats_file.h"

extern "C" {
[[gnu::noinline]] int fake_alloc_a() { return std::rand(); }
[[gnu::noinline]] int fake_alloc_b() { return std::rand() + 1; }
[[gnu::noinline]] int fake_alloc_pinned() { return std::rand() + 2; }
[[gnu::noinline]] int fake_main() { return std::rand() + 3; }
}

namespace {

constexpr std::uint64_t KiB = 1024, MiB = 1024 * 1024;

struct own_module {
  std::uint64_t start = ~0ull, end = 0, bias = 0;
};

int find_main(dl_phdr_info* info, size_t, void* data) {
  auto* m = static_cast<own_module*>(data);
  m->bias = info->dlpi_addr;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    const std::uint64_t s = info->dlpi_addr + ph.p_vaddr;
    if (s < m->start) m->start = s;
    if (s + ph.p_memsz > m->end) m->end = s + ph.p_memsz;
  }
  return 1;  // the first entry is the program itself
}

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: stats_fake_file OUT [--no-ring]\n");
    return 2;
  }
  const bool ring = !(argc > 2 && std::strcmp(argv[2], "--no-ring") == 0);
  constexpr std::uint32_t k_modules = 4, k_slots = 4, k_arena = 16, k_live = 8, k_events = 8;
  // The shim's own layout (no shards: nothing is running; no Python table).
  const poolshim_stats_layout l =
      poolshim_stats_plan(k_modules, k_slots, k_arena, k_live, 0, ring ? k_events : 0, 0, 0);
  const std::size_t size = l.file_size;
  std::vector<unsigned char> file(size, 0);
  auto* base = file.data();

  auto* h = reinterpret_cast<poolshim_stats_header*>(base);
  poolshim_stats_init_header(h, &l);
  h->pid = 4242;
  h->uid = static_cast<std::uint32_t>(getuid());
  h->start_ns = now_ns() - 2000000000ull;
  h->end_ns = h->start_ns + 1000000000ull;
  std::snprintf(h->exe, sizeof h->exe, "/synthetic/app");
  std::snprintf(h->cmdline, sizeof h->cmdline, "/synthetic/app --fake");
  h->depth_cap = 32;
  h->module_count = 1;
  h->process_live = static_cast<std::int64_t>(5 * MiB);
  h->process_peak = static_cast<std::int64_t>(6 * MiB + 64 * KiB);
  h->peak_epoch = 1;
  h->peak_ns = h->start_ns + 500000000ull;
  h->events = 10;
  h->event_next = ring ? 10 : 0;
  h->device_pool_hits = 7;
  h->device_pool_allocs = 8;
  h->host_pool_hits = 0;
  h->host_pool_allocs = 0;

  own_module me;
  dl_iterate_phdr(find_main, &me);
  auto* mod = reinterpret_cast<poolshim_stats_module*>(base + l.modules_offset);
  mod->start = me.start;
  mod->end = me.end;
  mod->load_bias = me.bias;
  const ssize_t n = readlink("/proc/self/exe", mod->path, sizeof mod->path - 1);
  if (n <= 0) return 1;

  // Stacks 1..3: [fake_alloc_x, fake_main] as return addresses (pc - 1 is the function's start).
  auto pc = [](int (*fn)()) { return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(fn)) + 1; };
  auto* slots = reinterpret_cast<poolshim_stats_slot*>(base + l.slots_offset);
  auto* arena = reinterpret_cast<std::uint64_t*>(base + l.arena_offset);
  int (*leaf[3])() = {fake_alloc_a, fake_alloc_b, fake_alloc_pinned};
  for (int i = 0; i < 3; ++i) {
    slots[i].key = 0x1000u + static_cast<std::uint64_t>(i);
    slots[i].frames_at = static_cast<std::uint32_t>(2 * i);
    slots[i].depth = 2;
    arena[2 * i] = pc(leaf[i]);
    arena[2 * i + 1] = pc(fake_main);
  }
  auto* sites = reinterpret_cast<poolshim_stats_site*>(base + l.sites_offset);
  sites[1] = {4,
              2,
              4 * MiB,
              2 * MiB,
              1 * MiB,
              static_cast<std::int64_t>(2 * MiB),
              2,
              static_cast<std::int64_t>(3 * MiB),
              static_cast<std::int64_t>(3 * MiB),
              1,
              0};
  sites[2] = {1,
              0,
              3 * MiB,
              0,
              3 * MiB,
              static_cast<std::int64_t>(3 * MiB),
              1,
              static_cast<std::int64_t>(3 * MiB),
              static_cast<std::int64_t>(3 * MiB),
              1,
              0};
  sites[3] = {1,
              1,
              64 * KiB,
              64 * KiB,
              64 * KiB,
              0,
              0,
              static_cast<std::int64_t>(64 * KiB),
              static_cast<std::int64_t>(64 * KiB),
              1,
              0};
  auto* kinds = reinterpret_cast<poolshim_stats_kind*>(base + l.kinds_offset);
  kinds[0 * POOLSHIM_STATS_KINDS + 0] = {
      4, 2, 4 * MiB, static_cast<std::int64_t>(2 * MiB), static_cast<std::int64_t>(3 * MiB), h->peak_ns};
  kinds[0 * POOLSHIM_STATS_KINDS + 1] = {1, 1, 64 * KiB, 0, static_cast<std::int64_t>(64 * KiB), h->peak_ns};
  kinds[1 * POOLSHIM_STATS_KINDS + 0] = {
      1, 0, 3 * MiB, static_cast<std::int64_t>(3 * MiB), static_cast<std::int64_t>(3 * MiB), h->peak_ns};
  auto* live = reinterpret_cast<poolshim_stats_live*>(base + l.live_offset);
  live[1] = {0x7f0000100000ull, 1 * MiB, 1, 0, 0};
  live[4] = {0x7f0000200000ull, 1 * MiB, 1, 0, 0};
  live[6] = {0x7f1000000000ull, 3 * MiB, 2, 1, 0};

  if (ring) {
    struct ev {
      std::uint64_t ptr, bytes;
      std::uint32_t stack;
      std::uint16_t device;
      std::uint8_t kind, action;
    };
    const ev all[10] = {
        {0x7f0000000000ull, 1 * MiB, 1, 0, 0, 1}, {0x7f0000100000ull, 1 * MiB, 1, 0, 0, 1},
        {0x7f0000000000ull, 1 * MiB, 1, 0, 0, 2}, {0x600000ull, 64 * KiB, 3, 0, 1, 1},
        {0x7f1000000000ull, 3 * MiB, 2, 1, 0, 1}, {0x7f0000000000ull, 1 * MiB, 1, 0, 0, 1},
        {0x7f0000000000ull, 0, 1, 0, 0, 2},       {0x7f0000200000ull, 1 * MiB, 1, 0, 0, 1},
        {0x600000ull, 64 * KiB, 3, 0, 1, 2},      {0x7f0000900000ull, 0, 1, 0, 0, 2},
    };
    auto* events = reinterpret_cast<poolshim_stats_event*>(base + l.events_offset);
    for (std::uint64_t i = 0; i < 10; ++i) {
      poolshim_stats_event& e = events[i % k_events];
      e.seq = i + 1;
      e.ns = h->start_ns + (i + 1) * 1000000ull;
      e.ptr = all[i].ptr;
      e.bytes = all[i].bytes;
      e.stack = all[i].stack;
      e.device = all[i].device;
      e.kind = all[i].kind;
      e.action = all[i].action;
    }
  }

  const int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, base, size) != static_cast<ssize_t>(size) || close(fd) != 0) {
    std::perror(argv[1]);
    return 1;
  }
  return 0;
}

// Writes stats files (include/poolshim/stats_file.h, laid out by poolshim_stats_plan as the shim
// lays them out) that a hostile owner could leave for poolshim-stats (issue #13, findings 7, 10
// and 11; stats_hostile_test.py drives it):
//
// usage: stats_hostile_file MODE OUT [MODULE_PATH]
//   deep     1,024 stacks, each declaring 65,536 frames at one arena range (depth_cap 64, as the
//            shim writes it): ~636 KB that an unchecked reader turns into ~6 GB of frames
//   cap      as deep, and the header's depth_cap says 65,536 too
//   shared   1,024 stacks of 64 frames (within the cap), all at one 64-frame range: more frames
//            than the arena holds
//   valid    a small well-formed file: one site of two frames
//   big      a well-formed file of ~13 MB (a large live table), for truncating while it is read
//   escapes  a well-formed file whose program path, command line and module path (MODULE_PATH)
//            hold terminal escapes (ESC sequences, BEL, a C1 CSI byte)
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "poolshim/stats_file.h"

namespace {

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

template <std::size_t N>
void set_text(char (&field)[N], const std::string& text) {
  std::memset(field, 0, N);
  std::memcpy(field, text.data(), text.size() < N ? text.size() : N - 1);
}

struct file {
  poolshim_stats_layout l{};
  std::vector<unsigned char> bytes;
  poolshim_stats_header* h = nullptr;

  file(std::uint32_t slots, std::uint32_t arena, std::uint32_t live) {
    l = poolshim_stats_plan(4, slots, arena, live, 0, 0, 0, 0);
    bytes.assign(l.file_size, 0);
    h = reinterpret_cast<poolshim_stats_header*>(bytes.data());
    poolshim_stats_init_header(h, &l);
    h->pid = 0;  // no process: "killed", never signalled
    h->uid = static_cast<std::uint32_t>(getuid());
    h->start_ns = now_ns() - 5000000000ull;
    h->end_ns = now_ns();
    h->depth_cap = 64;
    set_text(h->exe, "/usr/bin/hostile_program");
    set_text(h->cmdline, "hostile_program --arg");
  }
  poolshim_stats_slot* slots() { return reinterpret_cast<poolshim_stats_slot*>(bytes.data() + l.slots_offset); }
  std::uint64_t* arena() { return reinterpret_cast<std::uint64_t*>(bytes.data() + l.arena_offset); }
  poolshim_stats_site* sites() { return reinterpret_cast<poolshim_stats_site*>(bytes.data() + l.sites_offset); }
  poolshim_stats_kind* kinds() { return reinterpret_cast<poolshim_stats_kind*>(bytes.data() + l.kinds_offset); }
  poolshim_stats_module* modules() { return reinterpret_cast<poolshim_stats_module*>(bytes.data() + l.modules_offset); }
  poolshim_stats_live* live() { return reinterpret_cast<poolshim_stats_live*>(bytes.data() + l.live_offset); }

  // Stack id `id` (1-based) with `depth` frames at `at`, one allocation of `bytes` live.
  void site(std::uint32_t id, std::uint32_t at, std::uint32_t depth, std::uint64_t size) {
    slots()[id - 1] = poolshim_stats_slot{0x1000u + id, at, depth};
    poolshim_stats_site& s = sites()[id];
    s.allocs = 1;
    s.bytes_allocated = size;
    s.largest = size;
    s.live_bytes = static_cast<std::int64_t>(size);
    s.own_peak = static_cast<std::int64_t>(size);
    s.at_peak = static_cast<std::int64_t>(size);
    s.seen_epoch = h->peak_epoch;
    poolshim_stats_kind& k = kinds()[0];
    k.allocs += 1;
    k.bytes_allocated += size;
    k.live_bytes += static_cast<std::int64_t>(size);
    k.peak_bytes = k.live_bytes;
    h->process_live += static_cast<std::int64_t>(size);
    h->process_peak = h->process_live;
    h->events += 1;
  }

  bool write(const char* path) const {
    FILE* f = std::fopen(path, "wb");
    if (f == nullptr) return false;
    const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
    return std::fclose(f) == 0 && ok;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: stats_hostile_file deep|cap|shared|valid|big|escapes OUT [MODULE_PATH]\n");
    return 2;
  }
  const std::string mode = argv[1];
  std::vector<file> made;
  if (mode == "deep" || mode == "cap") {
    file f(1024, 65536, 8);
    for (std::uint32_t i = 0; i < 65536; ++i) f.arena()[i] = 0x400000u + 16u * i;
    for (std::uint32_t id = 1; id <= 1024; ++id) f.site(id, 0, 65536, 4096);
    if (mode == "cap") f.h->depth_cap = 65536;
    made.push_back(std::move(f));
  } else if (mode == "shared") {
    file f(1024, 64, 8);
    for (std::uint32_t i = 0; i < 64; ++i) f.arena()[i] = 0x400000u + 16u * i;
    for (std::uint32_t id = 1; id <= 1024; ++id) f.site(id, 0, 64, 4096);
    made.push_back(std::move(f));
  } else if (mode == "valid" || mode == "big" || mode == "escapes") {
    file f(4, 16, mode == "big" ? (1u << 19) : 8u);
    f.arena()[0] = 0x400100;
    f.arena()[1] = 0x400200;
    f.site(1, 0, 2, 1 << 20);
    f.live()[0] = poolshim_stats_live{0x7f0000000000ull, 1 << 20, 1, 0, 0};
    if (mode == "escapes") {
      const std::string module = argc > 3 ? argv[3] : "/tmp/\x1b]0;owned\x07lib\x1b[2J.so";
      poolshim_stats_module& m = f.modules()[0];
      m.start = 0x400000;
      m.end = 0x500000;
      m.load_bias = 0x400000;
      set_text(m.path, module);
      f.h->module_count = 1;
      set_text(f.h->exe, "/usr/bin/\x1b]0;owned\x07prog\x1b[8m");
      set_text(f.h->cmdline,
               "prog \x1b[2J\x1b[31mred\x1b[0m \xc2\x9b"
               "31m c1 \x9b"
               "1m\r\x7f end");
    }
    made.push_back(std::move(f));
  } else {
    std::fprintf(stderr, "stats_hostile_file: unknown mode '%s'\n", mode.c_str());
    return 2;
  }
  if (!made.front().write(argv[2])) {
    std::perror(argv[2]);
    return 1;
  }
  return 0;
}

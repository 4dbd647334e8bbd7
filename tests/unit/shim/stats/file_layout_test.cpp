// The stats file's plan and header (shim/stats/file_layout.h, poolshim_stats_plan in
// include/poolshim/stats_file.h): regions in file order, aligned, not overlapping, inside the file;
// the sizes the README gives (17.4 MiB up front, 48 bytes per ring event, 8 MiB for Python, under
// 1 MiB without stacks); a header written for a layout says that layout and this process.
#include "stats/file_layout.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace poolshim::stats {
namespace {

constexpr std::uint64_t MiB = 1024 * 1024;

struct region {
  const char* name;
  std::uint64_t offset, bytes;
};

std::vector<region> regions_of(const poolshim_stats_layout& l) {
  return {
      {"modules", l.modules_offset, std::uint64_t{l.module_capacity} * sizeof(poolshim_stats_module)},
      {"slots", l.slots_offset, std::uint64_t{l.slot_count} * sizeof(poolshim_stats_slot)},
      {"arena", l.arena_offset, std::uint64_t{l.arena_frames} * sizeof(std::uint64_t)},
      {"sites", l.sites_offset, (std::uint64_t{l.slot_count} + 1) * sizeof(poolshim_stats_site)},
      {"kinds", l.kinds_offset, POOLSHIM_STATS_DEVICES * POOLSHIM_STATS_KINDS * sizeof(poolshim_stats_kind)},
      {"live", l.live_offset, std::uint64_t{l.live_capacity} * sizeof(poolshim_stats_live)},
      {"shards", l.shards_offset, std::uint64_t{l.shard_count} * sizeof(poolshim_stats_shard)},
      {"events", l.events_offset, std::uint64_t{l.event_capacity} * sizeof(poolshim_stats_event)},
      {"python", l.python_offset, l.python_size},
      {"timeline", l.timeline_offset,
       sizeof(poolshim_stats_timeline) + std::uint64_t{l.timeline_capacity} * sizeof(poolshim_stats_sample)},
  };
}

void expect_well_formed(const poolshim_stats_layout& l) {
  std::uint64_t end = sizeof(poolshim_stats_header);
  for (const region& r : regions_of(l)) {
    EXPECT_EQ(r.offset % POOLSHIM_STATS_ALIGN, 0u) << r.name;
    EXPECT_GE(r.offset, end) << r.name << " overlaps what is before it";
    end = r.offset + r.bytes;
  }
  EXPECT_LE(end, l.file_size) << "the last region ends inside the file";
  EXPECT_EQ(l.file_size % POOLSHIM_STATS_ALIGN, 0u);
}

TEST(FileLayout, RegionsAreInOrderAlignedAndDoNotOverlap) {
  for (std::uint32_t ring : {0u, 1u, 8u, 1000u, 1u << 16}) {
    for (bool python : {false, true}) {
      SCOPED_TRACE("ring " + std::to_string(ring) + (python ? " python" : ""));
      expect_well_formed(full_layout(ring, python));
    }
  }
  expect_well_formed(small_layout());
  expect_well_formed(poolshim_stats_plan(4, 4, 16, 8, 0, 8, 0, 4));  // stats_fake_file's
  expect_well_formed(poolshim_stats_plan(0, 0, 0, 0, 0, 0, 0, 0));
}

// README.md, "Call-site statistics": 17.4 MiB reserved up front, plus 48 bytes per event of the
// optional ring and 8 MiB for Python code; a file of under 1 MiB without stacks.
TEST(FileLayout, SizesAreTheDocumentedOnes) {
  const poolshim_stats_layout base = full_layout(0, false);
  EXPECT_GE(base.file_size, 17 * MiB + 3 * MiB / 10);
  EXPECT_LT(base.file_size, 17 * MiB + 4 * MiB / 10);
  EXPECT_EQ(base.timeline_capacity, k_timeline_samples);
  EXPECT_EQ(small_layout().timeline_capacity, k_small_timeline_samples);
  EXPECT_EQ(base.slot_count, k_slots);
  EXPECT_EQ(base.live_capacity, k_live);
  EXPECT_EQ(base.module_capacity, k_modules);
  EXPECT_EQ(base.event_capacity, 0u);
  EXPECT_EQ(base.python_size, 0u);
  EXPECT_EQ(sizeof(poolshim_stats_event), 48u);
  EXPECT_EQ(full_layout(1u << 16, false).file_size - base.file_size, (std::uint64_t{1} << 16) * 48);
  EXPECT_EQ(full_layout(0, true).file_size - base.file_size, 8 * MiB);
  EXPECT_EQ(full_layout(0, true).python_size, 8 * MiB);
  const poolshim_stats_layout small = small_layout();
  EXPECT_LT(small.file_size, MiB);
  EXPECT_EQ(small.slot_count, 0u);
  EXPECT_EQ(small.arena_frames, 0u);
  EXPECT_EQ(small.event_capacity, 0u);
  EXPECT_EQ(small.python_size, 0u);
  EXPECT_GT(small.live_capacity, 0u);
  EXPECT_GT(small.shard_count, 0u);
}

// The header as the recorder writes it, checked as poolshim-stats checks it.
TEST(FileLayout, TheHeaderSaysTheLayoutAndThisProcess) {
  for (const poolshim_stats_layout& l : {full_layout(1024, true), small_layout()}) {
    void* p = mmap(nullptr, l.file_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(p, MAP_FAILED);
    const bool stacks = l.slot_count != 0;
    write_header(p, l, 12345, stacks ? 32 : 0, stacks ? 0 : POOLSHIM_STATS_FLAG_STACKS_OFF);
    const auto* h = static_cast<const poolshim_stats_header*>(p);
    EXPECT_EQ(std::memcmp(h->magic, POOLSHIM_STATS_MAGIC, sizeof POOLSHIM_STATS_MAGIC), 0);
    EXPECT_EQ(h->version, static_cast<std::uint32_t>(POOLSHIM_STATS_VERSION));
    EXPECT_EQ(h->header_size, sizeof(poolshim_stats_header));
    EXPECT_EQ(h->file_size, l.file_size);
    EXPECT_EQ(h->pid, getpid());
    EXPECT_EQ(h->uid, getuid());
    EXPECT_EQ(h->start_ns, 12345u);
    EXPECT_EQ(h->end_ns, 0u);
    EXPECT_NE(std::string(h->exe).find("poolshim_stats_tests"), std::string::npos) << h->exe;
    EXPECT_NE(std::string(h->cmdline).find("poolshim_stats_tests"), std::string::npos) << h->cmdline;
    EXPECT_EQ(h->depth_cap, stacks ? 32u : 0u);
    EXPECT_EQ(h->flags, stacks ? 0u : POOLSHIM_STATS_FLAG_STACKS_OFF);
    EXPECT_EQ(h->modules_offset, l.modules_offset);
    EXPECT_EQ(h->module_capacity, l.module_capacity);
    EXPECT_EQ(h->module_count, 0u);
    EXPECT_EQ(h->slots_offset, l.slots_offset);
    EXPECT_EQ(h->slot_count, l.slot_count);
    EXPECT_EQ(h->arena_offset, l.arena_offset);
    EXPECT_EQ(h->arena_frames, l.arena_frames);
    EXPECT_EQ(h->sites_offset, l.sites_offset);
    EXPECT_EQ(h->kinds_offset, l.kinds_offset);
    EXPECT_EQ(h->live_offset, l.live_offset);
    EXPECT_EQ(h->live_capacity, l.live_capacity);
    EXPECT_EQ(h->shards_offset, l.shards_offset);
    EXPECT_EQ(h->shard_count, l.shard_count);
    EXPECT_EQ(h->shard_size, sizeof(poolshim_stats_shard));
    EXPECT_EQ(h->events_offset, l.events_offset);
    EXPECT_EQ(h->event_capacity, l.event_capacity);
    EXPECT_EQ(h->python_size, l.python_size);
    EXPECT_EQ(h->python_offset, l.python_size != 0 ? l.python_offset : 0u) << "no table: offset 0";
    munmap(p, l.file_size);
  }
}

TEST(FileLayout, CreateFileReservesTheWholeSizeAndRefusesAnExistingFile) {
  char dir[] = "/tmp/poolshim-layout-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/f.stats";
  int err = 0;
  void* p = create_file(path.c_str(), 1 << 20, &err);
  ASSERT_NE(p, nullptr) << std::strerror(err);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 1 << 20);
  EXPECT_GE(static_cast<std::uint64_t>(st.st_blocks) * 512, std::uint64_t{1} << 20) << "reserved, not sparse";
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(create_file(path.c_str(), 4096, &err), nullptr);
  EXPECT_EQ(err, EEXIST);
  munmap(p, 1 << 20);
  unlink(path.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace poolshim::stats

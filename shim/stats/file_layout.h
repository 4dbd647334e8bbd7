// The shim's stats file (include/poolshim/stats_file.h): how big each region is, where it lies
// (poolshim_stats_plan), creating the file with all of it reserved, and its header. The full file
// is ~17.4 MiB plus the event ring and the Python table; the small one (under 1 MiB) counts per device
// and kind without stacks, for a folder with no room for the full one.
#pragma once

#include <cstddef>
#include <cstdint>

#include "poolshim/stats_file.h"

namespace poolshim::stats {

constexpr std::uint32_t k_modules = 512;
constexpr std::uint32_t k_slots = 1u << 14;         // stacks
constexpr std::uint32_t k_arena_frames = 1u << 19;  // 32 frames per stack on average
constexpr std::uint32_t k_live = 1u << 18;          // live allocations tracked at once
constexpr std::uint32_t k_shards = 64;              // threads with their own counters at once; others share
constexpr std::size_t k_python_bytes = std::size_t{8} << 20;
constexpr std::uint32_t k_small_live = 1u << 14;
constexpr std::uint32_t k_small_shards = 8;
constexpr std::uint32_t k_timeline_samples = 1024;  // 176 KiB
// The small file's timeline: 88 KiB (it has no stacks, so its samples' site columns stay empty; 1024
// samples would take it past 1 MiB).
constexpr std::uint32_t k_small_timeline_samples = 512;

// The full file: stacks, `ring` events (a power of two, or 0: no ring) and, with `python`, the
// Python code table.
poolshim_stats_layout full_layout(std::uint32_t ring, bool python) noexcept;
// The small file: no stacks (slot_count 0), no ring, no Python table.
poolshim_stats_layout small_layout() noexcept;

// Creates the file (a new one: O_EXCL, mode 0600) with every page of `size` reserved (a sparse file
// on a full tmpfs would raise SIGBUS in the program later) and maps it shared; null (the error in
// *err) when it cannot, with nothing left behind.
void* create_file(const char* path, std::size_t size, int* err) noexcept;

// Writes the header of a new file (`base`, zeroed) laid out as `l`: the layout, this process (pid,
// uid, exe, cmdline), its start time, the depth kept and the flags (POOLSHIM_STATS_FLAG_*).
void write_header(void* base, const poolshim_stats_layout& l, std::uint64_t start_ns, std::uint32_t depth_cap,
                  std::uint32_t flags) noexcept;

}  // namespace poolshim::stats

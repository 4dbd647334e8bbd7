// The call-site recorder (POOLSHIM_STATS=native or python): on every successful allocation and free the
// driver hooks report, it captures the caller's stack (frames inside libpoolshim.so dropped),
// interns it, counts it per site, per device and kind, and keeps the live pointer, all inside the
// process's stats file (include/poolshim/stats_file.h), created on the first event. Never holds a
// lock; a full table or a file that cannot be made degrades to fewer stacks or none, said once.
// POOLSHIM_STATS=off (the default): one relaxed load per event.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace poolshim::stats {

enum class kind : std::uint16_t { device = 0, pinned = 1, managed = 2, async = 3, vmm = 4 };

namespace detail {
// 0: not started; 1: starting; 2: running; 3: off or failed for good.
extern std::atomic<int> g_state;
bool recording_slow() noexcept;  // starts the recorder on the first event, or waits for its start
}  // namespace detail
// Whether events are recorded (the first call starts the recorder). Inline: twice per pair, and
// with statistics off one load.
inline bool recording() noexcept {
  const int s = detail::g_state.load(std::memory_order_acquire);
  return s == 2 || (s != 3 && detail::recording_slow());
}
// `stream`: the CUstream of a stream-ordered allocation or free (cuMemAllocAsync), for the event
// ring; 0 for the others.
void record_alloc(kind k, int device, std::uint64_t ptr, std::uint64_t bytes, std::uint64_t stream = 0) noexcept;
void record_free(kind k, std::uint64_t ptr, std::uint64_t stream = 0) noexcept;
// A device pool took a segment from its source (`taken`) or gave one back: segment events in the
// event ring (the memory_viz snapshot's segments), without a stack. Safe where the pool holds no
// lock; a give-back never starts the recorder.
void record_segment(int device, std::uint64_t base, std::uint64_t bytes, bool taken) noexcept;
// An allocation that failed for want of memory: the caller's stack and the bytes asked, in the event
// ring only (no figure counts it). `device_free`: the driver's free bytes at the failure.
void record_oom(kind k, int device, std::uint64_t bytes, std::uint64_t device_free, std::uint64_t stream = 0) noexcept;
// The pools' process-wide hit figures (poolshim.h counters), mirrored into the file's header.
void record_pool_figures(std::uint64_t device_hits, std::uint64_t device_allocs, std::uint64_t host_hits,
                         std::uint64_t host_allocs) noexcept;
// At a clean exit: the end time goes into the file (a killed process leaves 0).
void record_exit() noexcept;
// The file's path ("" when none): for the summary line and tests.
const char* stats_path() noexcept;

}  // namespace poolshim::stats

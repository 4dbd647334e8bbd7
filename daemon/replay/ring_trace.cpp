// Event ring -> trace. The ring keeps the newest events only: a free whose allocation was
// overwritten is skipped (and counted in a note), and allocations still live at the end are left
// live, as the program left them. Times become `t` events, in microseconds since the first kept
// event, when at least 100 us passed (enough to pace a replay, small in a text file).
#include "replay/ring_trace.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "poolshim/stats_file.h"
#include "stats/stats_file.h"

namespace poolshim::replay {

namespace {
constexpr int k_device_kind = 0;  // poolshim_stats_event.kind: device memory (cuMemAlloc and friends)
constexpr std::uint64_t k_time_step_us = 100;
}  // namespace

bool is_stats_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return false;
  char magic[sizeof POOLSHIM_STATS_MAGIC] = {};
  const ssize_t n = ::read(fd, magic, sizeof magic);
  ::close(fd);
  return n == static_cast<ssize_t>(sizeof magic) && std::memcmp(magic, POOLSHIM_STATS_MAGIC, sizeof magic) == 0;
}

trace trace_from_stats_file(const std::string& path, int device) {
  std::vector<poolshim_stats_event> ring;
  std::uint64_t written = 0, capacity = 0;
  std::string exe;
  try {
    const stats_tool::stats_file f(path);
    capacity = f.header().event_capacity;
    if (capacity == 0)
      throw trace_error(path + ": no event ring: record with POOLSHIM_STATS=native POOLSHIM_STATS_EVENTS=N");
    written = f.header().event_next;
    ring = f.event_ring();
    exe = f.exe();
  } catch (const stats_tool::file_error& e) {
    throw trace_error(e.what());
  }
  std::string name = path;
  if (const auto slash = name.rfind('/'); slash != std::string::npos) name.erase(0, slash + 1);
  trace_builder b(name);
  std::uint64_t t0 = 0, last_us = 0, orphan_frees = 0, lost_frees = 0;
  bool first = true;
  for (const poolshim_stats_event& e : ring) {
    if (e.kind != k_device_kind || e.device != device) continue;
    if (first) {
      t0 = e.ns;
      first = false;
    }
    const std::uint64_t us = e.ns > t0 ? (e.ns - t0) / 1000 : 0;
    if (us >= last_us + k_time_step_us) {
      b.time_us(us);
      last_us = us;
    }
    if (e.action == POOLSHIM_STATS_EVENT_ALLOC) {
      if (e.bytes == 0) continue;
      if (!b.alloc(e.ptr, e.bytes)) {  // a free the ring does not hold: end the old one here
        ++lost_frees;
        b.free(e.ptr);
        b.alloc(e.ptr, e.bytes);
      }
    } else if (e.action == POOLSHIM_STATS_EVENT_FREE) {
      if (!b.free(e.ptr)) ++orphan_frees;
    }
  }
  trace& t = b.get();
  if (t.allocations == 0)
    throw trace_error(path + ": the event ring holds no device allocation of device " + std::to_string(device));
  t.notes.push_back("recorded from " + exe);
  if (written > capacity)
    t.notes.push_back("the event ring kept the newest " + std::to_string(capacity) + " of " + std::to_string(written) +
                      " events (raise POOLSHIM_STATS_EVENTS for all)");
  if (orphan_frees != 0)
    t.notes.push_back(std::to_string(orphan_frees) + " frees of allocations older than the ring skipped");
  if (lost_frees != 0)
    t.notes.push_back(std::to_string(lost_frees) + " addresses allocated again with no free in the ring");
  return b.take();
}

}  // namespace poolshim::replay

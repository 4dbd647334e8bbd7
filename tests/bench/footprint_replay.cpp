// One process of the footprint benchmark (footprint.py, issue #17): replays an allocation schedule
// with cudaMalloc/cudaFree at the times it gives, and publishes its live bytes (what the schedule
// holds now, not what any allocator reserved) in slot --slot of the file --live, 64 u64 slots, so
// the sampler can add up the live bytes of every process beside the device memory they hold.
// Schedule: one event per line, "T_MS a ID BYTES" (allocate) or "T_MS f ID" (free), times from
// the process's start; lines starting with '#' are comments. A plain CUDA program (no shim
// headers to link against): the same binary runs without the shim, under it, and on a GPU.
// Prints "replay: events=N failures=F peak_live=B elapsed_ms=T", and under the shim
// "pool_requests=R pool_hits=H" (its device pools' figures, from poolshim_get_counters found with
// dlsym: the header only, nothing linked); exit 1 when an allocation failed.
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "poolshim/poolshim.h"

namespace {

struct event {
  long long t_ms;
  bool alloc;
  long long id;
  std::size_t bytes;
};

long long now_ms(const timespec& start) {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (t.tv_sec - start.tv_sec) * 1000LL + (t.tv_nsec - start.tv_nsec) / 1000000;
}

bool read_schedule(const char* path, std::vector<event>* out) {
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) return false;
  char line[256];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (line[0] == '#' || line[0] == '\n') continue;
    event e{};
    char op = 0;
    unsigned long long bytes = 0;
    const int n = std::sscanf(line, "%lld %c %lld %llu", &e.t_ms, &op, &e.id, &bytes);
    if (n < 3 || (op != 'a' && op != 'f') || (op == 'a' && (n != 4 || bytes == 0))) {
      std::fclose(f);
      std::fprintf(stderr, "footprint_replay: bad line: %s", line);
      return false;
    }
    e.alloc = op == 'a';
    e.bytes = bytes;
    out->push_back(e);
  }
  std::fclose(f);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const char *schedule = nullptr, *live_path = nullptr;
  int slot = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--schedule") == 0)
      schedule = argv[i + 1];
    else if (std::strcmp(argv[i], "--live") == 0)
      live_path = argv[i + 1];
    else if (std::strcmp(argv[i], "--slot") == 0)
      slot = std::atoi(argv[i + 1]);
  }
  std::vector<event> events;
  if (schedule == nullptr || slot < 0 || slot >= 64 || !read_schedule(schedule, &events)) {
    std::fprintf(stderr, "usage: footprint_replay --schedule FILE [--live FILE --slot N]\n");
    return 2;
  }
  std::atomic<std::uint64_t>* live = nullptr;
  if (live_path != nullptr) {
    const int fd = open(live_path, O_RDWR | O_CLOEXEC);
    void* m =
        fd >= 0 ? mmap(nullptr, 64 * sizeof(std::uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
    if (fd >= 0) close(fd);
    if (m != MAP_FAILED) live = static_cast<std::atomic<std::uint64_t>*>(m) + slot;
  }
  (void)cudaFree(nullptr);  // the context before the clock starts: start-up is not the schedule's
  timespec start{};
  clock_gettime(CLOCK_MONOTONIC, &start);
  std::unordered_map<long long, std::pair<void*, std::size_t>> held;
  std::uint64_t now_live = 0, peak_live = 0;
  long long failures = 0;
  for (const event& e : events) {
    const long long wait = e.t_ms - now_ms(start);
    if (wait > 0) usleep(static_cast<useconds_t>(wait * 1000));
    if (e.alloc) {
      void* p = nullptr;
      if (cudaMalloc(&p, e.bytes) != cudaSuccess) {
        ++failures;
        continue;
      }
      held[e.id] = {p, e.bytes};
      now_live += e.bytes;
      if (now_live > peak_live) peak_live = now_live;
    } else {
      auto it = held.find(e.id);
      if (it == held.end()) continue;  // its allocation failed
      (void)cudaFree(it->second.first);
      now_live -= it->second.second;
      held.erase(it);
    }
    if (live != nullptr) live->store(now_live, std::memory_order_relaxed);
  }
  for (auto& [id, b] : held) (void)cudaFree(b.first);
  if (live != nullptr) live->store(0, std::memory_order_relaxed);
  const long long elapsed = now_ms(start);
  std::printf("replay: events=%zu failures=%lld peak_live=%llu elapsed_ms=%lld", events.size(), failures,
              static_cast<unsigned long long>(peak_live), elapsed);
  if (auto get = reinterpret_cast<poolshim_get_counters_fn>(dlsym(RTLD_DEFAULT, "poolshim_get_counters"))) {
    poolshim_counters c{};
    if (get(&c, sizeof c) != 0 && c.version >= 2)
      std::printf(" pool_requests=%llu pool_hits=%llu", static_cast<unsigned long long>(c.pool_requests),
                  static_cast<unsigned long long>(c.pool_hits));
  }
  std::printf("\n");
  return failures == 0 ? 0 : 1;
}

// Channels end to end (issue #15, first part) through libpoolshim_buffers and a daemon of its own
// (POOLSHIM_SOCKET): processes, not threads. Modes:
//   check          bad input; a send with no reader; three reader processes each get every
//                  message in order (wrapping the ring many times, back-pressure included); a late
//                  reader sees only what follows; too many readers; the writer's close
//   death          a writer's kill -9 seen by a waiting reader, and a reader's kill -9 freeing a
//                  writer blocked on it, each timed (goal: under 100 ms)
//   bench          one-way latency p50/p99 for 4 KiB, 64 KiB and 1 MiB messages, writer and reader
//                  in two processes, beside one memcpy of the payload and a Unix socket pair
//   survive        the daemon killed under an attached writer and reader: messages still flow
//   reader NAME N  (started by the others) opens NAME, says "ready", checks N messages
// Prints "channel_pair: OK" or FAIL lines; exit 0 only when everything held.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "poolshim/channel.h"

#define POOLSHIM_PAIR_PROGRAM "channel_pair"
#include "pair_checks.h"

extern char** environ;

namespace {

using pair_checks::failures;

double now_us() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) / 1e3;
}

std::vector<unsigned char> message(std::uint32_t n) {
  const std::uint32_t size = 8 + (n * 7919u) % 5000u;
  std::vector<unsigned char> v(size);
  std::memcpy(v.data(), &n, sizeof n);
  for (std::uint32_t i = 4; i < size; ++i) v[i] = static_cast<unsigned char>(n * 31u + i);
  return v;
}

// A child running this program with `args`; its stdout comes back through *out_fd.
pid_t spawn_self(const std::vector<std::string>& args, int* out_fd) {
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return -1;
  exe[n] = '\0';
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  std::vector<char*> argv{exe};
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, exe, &fa, nullptr, argv.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  *out_fd = p[0];
  return pid;
}

// Waits for a line on fd (a child's "ready"); false after 10 s.
bool read_line(int fd, std::string* line) {
  line->clear();
  for (;;) {
    pollfd f{fd, POLLIN, 0};
    if (poll(&f, 1, 10000) != 1) return false;
    char c = 0;
    if (read(fd, &c, 1) != 1) return false;
    if (c == '\n') return true;
    line->push_back(c);
  }
}

int reader(const char* name, std::uint32_t n) {
  poolshim_channel* c = nullptr;
  if (poolshim_channel_open(name, 0, &c) != POOLSHIM_OK) {
    std::printf("open failed: %s\n", poolshim_buffer_error());
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  for (std::uint32_t k = 0; k < n; ++k) {
    const void* p = nullptr;
    std::size_t bytes = 0;
    if (poolshim_channel_recv(c, &p, &bytes, 20000) != POOLSHIM_OK) {
      std::printf("recv %u: %s\n", k, poolshim_buffer_error());
      return 1;
    }
    const std::vector<unsigned char> want = message(k);
    if (bytes != want.size() || std::memcmp(p, want.data(), bytes) != 0) {
      std::printf("message %u differs\n", k);
      return 1;
    }
    poolshim_channel_release(c);
  }
  // The writer closes after its last message: the reader is told once it has read everything.
  const void* p = nullptr;
  std::size_t bytes = 0;
  const int last = poolshim_channel_recv(c, &p, &bytes, 20000);
  if (last != POOLSHIM_ECLOSED) {
    std::printf("after the last message: %d, not closed (%s)\n", last, poolshim_buffer_error());
    return 1;
  }
  poolshim_channel_close(c);
  return 0;
}

int check() {
  poolshim_channel* w = nullptr;
  EXPECT(poolshim_channel_create("ch.bad", 5000, 2, 0, &w) == POOLSHIM_EINVAL, "a capacity not a power of two");
  EXPECT(poolshim_channel_create("ch.bad", 4096, 0, 0, &w) == POOLSHIM_EINVAL, "no reader allowed");
  EXPECT(poolshim_channel_create("ch.bad", 4096, 65, 0, &w) == POOLSHIM_EINVAL, "65 readers");
  EXPECT(poolshim_channel_create("ch/bad", 4096, 2, 0, &w) == POOLSHIM_EINVAL, "a '/' in the name");
  EXPECT(poolshim_channel_open("ch.none", 0, &w) == POOLSHIM_ENOENT, "open of a missing channel");

  EXPECT(poolshim_channel_create("ch.test", 64 * 1024, 4, 0, &w) == POOLSHIM_OK, "create");
  if (w == nullptr) return 1;
  poolshim_channel* again = nullptr;
  EXPECT(poolshim_channel_create("ch.test", 64 * 1024, 4, 0, &again) == POOLSHIM_EEXIST, "a second create");
  const std::vector<unsigned char> one = message(0);
  EXPECT(poolshim_channel_send(w, one.data(), one.size(), 100) == POOLSHIM_ENOREADER, "a send with no reader");

  constexpr std::uint32_t k_messages = 5000;
  std::vector<pid_t> pids;
  std::vector<int> outs;
  for (int i = 0; i < 3; ++i) {
    int out = -1;
    const pid_t p = spawn_self({"reader", "ch.test", std::to_string(k_messages)}, &out);
    EXPECT(p > 0, "spawn reader %d", i);
    std::string line;
    EXPECT(read_line(out, &line) && line == "ready", "reader %d ready: '%s'", i, line.c_str());
    pids.push_back(p);
    outs.push_back(out);
  }
  poolshim_channel* extra = nullptr;
  EXPECT(poolshim_channel_open("ch.test", 0, &extra) == POOLSHIM_OK, "a fourth reader");
  poolshim_channel* fifth = nullptr;
  EXPECT(poolshim_channel_open("ch.test", 0, &fifth) == POOLSHIM_EQUOTA, "a fifth reader of four at most");
  if (extra != nullptr) EXPECT(poolshim_channel_close(extra) == POOLSHIM_OK, "the fourth leaves");
  const double t0 = now_us();
  for (std::uint32_t k = 0; k < k_messages; ++k) {
    const std::vector<unsigned char> m = message(k);
    const int r = poolshim_channel_send(w, m.data(), m.size(), 20000);
    if (r != POOLSHIM_OK) {
      EXPECT(r == POOLSHIM_OK, "send %u", k);
      break;
    }
  }
  const double t1 = now_us();
  EXPECT(poolshim_channel_close(w) == POOLSHIM_OK, "the writer closes");
  for (std::size_t i = 0; i < pids.size(); ++i) {
    int st = 0;
    waitpid(pids[i], &st, 0);
    char buf[512] = {};
    const ssize_t n = read(outs[i], buf, sizeof buf - 1);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "reader %zu: %s", i, n > 0 ? buf : "");
    close(outs[i]);
  }
  std::printf(
      "channel: %u messages of 8 B to 5 KB to 3 reader processes through a 64 KiB ring: %.0f ms (%.1f us each)\n",
      k_messages, (t1 - t0) / 1e3, (t1 - t0) / k_messages);
  // A message larger than half the ring travels in a named buffer of its own (by reference); one
  // larger than the daemon's region is refused with the reason.
  {
    poolshim_channel* bw = nullptr;
    poolshim_channel* br = nullptr;
    EXPECT(poolshim_channel_create("ch.big", 64 * 1024, 1, 0, &bw) == POOLSHIM_OK, "create ch.big");
    EXPECT(poolshim_channel_open("ch.big", 0, &br) == POOLSHIM_OK, "open ch.big");
    if (bw != nullptr && br != nullptr) {
      std::vector<unsigned char> big(3 << 20);
      for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<unsigned char>(i * 13);
      EXPECT(poolshim_channel_send(bw, big.data(), big.size(), 5000) == POOLSHIM_OK, "3 MiB through a 64 KiB ring");
      const void* p = nullptr;
      std::size_t bytes = 0;
      EXPECT(poolshim_channel_recv(br, &p, &bytes, 5000) == POOLSHIM_OK && bytes == big.size() &&
                 std::memcmp(p, big.data(), bytes) == 0,
             "it arrives whole (%zu bytes)", bytes);
      poolshim_channel_release(br);
      std::vector<unsigned char> huge(std::size_t{300} << 20);
      EXPECT(poolshim_channel_send(bw, huge.data(), huge.size(), 1000) == POOLSHIM_ENOMEM &&
                 std::strstr(poolshim_buffer_error(), "314572800 bytes") != nullptr,
             "a message larger than the region (256 MiB)");
    }
    if (br != nullptr) poolshim_channel_close(br);
    if (bw != nullptr) poolshim_channel_close(bw);
  }
  poolshim_channel* reuse = nullptr;
  EXPECT(poolshim_channel_create("ch.test", 4096, 1, 0, &reuse) == POOLSHIM_OK,
         "the name is free again once the writer closed");
  if (reuse != nullptr) poolshim_channel_close(reuse);
  if (failures == 0) std::printf("channel_pair: check OK\n");
  return failures == 0 ? 0 : 1;
}

int death() {
  // A reader waits; the writer's process is killed: the reader is told within 100 ms.
  {
    int out = -1;
    const pid_t writer = spawn_self({"writer-hold", "ch.death.w"}, &out);
    std::string line;
    EXPECT(writer > 0 && read_line(out, &line) && line == "ready", "the writer started");
    poolshim_channel* r = nullptr;
    EXPECT(poolshim_channel_open("ch.death.w", 0, &r) == POOLSHIM_OK, "open");
    if (r != nullptr) {
      const double t0 = now_us();
      kill(writer, SIGKILL);
      const void* p = nullptr;
      std::size_t bytes = 0;
      const int rc = poolshim_channel_recv(r, &p, &bytes, 5000);
      const double ms = (now_us() - t0) / 1e3;
      EXPECT(rc == POOLSHIM_ECLOSED && std::strstr(poolshim_buffer_error(), "died") != nullptr,
             "the reader is told the writer died (%d)", rc);
      std::printf("channel: writer kill -9 to its waiting reader told: %.1f ms (goal: under 100 ms)\n", ms);
      EXPECT(ms < 100, "within 100 ms (%.1f ms)", ms);
      poolshim_channel_close(r);
    }
    waitpid(writer, nullptr, 0);
    close(out);
  }
  // A writer blocks on a reader that never reads; the reader is killed: the writer goes on.
  {
    poolshim_channel* w = nullptr;
    EXPECT(poolshim_channel_create("ch.death.r", 4096, 2, 0, &w) == POOLSHIM_OK, "create");
    int out = -1;
    const pid_t rd = spawn_self({"reader-hold", "ch.death.r"}, &out);
    std::string line;
    EXPECT(rd > 0 && read_line(out, &line) && line == "ready", "the reader started");
    const std::vector<unsigned char> kb(1000);
    while (w != nullptr && poolshim_channel_send(w, kb.data(), kb.size(), 50) == POOLSHIM_OK) {
    }
    const double t0 = now_us();
    kill(rd, SIGKILL);
    const int rc = w != nullptr ? poolshim_channel_send(w, kb.data(), kb.size(), 5000) : -1;
    const double ms = (now_us() - t0) / 1e3;
    // Its only reader gone, the send is refused as with no reader at all: it does not hang.
    EXPECT(rc == POOLSHIM_ENOREADER, "the blocked send ends (%d)", rc);
    std::printf("channel: reader kill -9 to the writer blocked on it freed: %.1f ms (goal: under 100 ms)\n", ms);
    EXPECT(ms < 100, "within 100 ms (%.1f ms)", ms);
    if (w != nullptr) poolshim_channel_close(w);
    waitpid(rd, nullptr, 0);
    close(out);
  }
  if (failures == 0) std::printf("channel_pair: death OK\n");
  return failures == 0 ? 0 : 1;
}

// The daemon is killed while a writer and a reader are attached: the ring is their own shared
// mapping, so messages keep flowing (a dead peer is no longer reported until they attach again
// through a new daemon). Prints "attached" once both are, waits for a line on stdin (the test
// kills the daemon meanwhile), then checks 1,000 more messages.
int survive() {
  poolshim_channel* w = nullptr;
  poolshim_channel* r = nullptr;
  EXPECT(poolshim_channel_create("ch.survive", 64 * 1024, 1, 0, &w) == POOLSHIM_OK, "create");
  EXPECT(poolshim_channel_open("ch.survive", 0, &r) == POOLSHIM_OK, "open");
  if (w == nullptr || r == nullptr) return 1;
  std::printf("attached\n");
  std::fflush(stdout);
  char line[16];
  if (std::fgets(line, sizeof line, stdin) == nullptr) return 1;
  for (std::uint32_t k = 0; k < 1000; ++k) {
    const std::vector<unsigned char> m = message(k);
    if (poolshim_channel_send(w, m.data(), m.size(), 5000) != POOLSHIM_OK) {
      EXPECT(false, "send %u with the daemon gone", k);
      break;
    }
    const void* p = nullptr;
    std::size_t bytes = 0;
    if (poolshim_channel_recv(r, &p, &bytes, 5000) != POOLSHIM_OK || bytes != m.size() ||
        std::memcmp(p, m.data(), bytes) != 0) {
      EXPECT(false, "message %u with the daemon gone", k);
      break;
    }
    poolshim_channel_release(r);
  }
  if (failures == 0) std::printf("channel_pair: survive OK (1,000 messages after the daemon died)\n");
  return failures == 0 ? 0 : 1;
}

int hold(const char* name, bool as_writer) {
  poolshim_channel* c = nullptr;
  const int rc = as_writer ? poolshim_channel_create(name, 4096, 2, 0, &c) : poolshim_channel_open(name, 0, &c);
  if (rc != POOLSHIM_OK) {
    std::printf("failed: %s\n", poolshim_buffer_error());
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  for (;;) pause();
}

// One-way latency: the writer stamps each message with its send time; the reader takes the
// difference when it has the message in hand (one clock, two processes).
int bench_reader(const char* name, std::uint32_t n) {
  poolshim_channel* c = nullptr;
  if (poolshim_channel_open(name, 0, &c) != POOLSHIM_OK) return 1;
  std::printf("ready\n");
  std::fflush(stdout);
  std::vector<double> lat;
  for (std::uint32_t k = 0; k < n; ++k) {
    const void* p = nullptr;
    std::size_t bytes = 0;
    if (poolshim_channel_recv(c, &p, &bytes, 20000) != POOLSHIM_OK) return 1;
    double sent = 0;
    std::memcpy(&sent, p, sizeof sent);
    lat.push_back(now_us() - sent);
    poolshim_channel_release(c);
  }
  std::sort(lat.begin(), lat.end());
  std::printf("%.2f %.2f\n", lat[lat.size() / 2], lat[lat.size() * 99 / 100]);
  std::fflush(stdout);
  poolshim_channel_close(c);
  return 0;
}

// One-way latency through a channel of `capacity`: inline when the message fits half the ring,
// else through a buffer of its own. The reader's "p50 p99" in *line.
void channel_latency(std::size_t size, std::uint64_t capacity, std::uint32_t n, std::string* line) {
  const std::string name = "ch.bench." + std::to_string(size) + "." + std::to_string(capacity);
  poolshim_channel* w = nullptr;
  EXPECT(poolshim_channel_create(name.c_str(), capacity, 1, 0, &w) == POOLSHIM_OK, "create");
  if (w == nullptr) return;
  int out = -1;
  const pid_t rd = spawn_self({"bench-reader", name, std::to_string(n)}, &out);
  EXPECT(read_line(out, line) && *line == "ready", "bench reader");
  std::vector<unsigned char> payload(size, 0x5a);
  for (std::uint32_t k = 0; k < n; ++k) {
    const double t = now_us();
    std::memcpy(payload.data(), &t, sizeof t);
    if (poolshim_channel_send(w, payload.data(), size, 20000) != POOLSHIM_OK) break;
    const double until = t + 50 + static_cast<double>(size) / 2000.0;  // one message in flight
    while (now_us() < until) {
    }
  }
  EXPECT(read_line(out, line), "bench result");
  waitpid(rd, nullptr, 0);
  close(out);
  poolshim_channel_close(w);
}

int bench() {
  // The threshold: a 1 MiB message inline (an 8 MiB ring) against the same through a buffer of its
  // own (a 64 KiB ring, so it cannot go inline). Inline is the faster wherever it fits, so a
  // message goes by buffer only above half the ring (channel.h).
  {
    std::string inline_line, promoted_line;
    channel_latency(std::size_t{1} << 20, std::uint64_t{8} << 20, 500, &inline_line);
    channel_latency(std::size_t{1} << 20, 64 * 1024, 500, &promoted_line);
    std::printf("threshold: 1 MiB one-way p50/p99 us: inline %s; by a buffer of its own %s\n", inline_line.c_str(),
                promoted_line.c_str());
  }
  for (const std::size_t size : {std::size_t{4096}, std::size_t{65536}, std::size_t{1} << 20}) {
    constexpr std::uint32_t k_n = 2000;
    const std::string name = "ch.bench." + std::to_string(size);
    poolshim_channel* w = nullptr;
    EXPECT(poolshim_channel_create(name.c_str(), std::uint64_t{8} << 20, 1, 0, &w) == POOLSHIM_OK, "create");
    if (w == nullptr) return 1;
    int out = -1;
    const pid_t rd = spawn_self({"bench-reader", name, std::to_string(k_n)}, &out);
    std::string line;
    EXPECT(read_line(out, &line) && line == "ready", "bench reader");
    std::vector<unsigned char> payload(size, 0x5a);
    for (std::uint32_t k = 0; k < k_n; ++k) {
      const double t = now_us();
      std::memcpy(payload.data(), &t, sizeof t);
      if (poolshim_channel_send(w, payload.data(), size, 20000) != POOLSHIM_OK) break;
      // Paced: one message in flight at a time measures latency, not queueing.
      const double until = t + 50 + static_cast<double>(size) / 2000.0;
      while (now_us() < until) {
      }
    }
    EXPECT(read_line(out, &line), "bench result");
    waitpid(rd, nullptr, 0);
    close(out);
    poolshim_channel_close(w);
    // The same bytes through a Unix socket pair between two processes, and one memcpy.
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    std::vector<double> sock;
    const pid_t child = fork();
    if (child == 0) {
      close(sv[0]);
      std::vector<unsigned char> in(size);
      std::vector<double> lat;
      for (std::uint32_t k = 0; k < 500; ++k) {
        std::size_t got = 0;
        while (got < size) {
          const ssize_t n = read(sv[1], in.data() + got, size - got);
          if (n <= 0) _exit(1);
          got += static_cast<std::size_t>(n);
        }
        double sent = 0;
        std::memcpy(&sent, in.data(), sizeof sent);
        lat.push_back(now_us() - sent);
      }
      std::sort(lat.begin(), lat.end());
      const double r[2] = {lat[lat.size() / 2], lat[lat.size() * 99 / 100]};
      (void)!write(sv[1], r, sizeof r);
      _exit(0);
    }
    close(sv[1]);
    for (std::uint32_t k = 0; k < 500; ++k) {
      const double t = now_us();
      std::memcpy(payload.data(), &t, sizeof t);
      std::size_t put = 0;
      while (put < size) {
        const ssize_t n = write(sv[0], payload.data() + put, size - put);
        if (n <= 0) break;
        put += static_cast<std::size_t>(n);
      }
      const double until = t + 50 + static_cast<double>(size) / 500.0;
      while (now_us() < until) {
      }
    }
    double sr[2] = {0, 0};
    (void)!read(sv[0], sr, sizeof sr);
    waitpid(child, nullptr, 0);
    close(sv[0]);
    std::vector<unsigned char> dst(size);
    std::vector<double> mc;
    for (int k = 0; k < 200; ++k) {
      const double t = now_us();
      std::memcpy(dst.data(), payload.data(), size);
      mc.push_back(now_us() - t);
    }
    std::sort(mc.begin(), mc.end());
    double cp50 = 0, cp99 = 0;
    EXPECT(std::sscanf(line.c_str(), "%lf %lf", &cp50, &cp99) == 2, "the reader's figures: '%s'", line.c_str());
    std::printf(
        "one-way %7zu B: channel p50/p99 %.1f/%.1f us; unix socket p50/p99 %.1f/%.1f us; one memcpy p50 %.1f us\n",
        size, cp50, cp99, sr[0], sr[1], mc[mc.size() / 2]);
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "check" && argc == 2) return check();
  if (mode == "death" && argc == 2) return death();
  if (mode == "bench" && argc == 2) return bench();
  if (mode == "survive" && argc == 2) return survive();
  if (mode == "reader" && argc == 4) return reader(argv[2], static_cast<std::uint32_t>(std::atoi(argv[3])));
  if (mode == "bench-reader" && argc == 4) return bench_reader(argv[2], static_cast<std::uint32_t>(std::atoi(argv[3])));
  if (mode == "writer-hold" && argc == 3) return hold(argv[2], true);
  if (mode == "reader-hold" && argc == 3) return hold(argv[2], false);
  std::fprintf(stderr, "usage: channel_pair check | death | bench   (POOLSHIM_SOCKET names the daemon)\n");
  return mode == "--help" || mode == "-h" ? 0 : 2;
}

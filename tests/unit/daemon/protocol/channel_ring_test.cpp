// The channel ring (include/poolshim/channel_ring.h, issue #15) on a shared mapping, without the
// daemon: broadcast to every attached reader in order across many wraps, back-pressure and its
// timeout, a receive's timeout, what a late reader sees, the writer's close, a reader's detach
// freeing a blocked writer, a reader in another process (shared futexes), a reservation filled in
// place, and a sleeper counted so that a wake-up is made only for it.
#include "poolshim/channel_ring.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

namespace poolshim::channel {
namespace {

using clock_type = std::chrono::steady_clock;

struct ring {
  explicit ring(std::uint64_t capacity, std::uint32_t readers = 8) : bytes(mapping_bytes(capacity)) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    h = static_cast<header*>(p);
    init(h, capacity, readers);
    data = static_cast<unsigned char*>(p) + h->data_offset;
    h->writer.store(writer_attached);
  }
  ~ring() { munmap(h, bytes); }
  result send_bytes(const std::vector<unsigned char>& v, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    const void* parts[1] = {v.data()};
    const std::size_t sizes[1] = {v.size()};
    return send(h, shape_of(h), data, parts, sizes, 1, clock_type::now() + limit);
  }
  std::size_t bytes;
  header* h;
  unsigned char* data;
};

std::vector<unsigned char> message(std::uint32_t n) {
  const std::uint32_t size = 1 + (n * 7919u) % 3000u;  // 1 to 3000 bytes
  std::vector<unsigned char> v(size);
  for (std::uint32_t i = 0; i < size; ++i) v[i] = static_cast<unsigned char>(n * 31u + i);
  return v;
}

TEST(ChannelRing, EveryAttachedReaderGetsEveryMessageInOrderAcrossWraps) {
  ring r(64 * 1024);
  constexpr std::uint32_t k_messages = 20000, k_readers = 3;
  for (std::uint32_t s = 0; s < k_readers; ++s) attach(r.h, s, 1);
  std::atomic<std::uint32_t> bad{0};
  std::vector<std::thread> readers;
  for (std::uint32_t s = 0; s < k_readers; ++s)
    readers.emplace_back([&, s] {
      for (std::uint32_t n = 0; n < k_messages; ++n) {
        const unsigned char* p = nullptr;
        std::uint32_t bytes = 0;
        std::uint64_t next = 0;
        if (receive(r.h, shape_of(r.h), r.data, s, &p, &bytes, &next, clock_type::now() + std::chrono::seconds(20)) !=
            result::ok) {
          ++bad;
          return;
        }
        const std::vector<unsigned char> want = message(n);
        if (bytes != want.size() || std::memcmp(p, want.data(), bytes) != 0) ++bad;
        release(r.h, s, next);
      }
    });
  for (std::uint32_t n = 0; n < k_messages; ++n) ASSERT_EQ(r.send_bytes(message(n)), result::ok) << n;
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(r.h->messages.load(), k_messages);
  EXPECT_GT(r.h->head.load(), 10 * r.h->capacity) << "the ring wrapped many times";
}

TEST(ChannelRing, RefusalsAndTimeouts) {
  ring r(4096);
  EXPECT_EQ(r.send_bytes(message(1)), result::no_reader) << "nobody attached: refused, nothing lost";
  attach(r.h, 0, 1);
  EXPECT_EQ(r.send_bytes(std::vector<unsigned char>(4096)), result::too_large);
  const unsigned char* p = nullptr;
  std::uint32_t bytes = 0;
  std::uint64_t next = 0;
  auto t0 = clock_type::now();
  EXPECT_EQ(receive(r.h, shape_of(r.h), r.data, 0, &p, &bytes, &next, t0 + std::chrono::milliseconds(50)),
            result::timeout);
  EXPECT_GE(clock_type::now() - t0, std::chrono::milliseconds(50));
  // A reader that never releases: the ring fills, and the next send waits, then times out.
  const std::vector<unsigned char> kb(1000);
  int sent = 0;
  while (r.send_bytes(kb, std::chrono::milliseconds(30)) == result::ok) ++sent;
  EXPECT_EQ(sent, 4) << "4 records of 1008 bytes fit in 4096";
  t0 = clock_type::now();
  EXPECT_EQ(r.send_bytes(kb, std::chrono::milliseconds(50)), result::timeout);
  EXPECT_GE(clock_type::now() - t0, std::chrono::milliseconds(50));
  // Releasing one frees room for one.
  ASSERT_EQ(receive(r.h, shape_of(r.h), r.data, 0, &p, &bytes, &next, clock_type::now() + std::chrono::seconds(1)),
            result::ok);
  release(r.h, 0, next);
  EXPECT_EQ(r.send_bytes(kb, std::chrono::milliseconds(50)), result::ok);
}

TEST(ChannelRing, ALateReaderSeesOnlyWhatIsSentAfterItAttached) {
  ring r(16 * 1024);
  attach(r.h, 0, 1);
  ASSERT_EQ(r.send_bytes(message(1)), result::ok);
  attach(r.h, 1, 1);
  ASSERT_EQ(r.send_bytes(message(2)), result::ok);
  const unsigned char* p = nullptr;
  std::uint32_t bytes = 0;
  std::uint64_t next = 0;
  ASSERT_EQ(receive(r.h, shape_of(r.h), r.data, 1, &p, &bytes, &next, clock_type::now() + std::chrono::seconds(1)),
            result::ok);
  EXPECT_EQ(bytes, message(2).size());
  EXPECT_EQ(0, std::memcmp(p, message(2).data(), bytes));
}

TEST(ChannelRing, CloseIsSeenAfterTheBacklogAndADetachFreesABlockedWriter) {
  ring r(4096);
  attach(r.h, 0, 1);
  attach(r.h, 1, 1);
  const std::vector<unsigned char> kb(1000);
  while (r.send_bytes(kb, std::chrono::milliseconds(20)) == result::ok) {
  }
  // Reader 1 is gone: the writer no longer waits for it (reader 0 drains).
  std::thread drain([&] {
    for (int i = 0; i < 6; ++i) {
      const unsigned char* p = nullptr;
      std::uint32_t bytes = 0;
      std::uint64_t next = 0;
      if (receive(r.h, shape_of(r.h), r.data, 0, &p, &bytes, &next, clock_type::now() + std::chrono::seconds(5)) !=
          result::ok)
        return;
      release(r.h, 0, next);
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  detach(r.h, 1);
  EXPECT_EQ(r.send_bytes(kb, std::chrono::seconds(5)), result::ok);
  EXPECT_EQ(r.send_bytes(kb, std::chrono::seconds(5)), result::ok);
  drain.join();
  r.h->writer.store(writer_closed);
  wake_readers(r.h);
  const unsigned char* p = nullptr;
  std::uint32_t bytes = 0;
  std::uint64_t next = 0;
  EXPECT_EQ(receive(r.h, shape_of(r.h), r.data, 0, &p, &bytes, &next, clock_type::now() + std::chrono::seconds(1)),
            result::closed);
}

TEST(ChannelRing, AReaderInAnotherProcessWakesOnTheSharedFutex) {
  ring r(64 * 1024);
  attach(r.h, 0, 1);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int code = 0;
    for (std::uint32_t n = 0; n < 2000 && code == 0; ++n) {
      const unsigned char* p = nullptr;
      std::uint32_t bytes = 0;
      std::uint64_t next = 0;
      if (receive(r.h, shape_of(r.h), r.data, 0, &p, &bytes, &next, clock_type::now() + std::chrono::seconds(10)) !=
          result::ok)
        code = 2;
      else if (bytes != message(n).size() || std::memcmp(p, message(n).data(), bytes) != 0)
        code = 3;
      else
        release(r.h, 0, next);
    }
    _exit(code);
  }
  for (std::uint32_t n = 0; n < 2000; ++n) {
    ASSERT_EQ(r.send_bytes(message(n)), result::ok) << n;
    if (n % 500 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the reader sleeps
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// A reservation is invisible to readers until it is published; the payload is written in place.
TEST(ChannelRing, AReservationIsFilledInPlaceAndSeenOnlyOncePublished) {
  ring r(4096);
  attach(r.h, 0, 1);
  reservation res;
  EXPECT_EQ(reserve(r.h, shape_of(r.h), r.data, 2049, clock_type::now(), record_data, &res), result::too_large)
      << "over half";
  ASSERT_EQ(reserve(r.h, shape_of(r.h), r.data, 100, clock_type::now() + std::chrono::seconds(1), record_data, &res),
            result::ok);
  ASSERT_GE(res.payload, r.data);
  ASSERT_LE(res.payload + 100, r.data + 4096);
  std::memset(res.payload, 0x42, 100);
  const unsigned char* p = nullptr;
  std::uint32_t bytes = 0;
  std::uint64_t next = 0;
  EXPECT_EQ(
      receive(r.h, shape_of(r.h), r.data, 0, &p, &bytes, &next, clock_type::now() + std::chrono::milliseconds(20)),
      result::timeout)
      << "reserved, not published";
  publish(r.h, res);
  ASSERT_EQ(receive(r.h, shape_of(r.h), r.data, 0, &p, &bytes, &next, clock_type::now() + std::chrono::seconds(1)),
            result::ok);
  EXPECT_EQ(bytes, 100u);
  EXPECT_EQ(p, res.payload) << "read where it was written";
  EXPECT_EQ(p[0], 0x42);
  EXPECT_EQ(p[99], 0x42);
  EXPECT_EQ(r.h->messages.load(), 1u);
}

// A record that runs past the ring's end or past the head (a peer wrote the shared header or the
// ring) is refused, nothing of it read.
TEST(ChannelRing, ACorruptRecordIsRefusedNotRead) {
  ring r(4096);
  attach(r.h, 0, 1);
  ASSERT_EQ(r.send_bytes(std::vector<unsigned char>(100, 7)), result::ok);
  record_head bad{1u << 30, record_data};  // a gigabyte in a 4 KiB ring
  std::memcpy(r.data, &bad, sizeof bad);
  const unsigned char* p = nullptr;
  std::uint32_t bytes = 0;
  std::uint64_t next = 0;
  EXPECT_EQ(receive(r.h, shape_of(r.h), r.data, 0, &p, &bytes, &next, clock_type::now() + std::chrono::seconds(1)),
            result::corrupt);
  bad.bytes = 200;  // fits the ring, but runs past what was published (108 bytes)
  std::memcpy(r.data, &bad, sizeof bad);
  EXPECT_EQ(receive(r.h, shape_of(r.h), r.data, 0, &p, &bytes, &next, clock_type::now() + std::chrono::seconds(1)),
            result::corrupt);
  // A capacity written into the header later changes nothing: the shape is the one checked first.
  const shape checked = shape_of(r.h);
  r.h->capacity = std::uint64_t{1} << 40;
  r.h->max_readers = 0xffffffffu;
  EXPECT_EQ(attached_readers(r.h, checked.max_readers), 1u);
  EXPECT_EQ(receive(r.h, checked, r.data, 0, &p, &bytes, &next, clock_type::now() + std::chrono::seconds(1)),
            result::corrupt);
}

// With no spin a receive sleeps after its first look (a few rounds): it is counted in data_waiters while asleep (the
// publish makes its wake-up call for it), and nobody is counted once it has the message.
TEST(ChannelRing, ASleepingReaderIsCountedAndWoken) {
  ring r(64 * 1024);
  attach(r.h, 0, 1);
  EXPECT_EQ(r.h->data_waiters.load(), 0u);
  std::atomic<int> got{0};
  std::thread reader([&] {
    const unsigned char* p = nullptr;
    std::uint32_t bytes = 0;
    std::uint64_t next = 0;
    if (receive(r.h, shape_of(r.h), r.data, 0, &p, &bytes, &next, clock_type::now() + std::chrono::seconds(10), nullptr,
                std::chrono::microseconds(0)) == result::ok)
      got = static_cast<int>(bytes);
  });
  const auto until = clock_type::now() + std::chrono::seconds(5);
  while (r.h->data_waiters.load() == 0 && clock_type::now() < until) std::this_thread::yield();
  EXPECT_EQ(r.h->data_waiters.load(), 1u) << "the reader sleeps, counted";
  EXPECT_EQ(got.load(), 0);
  ASSERT_EQ(r.send_bytes(std::vector<unsigned char>(77, 1)), result::ok);
  reader.join();
  EXPECT_EQ(got.load(), 77);
  EXPECT_EQ(r.h->data_waiters.load(), 0u);
}

}  // namespace
}  // namespace poolshim::channel

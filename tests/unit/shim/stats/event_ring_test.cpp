// The event ring (shim/stats/event_ring.h) over a plain array: event i goes to slot i mod capacity
// with seq i + 1, so after wrapping the ring holds the newest `capacity` events; a writer the ring
// overtook, or one that finds its slot busy, drops its event; no ring, no events.
#include "stats/event_ring.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <thread>
#include <vector>

namespace poolshim::stats {
namespace {

struct ring_in_memory {
  explicit ring_in_memory(std::uint32_t capacity) : events(capacity), ring(events.data(), capacity, &next) {}
  std::vector<poolshim_stats_event> events;
  std::uint64_t next = 0;
  event_ring ring;
};

TEST(EventRing, EventIGoesToSlotIModCapacity) {
  EXPECT_EQ(event_ring::slot_of(0, 8), 0u);
  EXPECT_EQ(event_ring::slot_of(7, 8), 7u);
  EXPECT_EQ(event_ring::slot_of(8, 8), 0u);
  EXPECT_EQ(event_ring::slot_of(13, 8), 5u);
  EXPECT_EQ(event_ring::slot_of((std::uint64_t{1} << 40) + 3, 1024), 3u) << "the index is 64-bit";
}

TEST(EventRing, WrappingKeepsTheNewestEvents) {
  ring_in_memory r(8);
  for (std::uint64_t i = 0; i < 20; ++i)
    ASSERT_TRUE(r.ring.push(i % 3 == 0 ? POOLSHIM_STATS_EVENT_FREE : POOLSHIM_STATS_EVENT_ALLOC, 0x1000 + i, 100 + i,
                            static_cast<std::uint32_t>(i), 1, 2));
  EXPECT_EQ(r.next, 20u);
  for (std::uint64_t i = 12; i < 20; ++i) {
    const poolshim_stats_event& e = r.events[i % 8];
    EXPECT_EQ(e.seq, i + 1) << "slot " << i % 8 << " holds event " << i;
    EXPECT_EQ(e.ptr, 0x1000 + i);
    EXPECT_EQ(e.bytes, 100 + i);
    EXPECT_EQ(e.stack, i);
    EXPECT_EQ(e.device, 1u);
    EXPECT_EQ(e.kind, 2u);
    EXPECT_EQ(e.action, i % 3 == 0 ? POOLSHIM_STATS_EVENT_FREE : POOLSHIM_STATS_EVENT_ALLOC);
    EXPECT_NE(e.ns, 0u);
  }
}

TEST(EventRing, AnOvertakenOrBlockedWriterDropsItsEvent) {
  ring_in_memory r(4);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(r.ring.push(POOLSHIM_STATS_EVENT_ALLOC, 0x1000, 1, 1, 0, 0));
  // A writer that took index 1 long ago finds event 5 in its slot: it must not overwrite it.
  r.next = 1;
  EXPECT_FALSE(r.ring.push(POOLSHIM_STATS_EVENT_FREE, 0x2000, 1, 1, 0, 0));
  EXPECT_EQ(r.events[1].seq, 6u);
  EXPECT_EQ(r.events[1].ptr, 0x1000u);
  // A slot another writer is filling in (busy) is left to it.
  r.next = 10;  // slot 2
  r.events[2].seq = event_ring::k_busy;
  EXPECT_FALSE(r.ring.push(POOLSHIM_STATS_EVENT_FREE, 0x2000, 1, 1, 0, 0));
  EXPECT_EQ(r.events[2].seq, event_ring::k_busy);
  EXPECT_EQ(r.next, 11u) << "the index is used up either way";
}

TEST(EventRing, NoRingNoEvents) {
  event_ring none;
  EXPECT_EQ(none.capacity(), 0u);
  EXPECT_FALSE(none.push(POOLSHIM_STATS_EVENT_ALLOC, 0x1000, 1, 1, 0, 0));
  std::uint64_t next = 0;
  event_ring empty(nullptr, 0, &next);
  EXPECT_FALSE(empty.push(POOLSHIM_STATS_EVENT_ALLOC, 0x1000, 1, 1, 0, 0));
  EXPECT_EQ(next, 0u);
}

TEST(EventRing, EveryEventKeptIsWhole) {
  ring_in_memory r(64);
  constexpr int k_threads = 4, k_events = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < k_threads; ++t)
    threads.emplace_back([&r, t] {
      for (int i = 0; i < k_events; ++i) {
        const std::uint64_t v = (static_cast<std::uint64_t>(t) << 32) | static_cast<std::uint64_t>(i);
        (void)r.ring.push(POOLSHIM_STATS_EVENT_ALLOC, v, v, static_cast<std::uint32_t>(t), t, 0);
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(r.next, std::uint64_t{k_threads} * k_events);
  int whole = 0;
  for (const poolshim_stats_event& e : r.events) {
    if (e.seq == 0 || e.seq == event_ring::k_busy) continue;
    EXPECT_EQ(e.ptr, e.bytes);
    EXPECT_EQ(e.ptr >> 32, e.stack);
    EXPECT_EQ(e.device, e.stack);
    ++whole;
  }
  EXPECT_GT(whole, 0);
}

}  // namespace
}  // namespace poolshim::stats

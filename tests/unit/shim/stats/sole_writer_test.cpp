// Counting without the lock prefix while one thread records alone (shim/stats/sole_writer.h): the
// first thread to enter writes alone, a signal handler's event inside its update stays alone, the
// first event of another thread revokes it for good after the update it waited for, and counts
// made alone and shared at the same time add up exactly. Where the process cannot register for
// membarrier (or under TSan), every thread counts shared from the start.
#include "stats/sole_writer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

namespace poolshim::stats {
namespace {

// One increment of `c` as the recorder makes one: inside a scope, with the ops it granted.
void count_one(sole_writer& w, std::uint64_t& c) {
  const sole_scope scope(w);
  if (scope.sole())
    sole_ops::fetch_add(c, std::uint64_t{1});
  else
    locked_ops::fetch_add(c, std::uint64_t{1});
}

// A writer as the recorder's start leaves it; skips where this process cannot have a sole writer.
#define START_OR_SKIP(w) \
  (w).start();           \
  if ((w).shared()) GTEST_SKIP() << "no sole writer here (no membarrier, TSan or not x86-64)"

TEST(SoleWriter, TheFirstThreadWritesAloneUntilAnotherOneComes) {
  sole_writer w;
  START_OR_SKIP(w);
  for (int i = 0; i < 3; ++i) {
    const sole_scope scope(w);
    EXPECT_TRUE(scope.sole()) << i;
  }
  bool other_alone = true;
  std::thread([&] {
    const sole_scope scope(w);
    other_alone = scope.sole();
  }).join();
  EXPECT_FALSE(other_alone) << "another thread's first event revokes";
  EXPECT_TRUE(w.shared());
  const sole_scope scope(w);
  EXPECT_FALSE(scope.sole()) << "for good, the first thread too";
}

TEST(SoleWriter, ANestedEventInTheSoleWritersUpdateStaysAlone) {
  sole_writer w;
  START_OR_SKIP(w);
  {
    const sole_scope outer(w);
    ASSERT_TRUE(outer.sole());
    {
      const sole_scope nested(w);  // a signal handler's event, on the same thread
      EXPECT_TRUE(nested.sole());
    }
    EXPECT_TRUE(w.enter()) << "the outer update is still the sole writer's";
    w.leave(true);
  }
  // Balanced: nothing is left inside an update, so a revocation does not wait.
  const auto t0 = std::chrono::steady_clock::now();
  std::thread([&] { EXPECT_FALSE(w.enter()); }).join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(500));
}

TEST(SoleWriter, ARevocationWaitsForTheUpdateUnderWay) {
  sole_writer w;
  START_OR_SKIP(w);
  std::atomic<bool> inside{false}, left{false}, revoked_before_left{false};
  std::thread other;
  {
    const sole_scope scope(w);
    ASSERT_TRUE(scope.sole());
    other = std::thread([&] {
      while (!inside.load()) std::this_thread::yield();
      EXPECT_FALSE(w.enter());
      revoked_before_left = !left.load();
    });
    inside = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    left = true;  // the last thing inside the update: `other` may go on only after it
  }
  other.join();
  EXPECT_TRUE(w.shared());
  EXPECT_FALSE(revoked_before_left.load()) << "the other thread went on while the sole writer was updating";
}

// The race the protocol exists for: the sole writer counts without the lock prefix while other
// threads arrive, revoke and count with it; no increment may be lost.
TEST(SoleWriter, CountsMadeAloneAndSharedAddUpExactly) {
  for (int round = 0; round < 20; ++round) {
    sole_writer w;
    START_OR_SKIP(w);
    alignas(64) std::uint64_t c = 0;
    constexpr int k_alone = 200000, k_each = 50000, k_others = 3;
    std::atomic<bool> go{false};
    std::thread first([&] {
      for (int i = 0; i < k_alone; ++i) {
        count_one(w, c);
        if (i == 1000) go = true;  // the others arrive while this thread counts
      }
    });
    std::thread others[k_others];
    for (auto& t : others)
      t = std::thread([&] {
        while (!go.load()) std::this_thread::yield();
        for (int i = 0; i < k_each; ++i) count_one(w, c);
      });
    first.join();
    for (auto& t : others) t.join();
    ASSERT_EQ(c, std::uint64_t{k_alone} + k_others * std::uint64_t{k_each}) << "round " << round;
    EXPECT_TRUE(w.shared());
  }
}

TEST(SoleWriter, BeforeItsStartEveryThreadCountsShared) {
  sole_writer w;  // as constructed: shared (the recorder's start lets a thread take it)
  EXPECT_TRUE(w.shared());
  EXPECT_FALSE(w.enter());
  EXPECT_TRUE(w.shared()) << "nobody took it";
}

}  // namespace
}  // namespace poolshim::stats

// The conformance suite every segment_resource passes (RMM's model), as a typed test suite to
// instantiate once per family of resources: sizes, alignment, bad arguments, exhaustion gives
// out_of_memory and leaves the resource usable, deallocate returns capacity, injected failures,
// no overlap (one thread or several). It never touches segment memory, so device sources run it.
// Each type parameter is a "case": the factory of one resource and what may be asked of it (below).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "pool/segment_resource.h"

namespace poolshim::pool::suite {

// A case is default-constructible and provides:
//   static constexpr const char* name;        the instance's name in test names
//   static constexpr std::size_t granule;      segment sizes are the request rounded up to this (1: exact)
//   static constexpr std::size_t large_alignment;  alignment of segments of 2 MiB or more (smaller
//                                              ones: 512 B); 2 MiB where the source makes sure of it
//   bool ready() const;                        false: the resource could not be made (the test fails)
//   segment_resource& resource();
//   std::size_t limit() const;                 bytes of live segments after which it must refuse;
//                                              0: no limit a test can reach (exhaustion is skipped)
//   const char* no_limit_reason() const;       why, when limit() is 0
//   bool fail_next_allocation();               arranges for the next allocate() alone to fail with
//                                              out_of_memory; false: the source cannot be told to
//   const char* no_injection_reason() const;   why, when it returns false
// Every case must leave its resource empty when destroyed.

constexpr std::size_t kMiB = std::size_t{1} << 20;

constexpr std::size_t round_up(std::size_t v, std::size_t granule) { return (v + granule - 1) / granule * granule; }

template <class Case>
class SegmentResource : public ::testing::Test {
 protected:
  void SetUp() override {
    c_ = std::make_unique<Case>();
    ASSERT_TRUE(c_->ready()) << Case::name << ": the resource could not be made";
  }
  segment_resource& r() { return c_->resource(); }
  // Bytes the tests may hold at once: the limit, or a working set where there is none.
  std::size_t working_set() const { return c_->limit() != 0 ? c_->limit() : 64 * kMiB; }
  std::unique_ptr<Case> c_;
};

TYPED_TEST_SUITE_P(SegmentResource);

TYPED_TEST_P(SegmentResource, GivesSegmentsOfTheRequestedSizeRoundedUpToItsGranule) {
  for (std::size_t bytes : {std::size_t{512}, std::size_t{4096}, kMiB, 2 * kMiB, 3 * kMiB + 512, 8 * kMiB}) {
    segment s;
    ASSERT_EQ(this->r().allocate(bytes, &s), status::ok) << bytes;
    EXPECT_EQ(s.size, round_up(bytes, TypeParam::granule)) << bytes;
    EXPECT_NE(s.base, 0u);
    this->r().deallocate(s);
  }
}

TYPED_TEST_P(SegmentResource, AlignsSegmentsTo512BytesAndTwoMiBOnesToItsLargeAlignment) {
  for (std::size_t bytes : {std::size_t{1000}, kMiB + 512, 2 * kMiB, 5 * kMiB + 4096}) {
    segment s;
    ASSERT_EQ(this->r().allocate(bytes, &s), status::ok);
    EXPECT_EQ(s.base % (bytes >= 2 * kMiB ? TypeParam::large_alignment : 512), 0u) << bytes;
    this->r().deallocate(s);
  }
}

TYPED_TEST_P(SegmentResource, RejectsZeroBytesAndANullOutput) {
  segment s{1, 2, 3};
  EXPECT_EQ(this->r().allocate(0, &s), status::invalid_argument);
  EXPECT_EQ(s.base, 1u);
  EXPECT_EQ(s.size, 2u);
  EXPECT_EQ(this->r().allocate(4096, nullptr), status::invalid_argument);
}

TYPED_TEST_P(SegmentResource, ExhaustionGivesOutOfMemoryAndLeavesItUsable) {
  const std::size_t limit = this->c_->limit();
  if (limit == 0) GTEST_SKIP() << TypeParam::name << ": " << this->c_->no_limit_reason();
  std::vector<segment> held;
  segment s;
  status st;
  while ((st = this->r().allocate(8 * kMiB, &s)) == status::ok) {
    held.push_back(s);
    ASSERT_LE(held.size() * 8 * kMiB, limit);
  }
  EXPECT_EQ(st, status::out_of_memory);
  EXPECT_EQ(held.size(), limit / (8 * kMiB));
  segment small{7, 8, 9};
  EXPECT_EQ(this->r().allocate(4096, &small), status::out_of_memory);
  EXPECT_EQ(small.base, 7u) << "a failed allocate wrote its output";
  ASSERT_FALSE(held.empty());
  this->r().deallocate(held.back());
  held.pop_back();
  ASSERT_EQ(this->r().allocate(8 * kMiB, &s), status::ok);
  held.push_back(s);
  for (const segment& h : held) this->r().deallocate(h);
}

TYPED_TEST_P(SegmentResource, DeallocateReturnsCapacity) {
  for (int round = 0; round < 3; ++round) {
    std::vector<segment> held(this->working_set() / (2 * kMiB));
    for (segment& h : held) ASSERT_EQ(this->r().allocate(2 * kMiB, &h), status::ok) << round;
    for (const segment& h : held) this->r().deallocate(h);
  }
}

TYPED_TEST_P(SegmentResource, InjectedFailureGivesOutOfMemoryOnceAndLeavesItUsable) {
  if (!this->c_->fail_next_allocation()) GTEST_SKIP() << TypeParam::name << ": " << this->c_->no_injection_reason();
  segment s{7, 8, 9};
  EXPECT_EQ(this->r().allocate(2 * kMiB, &s), status::out_of_memory);
  EXPECT_EQ(s.base, 7u) << "a failed allocate wrote its output";
  ASSERT_EQ(this->r().allocate(2 * kMiB, &s), status::ok);
  this->r().deallocate(s);
}

TYPED_TEST_P(SegmentResource, SegmentsNeverOverlap) {
  std::mt19937 rng(7);
  std::vector<segment> held;
  // Where the resource has no limit, the test keeps to a working set instead of failing at one.
  const std::size_t budget = this->c_->limit() != 0 ? ~std::size_t{0} : this->working_set();
  std::size_t held_bytes = 0;
  for (int i = 0; i < 200; ++i) {
    if (!held.empty() && rng() % 3 == 0) {
      const std::size_t k = rng() % held.size();
      this->r().deallocate(held[k]);
      held_bytes -= held[k].size;
      held.erase(held.begin() + static_cast<std::ptrdiff_t>(k));
      continue;
    }
    segment s;
    const std::size_t bytes = 512 * (1 + rng() % 8192);
    if (held_bytes + round_up(bytes, TypeParam::granule) > budget) continue;
    if (this->r().allocate(bytes, &s) == status::ok) {
      held.push_back(s);
      held_bytes += s.size;
    }
  }
  std::sort(held.begin(), held.end(), [](const segment& a, const segment& b) { return a.base < b.base; });
  for (std::size_t i = 1; i < held.size(); ++i) EXPECT_LE(held[i - 1].base + held[i - 1].size, held[i].base);
  for (const segment& h : held) this->r().deallocate(h);
}

// The pools call their source from whatever thread misses, without a lock of their own.
TYPED_TEST_P(SegmentResource, ThreadsAllocatingAtOnceGetDisjointSegments) {
  constexpr int kThreads = 4;
  const std::size_t per_thread = std::min<std::size_t>(this->working_set(), 64 * kMiB) / (2 * kMiB) / kThreads;
  std::vector<std::vector<segment>> got(kThreads);
  std::vector<int> failures(kThreads, 0);
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        for (std::size_t i = 0; i < per_thread; ++i) {
          segment s;
          if (this->r().allocate(2 * kMiB, &s) == status::ok)
            got[t].push_back(s);
          else
            ++failures[t];
        }
      });
    for (std::thread& th : threads) th.join();
  }
  std::vector<segment> all;
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(failures[t], 0) << "thread " << t;
    all.insert(all.end(), got[t].begin(), got[t].end());
  }
  EXPECT_EQ(all.size(), per_thread * kThreads);
  std::sort(all.begin(), all.end(), [](const segment& a, const segment& b) { return a.base < b.base; });
  for (std::size_t i = 1; i < all.size(); ++i) EXPECT_LE(all[i - 1].base + all[i - 1].size, all[i].base);
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        for (const segment& s : got[t]) this->r().deallocate(s);
      });
    for (std::thread& th : threads) th.join();
  }
}

REGISTER_TYPED_TEST_SUITE_P(SegmentResource, GivesSegmentsOfTheRequestedSizeRoundedUpToItsGranule,
                            AlignsSegmentsTo512BytesAndTwoMiBOnesToItsLargeAlignment, RejectsZeroBytesAndANullOutput,
                            ExhaustionGivesOutOfMemoryAndLeavesItUsable, DeallocateReturnsCapacity,
                            InjectedFailureGivesOutOfMemoryOnceAndLeavesItUsable, SegmentsNeverOverlap,
                            ThreadsAllocatingAtOnceGetDisjointSegments);

// Names instances after their case (Fakes/SegmentResource/limit_adaptor.DeallocateReturnsCapacity).
struct case_names {
  template <class Case>
  static std::string GetName(int) {
    return Case::name;
  }
};

}  // namespace poolshim::pool::suite

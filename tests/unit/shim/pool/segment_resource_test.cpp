// The conformance suite every segment_resource passes (RMM's model): sizes, alignment, exhaustion
// gives out_of_memory and leaves the resource usable, deallocate returns capacity, no overlap.
// It never touches segment memory, so the CUDA-backed resource can be added to `all_resources`.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "support/fake_segment_resource.h"
#include "pool/limit_resource_adaptor.h"

namespace poolshim::pool {
namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

// A case provides the resource and the number of bytes after which it must refuse.
struct fake_case {
  static constexpr std::size_t limit = 64 * kMiB;
  fake_segment_resource resource{limit};
};

struct limit_adaptor_case {
  static constexpr std::size_t limit = 64 * kMiB;
  fake_segment_resource upstream;
  limit_resource_adaptor resource{upstream, limit};
};

template <class Case>
class SegmentResource : public ::testing::Test {
 protected:
  segment_resource& r() { return c_.resource; }
  Case c_;
};

using all_resources = ::testing::Types<fake_case, limit_adaptor_case>;
TYPED_TEST_SUITE(SegmentResource, all_resources);

TYPED_TEST(SegmentResource, GivesSegmentsOfExactlyTheRequestedSize) {
  for (std::size_t bytes : {std::size_t{512}, std::size_t{4096}, kMiB, 2 * kMiB, 3 * kMiB + 512, 8 * kMiB}) {
    segment s;
    ASSERT_EQ(this->r().allocate(bytes, &s), status::ok) << bytes;
    EXPECT_EQ(s.size, bytes);
    EXPECT_NE(s.base, 0u);
    this->r().deallocate(s);
  }
}

TYPED_TEST(SegmentResource, AlignsTwoMiBSegmentsTo2MiBAndSmallerOnesTo512Bytes) {
  for (std::size_t bytes : {std::size_t{1000}, kMiB + 512, 2 * kMiB, 5 * kMiB + 4096}) {
    segment s;
    ASSERT_EQ(this->r().allocate(bytes, &s), status::ok);
    EXPECT_EQ(s.base % (bytes >= 2 * kMiB ? 2 * kMiB : 512), 0u) << bytes;
    this->r().deallocate(s);
  }
}

TYPED_TEST(SegmentResource, RejectsZeroBytes) {
  segment s{1, 2, 3};
  EXPECT_EQ(this->r().allocate(0, &s), status::invalid_argument);
  EXPECT_EQ(s.base, 1u);
}

TYPED_TEST(SegmentResource, ExhaustionGivesOutOfMemoryAndLeavesItUsable) {
  std::vector<segment> held;
  segment s;
  status st;
  while ((st = this->r().allocate(8 * kMiB, &s)) == status::ok) {
    held.push_back(s);
    ASSERT_LE(held.size() * 8 * kMiB, TypeParam::limit);
  }
  EXPECT_EQ(st, status::out_of_memory);
  EXPECT_EQ(held.size(), TypeParam::limit / (8 * kMiB));
  segment small;
  EXPECT_EQ(this->r().allocate(4096, &small), status::out_of_memory);
  this->r().deallocate(held.back());
  held.pop_back();
  ASSERT_EQ(this->r().allocate(8 * kMiB, &s), status::ok);
  held.push_back(s);
  for (const segment& h : held) this->r().deallocate(h);
}

TYPED_TEST(SegmentResource, DeallocateReturnsCapacity) {
  for (int round = 0; round < 3; ++round) {
    std::vector<segment> held(TypeParam::limit / (2 * kMiB));
    for (segment& h : held) ASSERT_EQ(this->r().allocate(2 * kMiB, &h), status::ok) << round;
    for (const segment& h : held) this->r().deallocate(h);
  }
}

TYPED_TEST(SegmentResource, SegmentsNeverOverlap) {
  std::mt19937 rng(7);
  std::vector<segment> held;
  for (int i = 0; i < 200; ++i) {
    if (!held.empty() && rng() % 3 == 0) {
      const std::size_t k = rng() % held.size();
      this->r().deallocate(held[k]);
      held.erase(held.begin() + static_cast<std::ptrdiff_t>(k));
      continue;
    }
    segment s;
    const std::size_t bytes = 512 * (1 + rng() % 8192);
    if (this->r().allocate(bytes, &s) == status::ok) held.push_back(s);
  }
  std::sort(held.begin(), held.end(), [](const segment& a, const segment& b) { return a.base < b.base; });
  for (std::size_t i = 1; i < held.size(); ++i) EXPECT_LE(held[i - 1].base + held[i - 1].size, held[i].base);
  for (const segment& h : held) this->r().deallocate(h);
}

TEST(FakeSegmentResource, FailsTheNthAllocationOnlyAndCountsCalls) {
  fake_segment_resource r;
  r.fail_nth_allocation(2);
  segment a, b, c;
  EXPECT_EQ(r.allocate(4096, &a), status::ok);
  EXPECT_EQ(r.allocate(4096, &b), status::out_of_memory);
  EXPECT_EQ(r.allocate(4096, &c), status::ok);
  r.deallocate(a);
  r.deallocate(c);
  EXPECT_EQ(r.allocate_calls(), 3u);
  EXPECT_EQ(r.failed_calls(), 1u);
  EXPECT_EQ(r.deallocate_calls(), 2u);
  EXPECT_EQ(r.bytes_in_use(), 0u);
  EXPECT_EQ(r.live_segments(), 0u);
}

}  // namespace
}  // namespace poolshim::pool

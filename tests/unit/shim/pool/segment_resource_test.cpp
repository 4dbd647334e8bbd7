// The segment-resource conformance suite (support/segment_resource_suite.h) on the pure-C++
// resources: the host-memory fake and the limit adaptor over it. The real sources run the same
// suite on the simulator in tests/unit/shim/source/segment_source_test.cpp.
#include <gtest/gtest.h>

#include "support/fake_segment_resource.h"
#include "support/limit_resource_adaptor.h"
#include "support/segment_resource_suite.h"

namespace poolshim::pool {
namespace segment_resource_test {  // named, not anonymous: a unity build puts several test files in one unit

using suite::kMiB;

struct fake_case {
  static constexpr const char* name = "fake";
  static constexpr std::size_t granule = 1;
  static constexpr std::size_t large_alignment = 2 * kMiB;
  bool ready() const { return true; }
  segment_resource& resource() { return resource_; }
  std::size_t limit() const { return 64 * kMiB; }
  const char* no_limit_reason() const { return ""; }
  bool fail_next_allocation() {
    resource_.fail_nth_allocation(1);
    return true;
  }
  const char* no_injection_reason() const { return ""; }
  fake_segment_resource resource_{64 * kMiB};
};

struct limit_adaptor_case {
  static constexpr const char* name = "limit_adaptor";
  static constexpr std::size_t granule = 1;
  static constexpr std::size_t large_alignment = 2 * kMiB;
  bool ready() const { return true; }
  segment_resource& resource() { return resource_; }
  std::size_t limit() const { return 64 * kMiB; }
  const char* no_limit_reason() const { return ""; }
  // A failure of the upstream passes through, and the adaptor gives the bytes back.
  bool fail_next_allocation() {
    upstream_.fail_nth_allocation(1);
    return true;
  }
  const char* no_injection_reason() const { return ""; }
  fake_segment_resource upstream_;
  limit_resource_adaptor resource_{upstream_, 64 * kMiB};
};

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

TEST(LimitResourceAdaptor, AFailedUpstreamAllocationGivesItsBytesBack) {
  fake_segment_resource upstream;
  limit_resource_adaptor r(upstream, 4 * kMiB);
  upstream.fail_nth_allocation(1);
  segment s;
  EXPECT_EQ(r.allocate(4 * kMiB, &s), status::out_of_memory);
  EXPECT_EQ(r.bytes_in_use(), 0u);
  ASSERT_EQ(r.allocate(4 * kMiB, &s), status::ok);
  EXPECT_EQ(r.bytes_in_use(), 4 * kMiB);
  r.deallocate(s);
  EXPECT_EQ(r.bytes_in_use(), 0u);
}

using fakes = ::testing::Types<fake_case, limit_adaptor_case>;

}  // namespace segment_resource_test

namespace suite {
INSTANTIATE_TYPED_TEST_SUITE_P(Fakes, SegmentResource, segment_resource_test::fakes, case_names);
}  // namespace suite

}  // namespace poolshim::pool

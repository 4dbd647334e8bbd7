// poolshim-replay's core: two handcrafted traces whose figures are worked out by hand for each
// policy (the reasoning is in the comments, event by event), the text format's refusals, and the
// hit rule (no driver allocation in the call) against the pool's own counters.
#include "replay/replay.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "replay/policies.h"
#include "replay/trace.h"

namespace poolshim::replay {
namespace {

constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
constexpr std::uint64_t kKiB = 1024;

trace parse(const std::string& text) {
  std::istringstream in(text);
  return parse_text_trace(in, "handcrafted");
}

// Sizes in MiB: A 1 (small pool everywhere), B 3, C 0.5, D 4, E 2. Live: 1, 4, 4.5, 3.5 (A
// freed), 7.5 (peak), 4.5 (B freed), 6.5, then nothing.
const char* kTiny = R"(# poolshim-trace 1
# A tiny trace for hand-computed figures
a 1 1048576
a 2 3145728
a 3 524288
f 1
t 150
a 4 4194304
f 2
a 5 2097152
f 3
f 4
f 5
)";

policy_result run(const trace& t, const std::string& name, const policy_options& o = {}) {
  const auto p = make_policy(name, o);
  EXPECT_TRUE(p != nullptr) << name;
  return p != nullptr ? replay(t, *p) : policy_result{};
}

TEST(ReplayTrace, ParsesEventsAndComputesPeakLive) {
  const trace t = parse(kTiny);
  EXPECT_EQ(t.allocations, 5u);
  EXPECT_EQ(t.frees, 5u);
  EXPECT_EQ(t.peak_live, 7 * kMiB + 512 * kKiB);
  EXPECT_EQ(t.slots, 3u);  // at most three live at once: slots are reused after frees
  EXPECT_FALSE(t.adversarial);
  EXPECT_EQ(t.events.size(), 11u);  // ten allocations and frees, one time mark
}

// No caching: reserved is live (every size is a multiple of 512 B), ten driver calls, none saved.
TEST(ReplayPolicies, NoCachingReservesExactlyWhatIsLive) {
  const policy_result r = run(parse(kTiny), "none");
  EXPECT_EQ(r.peak_reserved, 7 * kMiB + 512 * kKiB);
  EXPECT_DOUBLE_EQ(r.ratio, 1.0);
  EXPECT_EQ(r.segments, 5u);
  EXPECT_EQ(r.driver_frees, 5u);
  EXPECT_EQ(r.hits, 0u);
  EXPECT_DOUBLE_EQ(r.calls_saved, 0.0);
  EXPECT_EQ(r.end_reserved, 0u);
}

// Region, 2 MiB chunks. A: grow 2 (A at 0-1, free 1-2). B 3: the free tail 1-2 runs on, grow 2
// (B at 1-4). C: grow 2 (C at 4-4.5, free 4.5-6). free A: free 0-1. D 4: no fit; tail 4.5-6 (1.5)
// runs on, grow round_up(2.5) = 4 (D at 4.5-8.5, region 10). free B: merges into 0-4. E 2: first
// fit at 0 (a hit). Peak 10 MiB, four growths, never shrinks.
TEST(ReplayPolicies, FirstFitRegionGrowsByChunksAndCoalesces) {
  const policy_result r = run(parse(kTiny), "region");
  EXPECT_EQ(r.peak_reserved, 10 * kMiB);
  EXPECT_EQ(r.segments, 4u);
  EXPECT_EQ(r.hits, 1u);
  EXPECT_EQ(r.driver_frees, 0u);
  EXPECT_DOUBLE_EQ(r.hit_rate, 0.2);
  EXPECT_DOUBLE_EQ(r.calls_saved, 0.6);
  EXPECT_EQ(r.end_reserved, 10 * kMiB);
}

// Torch model. A (1 MiB, small pool): a 2 MiB segment, split (rest 1 MiB >= 512 B). B (3 MiB,
// large): a 20 MiB segment, split (rest 17 > 1 MiB). C: best fit, the small pool's 1 MiB rest,
// split. D 4: best fit, the 17 MiB rest, split (13 left). free B: 3 MiB free, D holds its
// neighbour. E 2: best fit the 3 MiB block; its rest is exactly 1 MiB, not > 1 MiB: not split.
// Peak 22 MiB, two segments, three hits.
TEST(ReplayPolicies, TorchModelFollowsItsDocumentedRules) {
  const policy_result r = run(parse(kTiny), "torch");
  EXPECT_EQ(r.peak_reserved, 22 * kMiB);
  EXPECT_EQ(r.segments, 2u);
  EXPECT_EQ(r.hits, 3u);
  EXPECT_DOUBLE_EQ(r.hit_rate, 0.6);
  EXPECT_DOUBLE_EQ(r.calls_saved, 0.8);
  EXPECT_NEAR(r.ratio, 22.0 / 7.5, 1e-12);
}

// Poolshim defaults (idle bound 10% of the most in use, reuse up to a quarter larger). A: a 2 MiB
// small segment (nothing idle to return). B: a dedicated 3 MiB segment (3 MiB is a class); the
// bound (4 MiB in use at most: 4.4 allowed, 5 wanted) finds only A's segment's free half, not
// releasable. C: the small segment's free 1 MiB, split (a hit). free A: into the thread cache. D:
// a 4 MiB segment (7.5 MiB in use at most, 8.25 allowed, 9 wanted; nothing releasable): the peak,
// 9 MiB. free B: idle, whole. E 2 MiB: B (3 MiB) is more than a quarter larger, so a new segment;
// 9 + 2 exceeds 8.25 with 3.5 MiB idle, so B goes back first (largest first, down to 0.5 MiB idle),
// then 2 MiB: 8 MiB. Four segments, one driver free, one hit.
TEST(ReplayPolicies, PoolshimPoolReturnsIdleBlocksBeforeGrowingPastTheBound) {
  const trace t = parse(kTiny);
  poolshim_policy p{policy_options{}};
  const policy_result r = replay(t, p);
  EXPECT_EQ(r.peak_reserved, 9 * kMiB);
  EXPECT_EQ(r.segments, 4u);
  EXPECT_EQ(r.driver_frees, 1u);
  EXPECT_EQ(r.hits, 1u);
  EXPECT_DOUBLE_EQ(r.calls_saved, 0.5);  // 1 - (4 + 1) / 10
  EXPECT_EQ(r.end_reserved, 8 * kMiB);
  // The pool's own figures agree with the counting source's.
  const pool::pool_stats s = p.pool_stats();
  EXPECT_EQ(s.peak_reserved, r.peak_reserved);
  EXPECT_EQ(s.pool_hits, r.hits);
  EXPECT_EQ(s.requests, 5u);
  EXPECT_EQ(s.segments, 3u);  // held now: A's small segment, D's and E's
  EXPECT_EQ(s.bound_releases, 1u);
}

// Without the bound (--idle-percent off), the old behaviour: B stays cached and E takes a segment
// beside it. Peak 2 + 3 + 4 + 2 = 11 MiB, no driver free.
TEST(ReplayPolicies, PoolshimWithoutTheIdleBoundKeepsEveryIdleBlock) {
  policy_options o;
  o.pool.idle_percent = pool::kNoIdleBound;
  const policy_result r = run(parse(kTiny), "poolshim", o);
  EXPECT_EQ(r.peak_reserved, 11 * kMiB);
  EXPECT_EQ(r.segments, 4u);
  EXPECT_EQ(r.driver_frees, 0u);
  EXPECT_EQ(r.hits, 1u);
}

// A cache limit of 1 byte keeps nothing idle: each free of a large block returns segments at once
// (B's before E comes, so E's segment replaces it; then D's and E's). The small segment stays: A
// and C sit in the thread cache, which a free's trim does not flush.
TEST(ReplayPolicies, PoolshimCacheLimitReturnsIdleSegments) {
  policy_options o;
  o.pool.idle_limit = 1;
  const policy_result r = run(parse(kTiny), "poolshim", o);
  EXPECT_EQ(r.peak_reserved, 9 * kMiB);  // 2 + 3 + 4 while D is live
  EXPECT_EQ(r.driver_frees, 3u);         // B, D, E
  EXPECT_EQ(r.end_reserved, 2 * kMiB);
}

// A 6 MiB device: A 3 MiB, free A, B 5 MiB.
const char* kLimited = R"(# poolshim-trace 1
a 7 3145728
f 7
a 8 5242880
f 8
)";

TEST(ReplayPolicies, DeviceLimitMakesPoliciesReleaseOrFail) {
  const trace t = parse(kLimited);
  policy_options o;
  o.device_limit = 6 * kMiB;
  // No caching: 3, then 5.
  policy_result r = run(t, "none", o);
  EXPECT_EQ(r.peak_reserved, 5 * kMiB);
  EXPECT_EQ(r.failures, 0u);
  // Region: grow 4 for A; B finds the free 4 at the end, grows 2: exactly the 6 MiB.
  r = run(t, "region", o);
  EXPECT_EQ(r.peak_reserved, 6 * kMiB);
  EXPECT_EQ(r.segments, 2u);
  EXPECT_EQ(r.failures, 0u);
  // Torch: 3 and 5 MiB each want a 20 MiB segment: refused, nothing cached to release: both fail.
  r = run(t, "torch", o);
  EXPECT_EQ(r.failures, 2u);
  EXPECT_EQ(r.served, 0u);
  EXPECT_EQ(r.peak_reserved, 0u);
  // Poolshim: A's 3 MiB segment is idle; before B's 5 MiB segment the idle bound (5.5 MiB allowed,
  // 8 wanted) returns it, so the device never refuses.
  r = run(t, "poolshim", o);
  EXPECT_EQ(r.failures, 0u);
  EXPECT_EQ(r.peak_reserved, 5 * kMiB);
  EXPECT_EQ(r.segments, 2u);
  EXPECT_EQ(r.driver_frees, 1u);
}

// Torch's whole-segment release on a refusal: A (3 MiB) takes a 20 MiB segment, freed whole; B
// (25 MiB) does not fit beside it on a 40 MiB device, so the cached segment goes first.
TEST(ReplayPolicies, TorchReleasesWholeCachedSegmentsWhenTheDriverRefuses) {
  const trace t = parse("# poolshim-trace 1\na 1 3145728\nf 1\na 2 26214400\nf 2\n");
  policy_options o;
  o.device_limit = 40 * kMiB;
  const policy_result r = run(t, "torch", o);
  EXPECT_EQ(r.failures, 0u);
  EXPECT_EQ(r.driver_frees, 1u);
  EXPECT_EQ(r.peak_reserved, 26 * kMiB);  // 25 MiB rounded up to 2 MiB
}

// The device model reuses a freed range of the same size: four 4 GiB allocations one after the
// other need 4 GiB of address space, not 16. The device's address space is shrunk to 6 GiB here
// (the real one ends at 2^47, the pool's pointer map taking 48 bits of address), so that a model
// that never reuses runs out at the second allocation. The same test at 2^46 bytes a block took a
// minute under TSan: the pointer map publishes a 64 TiB segment in each of its 32 M chunks.
TEST(ReplayPolicies, AddressSpaceOfFreedDriverAllocationsIsReused) {
  constexpr std::uint64_t kBlock = std::uint64_t{4} << 30;
  std::string text = "# poolshim-trace 1\n";
  for (int i = 0; i < 4; ++i) text += "a 1 " + std::to_string(kBlock) + "\nf 1\n";
  policy_options o;
  o.address_end = device_model::k_first_address + kBlock + (kBlock / 2);
  for (const std::string& name : policy_names()) {
    const policy_result r = run(parse(text), name, o);
    EXPECT_EQ(r.failures, 0u) << name;
    EXPECT_EQ(r.peak_reserved, kBlock) << name;
  }
}

// Without reuse (sizes that differ by a page each time) the same space runs out: the bound holds.
TEST(ReplayPolicies, AddressSpaceBeyondTheDeviceIsRefusedNotWrapped) {
  constexpr std::uint64_t kBlock = std::uint64_t{4} << 30;
  device_model device(512, 0, device_model::k_first_address + kBlock + (kBlock / 2));
  EXPECT_NE(device.allocate(kBlock), 0u);
  EXPECT_EQ(device.allocate(kBlock + 4096), 0u);
  EXPECT_EQ(device.refusals(), 1u);
}

TEST(ReplayTrace, RefusesBrokenTraces) {
  EXPECT_THROW(parse("a 1 10\n"), trace_error);                                  // no header
  EXPECT_THROW(parse("# poolshim-trace 1\nf 1\n"), trace_error);                 // free of nothing
  EXPECT_THROW(parse("# poolshim-trace 1\na 1 10\na 1 10\n"), trace_error);      // live name again
  EXPECT_THROW(parse("# poolshim-trace 1\na 1 0\n"), trace_error);               // 0 bytes
  EXPECT_THROW(parse("# poolshim-trace 1\na 1 70368744177665\n"), trace_error);  // 2^46 + 1
  EXPECT_THROW(parse("# poolshim-trace 1\na 1 -5\n"), trace_error);              // a sign
  EXPECT_THROW(parse("# poolshim-trace 1\na 1 10 extra\n"), trace_error);        // trailing text
  EXPECT_THROW(parse("# poolshim-trace 1\nx 1\n"), trace_error);                 // unknown event
  try {
    parse("# poolshim-trace 1\na 1 10\n\nf 2\n");
    FAIL() << "no error";
  } catch (const trace_error& e) {
    EXPECT_NE(std::string(e.what()).find("handcrafted:4:"), std::string::npos) << e.what();
  }
  // A name may be used again after its free; hex names are names too.
  const trace t = parse("# poolshim-trace 1\n# class: adversarial\na 0x10 10\nf 16\na 16 20\n");
  EXPECT_EQ(t.allocations, 2u);
  EXPECT_TRUE(t.adversarial);
}

TEST(ReplayTrace, TextRoundTripKeepsEveryEvent) {
  const trace t = parse(kTiny);
  std::ostringstream out;
  write_text_trace(out, t, {"a header line"});
  const trace back = parse(out.str());
  ASSERT_EQ(back.events.size(), t.events.size());
  for (std::size_t i = 0; i < t.events.size(); ++i) {
    EXPECT_EQ(back.events[i].what, t.events[i].what) << i;
    EXPECT_EQ(back.events[i].value, t.events[i].value) << i;
  }
  EXPECT_EQ(back.peak_live, t.peak_live);
}

TEST(ReplayReport, JsonAndTextCarryEveryPolicy) {
  const trace_result r = replay_all(parse(kTiny), policy_names(), policy_options{});
  ASSERT_EQ(r.policies.size(), 4u);
  std::ostringstream json, text;
  write_json(json, {r}, policy_options{});
  write_text(text, {r}, policy_options{});
  EXPECT_NE(json.str().find("\"policy\": \"torch\", \"peak_reserved\": 23068672"), std::string::npos) << json.str();
  // poolshim 9 MiB (above) against region's 10 and torch's 22: the lowest, 9 / 7.5 = 1.2.
  EXPECT_NE(json.str().find("\"goal\": {\"ratio_ok\": false, \"lowest\": true}"), std::string::npos) << json.str();
  EXPECT_NE(text.str().find("goal: poolshim 1.200 x live (<= 1.10: no), lowest of the caching policies: yes\n"),
            std::string::npos)
      << text.str();
}

// A trace's name (a file name) keeps its UTF-8 characters in JSON; a quote, a backslash and a
// control character are escaped, and a byte that is not UTF-8 becomes U+FFFD.
TEST(ReplayReport, JsonQuotesTraceNamesAsUtf8) {
  trace_result r = replay_all(parse(kTiny), {"none"}, policy_options{});
  r.name = "caf\xc3\xa9 \"x\"\\\x01\xff.trace";
  std::ostringstream json;
  write_json(json, {r}, policy_options{});
  EXPECT_NE(json.str().find("\"trace\": \"caf\xc3\xa9 \\\"x\\\"\\\\\\u0001\\ufffd.trace\""), std::string::npos)
      << json.str();
}

}  // namespace
}  // namespace poolshim::replay

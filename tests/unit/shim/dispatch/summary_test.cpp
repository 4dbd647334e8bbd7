// The shim's report of itself (shim/dispatch/summary.h), all generated from POOLSHIM_COUNTER_TABLE:
// the public struct keeps version 4's layout, the snapshot fills every field from its own source,
// a fork child's reset clears what the hooks counted, and the POOLSHIM_SUMMARY line that tools parse
// stays byte for byte what it was.
#include "dispatch/summary.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "base/process.h"

namespace poolshim::dispatch {
namespace {

struct field_place {
  std::string name;
  std::size_t offset;
};

// Version 4 of struct poolshim_counters as it shipped: a frozen record, not generated.
const std::vector<field_place> k_version_4 = {
    {"version", 0},
    {"hook_count", 4},
    {"mode", 8},
    {"reserved", 12},
    {"device_allocs", 16},
    {"device_alloc_bytes", 24},
    {"device_frees", 32},
    {"host_allocs", 40},
    {"host_alloc_bytes", 48},
    {"host_frees", 56},
    {"managed_allocs", 64},
    {"managed_alloc_bytes", 72},
    {"async_allocs", 80},
    {"async_alloc_bytes", 88},
    {"async_frees", 96},
    {"vmm_creates", 104},
    {"vmm_create_bytes", 112},
    {"vmm_releases", 120},
    {"ipc_exports", 128},
    {"ipc_opens", 136},
    {"ipc_closes", 144},
    {"streams_created", 152},
    {"streams_destroyed", 160},
    {"contexts_created", 168},
    {"contexts_destroyed", 176},
    {"captures_begun", 184},
    {"captures_ended", 192},
    {"lookups", 200},
    {"lookups_wrapped", 208},
    {"lookups_unknown", 216},
    {"hook_calls", 224},
    {"pool_requests", 736},
    {"pool_hits", 744},
    {"pool_bytes_in_use", 752},
    {"pool_bytes_reserved", 760},
    {"pool_peak_in_use", 768},
    {"pool_peak_reserved", 776},
    {"pool_segments", 784},
    {"host_pool_requests", 792},
    {"host_pool_hits", 800},
    {"host_pool_bytes_in_use", 808},
    {"host_pool_bytes_reserved", 816},
    {"host_pool_peak_in_use", 824},
    {"host_pool_peak_reserved", 832},
    {"host_pool_slabs", 840},
    {"fences_issued", 848},
    {"fences_completed", 856},
    {"fences_deferred", 864},
    {"fence_waits", 872},
    {"streams_tracked", 880},
    {"daemon_slabs_leased", 888},
    {"daemon_slabs_returned", 896},
    {"daemon_fallbacks", 904},
    {"daemon_redeclared", 912},
    {"daemon_connects", 920},
    {"daemon_refusals", 928},
    {"daemon_device_leases", 936},
};

std::vector<field_place> table_layout() {
  std::vector<field_place> rows;
#define POOLSHIM_TEST_PLACE(field, ...) rows.push_back({#field, offsetof(poolshim_counters, field)});
  POOLSHIM_COUNTER_TABLE(POOLSHIM_TEST_PLACE, POOLSHIM_TEST_PLACE, POOLSHIM_TEST_PLACE, POOLSHIM_TEST_PLACE,
                         POOLSHIM_TEST_PLACE, POOLSHIM_TEST_PLACE, POOLSHIM_TEST_PLACE)
#undef POOLSHIM_TEST_PLACE
  return rows;
}

TEST(PublicCounters, TableKeepsVersion4LayoutAsAPrefix) {
  const std::vector<field_place> rows = table_layout();
  ASSERT_GE(rows.size(), k_version_4.size()) << "rows are only ever appended";
  for (std::size_t i = 0; i < k_version_4.size(); ++i) {
    EXPECT_EQ(rows[i].name, k_version_4[i].name) << "row " << i;
    EXPECT_EQ(rows[i].offset, k_version_4[i].offset) << rows[i].name;
  }
  if (POOLSHIM_COUNTERS_VERSION == 4) {
    EXPECT_EQ(rows.size(), k_version_4.size());
    EXPECT_EQ(sizeof(poolshim_counters), 944u);
  }
  EXPECT_EQ(sizeof(poolshim_counters::hook_calls), POOLSHIM_MAX_HOOKS * sizeof(std::uint64_t));
}

// Distinct figures in every layer's own terms, named by hand (not through the table).
layer_figures distinct_layer_figures() {
  layer_figures l{};
  l.device_pools.requests = 101;
  l.device_pools.pool_hits = 102;
  l.device_pools.bytes_in_use = 103;
  l.device_pools.bytes_reserved = 104;
  l.device_pools.peak_in_use = 105;
  l.device_pools.peak_reserved = 106;
  l.device_pools.segments = 107;
  l.device_pools.oom_recoveries = 108;  // not a public figure
  l.host_pools.requests = 201;
  l.host_pools.pool_hits = 202;
  l.host_pools.bytes_in_use = 203;
  l.host_pools.bytes_reserved = 204;
  l.host_pools.peak_in_use = 205;
  l.host_pools.peak_reserved = 206;
  l.host_pools.slabs = 207;
  l.fence.fences_issued = 301;
  l.fence.fences_completed = 302;
  l.fence.fences_deferred = 303;
  l.fence.fence_waits = 304;
  l.fence.streams_tracked = 305;
  l.daemon.leases_taken = 401;
  l.daemon.leases_returned = 402;
  l.daemon.fallbacks = 403;
  l.daemon.redeclared = 404;
  l.daemon.connects = 405;
  l.daemon.refusals = 406;
  l.daemon.device_leases = 407;
  return l;
}

// n consecutive uint64_t fields from `first` hold first_value, first_value + 1, ...
void expect_run(const std::uint64_t* first, std::size_t n, std::uint64_t first_value, const char* what) {
  for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(first[i], first_value + i) << what << " + " << i;
}

TEST(PublicCounters, FillTakesEveryFieldFromItsOwnSource) {
  intercept::counters seen;
  std::uint64_t next = 1;
#define POOLSHIM_TEST_SET_SEEN(field, ...) seen.field.store(next++);
  POOLSHIM_COUNTER_TABLE(POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_SKIP, POOLSHIM_TEST_SET_SEEN, POOLSHIM_COUNTER_SKIP,
                         POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_SKIP)
#undef POOLSHIM_TEST_SET_SEEN
  ASSERT_GE(next, 27u) << "device_allocs .. lookups_unknown are SEEN rows";
  for (std::size_t i = 0; i < intercept::k_hook_count; ++i) seen.hook_calls[i].store(1000 + i);

  poolshim_counters out;
  std::memset(&out, 0xa5, sizeof out);
  fill_counters(seen, distinct_layer_figures(), &out);

  EXPECT_EQ(out.version, static_cast<std::uint32_t>(POOLSHIM_COUNTERS_VERSION));
  EXPECT_EQ(out.hook_count, intercept::k_hook_count);
  EXPECT_EQ(out.mode, static_cast<std::uint32_t>(base::mode()));
  EXPECT_EQ(out.reserved, 0u);
  expect_run(&out.device_allocs, 26, 1, "device_allocs");
  for (std::size_t i = 0; i < POOLSHIM_MAX_HOOKS; ++i)
    EXPECT_EQ(out.hook_calls[i], i < intercept::k_hook_count ? 1000 + i : 0) << "hook_calls[" << i << "]";
  expect_run(&out.pool_requests, 7, 101, "pool_requests");
  EXPECT_EQ(out.pool_segments, 107u);
  expect_run(&out.host_pool_requests, 7, 201, "host_pool_requests");
  EXPECT_EQ(out.host_pool_slabs, 207u);
  expect_run(&out.fences_issued, 5, 301, "fences_issued");
  expect_run(&out.daemon_slabs_leased, 7, 401, "daemon_slabs_leased");
  EXPECT_EQ(out.daemon_device_leases, 407u);

  // Every figure row of the table is filled, each from a source of its own: none is left at 0 and
  // no two are equal (a row added to the table without a source, or with another row's, fails here).
  std::set<std::uint64_t> values;
  std::size_t figure_rows = 0;
#define POOLSHIM_TEST_FIGURE(field, ...) \
  ++figure_rows;                         \
  values.insert(out.field);              \
  EXPECT_NE(out.field, 0u) << #field;
  POOLSHIM_COUNTER_TABLE(POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_SKIP, POOLSHIM_TEST_FIGURE, POOLSHIM_TEST_FIGURE,
                         POOLSHIM_TEST_FIGURE, POOLSHIM_TEST_FIGURE, POOLSHIM_TEST_FIGURE)
#undef POOLSHIM_TEST_FIGURE
  EXPECT_EQ(values.size(), figure_rows);
}

TEST(PublicCounters, SnapshotReadsTheHooksCountersAndResetClearsThem) {
  intercept::reset_counters();
  intercept::bump(intercept::g_counters.device_allocs, 3);
  intercept::bump(intercept::g_counters.vmm_releases, 5);
  intercept::bump(intercept::g_counters.lookups_unknown);
  intercept::count_call(static_cast<intercept::hook_id>(0));
  poolshim_counters c;
  snapshot_counters(&c);
  EXPECT_EQ(c.version, static_cast<std::uint32_t>(POOLSHIM_COUNTERS_VERSION));
  EXPECT_EQ(c.hook_count, intercept::k_hook_count);
  EXPECT_EQ(c.device_allocs, 3u);
  EXPECT_EQ(c.vmm_releases, 5u);
  EXPECT_EQ(c.lookups_unknown, 1u);
  EXPECT_EQ(c.hook_calls[0], 1u);
  EXPECT_EQ(c.pool_requests, 0u) << "no pool in this process";
  EXPECT_EQ(c.daemon_connects, 0u) << "no daemon in this process";

  // What a fork child does first: the parent's counts are the parent's.
  intercept::reset_counters();
  snapshot_counters(&c);
  EXPECT_EQ(c.device_allocs, 0u);
  EXPECT_EQ(c.vmm_releases, 0u);
  EXPECT_EQ(c.lookups_unknown, 0u);
  EXPECT_EQ(c.hook_calls[0], 0u);
}

// Distinct figures in the public struct, named by hand: line order and names are the tools' format.
poolshim_counters known_figures(run_mode mode) {
  poolshim_counters c;
  std::memset(&c, 0, sizeof c);
  c.version = POOLSHIM_COUNTERS_VERSION;
  c.hook_count = static_cast<std::uint32_t>(intercept::k_hook_count);
  c.mode = static_cast<std::uint32_t>(mode);
  std::uint64_t v = 11;
  for (std::uint64_t* p = &c.device_allocs; p <= &c.lookups_unknown; ++p) *p = v++;
  c.hook_calls[0] = 40;
  c.hook_calls[1] = 2;
  v = 51;
  for (std::uint64_t* p = &c.pool_requests; p <= &c.pool_segments; ++p) *p = v++;
  v = 61;
  for (std::uint64_t* p = &c.host_pool_requests; p <= &c.host_pool_slabs; ++p) *p = v++;
  v = 71;
  for (std::uint64_t* p = &c.fences_issued; p <= &c.streams_tracked; ++p) *p = v++;
  v = 81;
  for (std::uint64_t* p = &c.daemon_slabs_leased; p <= &c.daemon_device_leases; ++p) *p = v++;
  return c;
}

std::string line_of(const poolshim_counters& c, std::size_t cap = 600) {
  std::vector<char> buf(cap + 1, '#');
  const std::size_t n = format_summary(c, buf.data(), cap);
  EXPECT_LT(n, cap);
  EXPECT_EQ(buf[n], '\0');
  return std::string(buf.data(), n);
}

TEST(SummaryLine, ShowsKnownFiguresExactlyAsToolsParseThem) {
  EXPECT_EQ(line_of(known_figures(run_mode::observe)),
            "poolshim: summary mode=observe hook_calls=42 device_allocs=11 device_bytes=12 device_frees=13 "
            "host_allocs=14 host_bytes=15 host_frees=16 managed_allocs=17 async_allocs=19 vmm_creates=22 "
            "pool_requests=51 pool_hits=52 pool_peak_in_use=55 pool_peak_reserved=56 lookups_wrapped=35 "
            "lookups_unknown=36 host_pool_hits=62 host_pool_peak_in_use=65 host_pool_peak_reserved=66 fences=71 "
            "daemon_slabs=81 daemon_device_segments=87\n");
}

TEST(SummaryLine, LeavesOutFenceAndDaemonFiguresWhileZero) {
  poolshim_counters c = known_figures(run_mode::pool);
  c.fences_issued = 0;
  c.daemon_slabs_leased = 0;
  c.daemon_device_leases = 0;
  EXPECT_EQ(line_of(c),
            "poolshim: summary mode=pool hook_calls=42 device_allocs=11 device_bytes=12 device_frees=13 "
            "host_allocs=14 host_bytes=15 host_frees=16 managed_allocs=17 async_allocs=19 vmm_creates=22 "
            "pool_requests=51 pool_hits=52 pool_peak_in_use=55 pool_peak_reserved=56 lookups_wrapped=35 "
            "lookups_unknown=36 host_pool_hits=62 host_pool_peak_in_use=65 host_pool_peak_reserved=66\n");
  c.daemon_device_leases = 9;
  EXPECT_NE(line_of(c).find(" host_pool_peak_reserved=66 daemon_device_segments=9\n"), std::string::npos);
}

TEST(SummaryLine, ShowsZerosThatAreAlwaysShown) {
  poolshim_counters c;
  std::memset(&c, 0, sizeof c);
  c.mode = static_cast<std::uint32_t>(run_mode::off);
  EXPECT_EQ(line_of(c),
            "poolshim: summary mode=off hook_calls=0 device_allocs=0 device_bytes=0 device_frees=0 host_allocs=0 "
            "host_bytes=0 host_frees=0 managed_allocs=0 async_allocs=0 vmm_creates=0 pool_requests=0 pool_hits=0 "
            "pool_peak_in_use=0 pool_peak_reserved=0 lookups_wrapped=0 lookups_unknown=0 host_pool_hits=0 "
            "host_pool_peak_in_use=0 host_pool_peak_reserved=0\n");
}

TEST(SummaryLine, TruncatedLineStillEndsInNewline) {
  EXPECT_EQ(line_of(known_figures(run_mode::observe), 40), "poolshim: summary mode=observe hook_ca\n");
  EXPECT_EQ(line_of(known_figures(run_mode::observe), 2), "\n");
}

TEST(SummaryLine, OneByteBufferGetsOnlyTheTerminator) {
  char buf[3] = {'#', '#', '#'};
  EXPECT_EQ(format_summary(known_figures(run_mode::observe), buf + 1, 1), 0u);
  EXPECT_EQ(buf[0], '#') << "nothing written before the buffer";
  EXPECT_EQ(buf[1], '\0');
  EXPECT_EQ(buf[2], '#');
}

TEST(SummaryLine, LiveLineMatchesTheLineOfASnapshot) {
  intercept::reset_counters();
  intercept::bump(intercept::g_counters.host_allocs, 7);
  poolshim_counters c;
  snapshot_counters(&c);
  char live[512];
  const std::size_t n = format_summary(live, sizeof live);
  EXPECT_EQ(std::string(live, n), line_of(c));
  EXPECT_NE(std::string(live, n).find(" host_allocs=7 "), std::string::npos);
  intercept::reset_counters();
}

TEST(PoolFigures, TotalsAddEveryFigureOfEveryPoolPeaksIncluded) {
  pool::pool_stats sum{};
  pool::pool_stats a{};
  a.requests = 1;
  a.pool_hits = 2;
  a.bytes_in_use = 3;
  a.bytes_reserved = 4;
  a.peak_in_use = 5;
  a.peak_reserved = 6;
  a.segments = 7;
  a.oom_recoveries = 8;
  sum += a;
  sum += a;
  EXPECT_EQ(sum.requests, 2u);
  EXPECT_EQ(sum.pool_hits, 4u);
  EXPECT_EQ(sum.bytes_in_use, 6u);
  EXPECT_EQ(sum.bytes_reserved, 8u);
  EXPECT_EQ(sum.peak_in_use, 10u) << "the public peak is the sum of each pool's peak";
  EXPECT_EQ(sum.peak_reserved, 12u);
  EXPECT_EQ(sum.segments, 14u);
  EXPECT_EQ(sum.oom_recoveries, 16u);

  pool::host_pool_stats host_sum{};
  pool::host_pool_stats h{};
  h.requests = 1;
  h.pool_hits = 2;
  h.bytes_in_use = 3;
  h.bytes_reserved = 4;
  h.peak_in_use = 5;
  h.peak_reserved = 6;
  h.slabs = 7;
  host_sum += h;
  host_sum += h;
  EXPECT_EQ(host_sum.requests, 2u);
  EXPECT_EQ(host_sum.pool_hits, 4u);
  EXPECT_EQ(host_sum.bytes_in_use, 6u);
  EXPECT_EQ(host_sum.bytes_reserved, 8u);
  EXPECT_EQ(host_sum.peak_in_use, 10u);
  EXPECT_EQ(host_sum.peak_reserved, 12u);
  EXPECT_EQ(host_sum.slabs, 14u);
}

}  // namespace
}  // namespace poolshim::dispatch

// The record validation (daemon/protocol/protocol.h): every field of a request and a reply is
// checked, and a record that fails any check is refused with the status that names the field.
#include "poolshim/protocol.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

namespace poolshim::proto {
namespace {

constexpr std::uint64_t kSlab = std::uint64_t{64} << 20;

status check(const request& r, std::size_t len = sizeof(request)) {
  request out{};
  return validate_request(&r, len, kSlab, &out);
}

TEST(Protocol, WellFormedRequestsOfEveryOpAreAccepted) {
  for (op o : {op::hello, op::stats, op::return_idle, op::goodbye}) EXPECT_EQ(check(make_request(o, 1)), status::ok);
  request lease = make_request(op::lease_slab, 2);
  lease.arg[0] = kSlab;
  EXPECT_EQ(check(lease), status::ok);
  request ret = make_request(op::return_slab, 3);
  ret.arg[0] = 7;
  EXPECT_EQ(check(ret), status::ok);
  request re = make_request(op::redeclare_slab, 4);
  re.arg[0] = kSlab;
  EXPECT_EQ(check(re), status::ok);
  request cs = make_request(op::client_stats, 5);
  cs.arg[0] = 3;
  EXPECT_EQ(check(cs), status::ok);
}

TEST(Protocol, ValidatedRequestIsCopiedOut) {
  request q = make_request(op::lease_slab, 99);
  q.arg[0] = 4096;
  request out{};
  ASSERT_EQ(validate_request(&q, sizeof q, kSlab, &out), status::ok);
  EXPECT_EQ(std::memcmp(&q, &out, sizeof q), 0);
}

TEST(Protocol, WrongLengthsAreRefusedWithoutReadingPastThem) {
  const request q = make_request(op::hello, 1);
  for (std::size_t len :
       {std::size_t{0}, std::size_t{1}, std::size_t{16}, sizeof q - 1, sizeof q + 1, std::size_t{4096}}) {
    std::vector<unsigned char> buf(len + 1, 0);  // exactly len readable bytes (plus one unused)
    std::memcpy(buf.data(), &q, std::min(len, sizeof q));
    request out{};
    EXPECT_EQ(validate_request(buf.data(), len, kSlab, &out), status::bad_size) << len;
  }
  request out{};
  EXPECT_EQ(validate_request(nullptr, sizeof q, kSlab, &out), status::bad_size);
}

TEST(Protocol, EachHeaderFieldIsChecked) {
  request q = make_request(op::hello, 1);
  q.magic ^= 1;
  EXPECT_EQ(check(q), status::bad_magic);
  q = make_request(op::hello, 1);
  q.version = k_version + 1;
  EXPECT_EQ(check(q), status::bad_version);
  q = make_request(op::hello, 1);
  q.size = 64;
  EXPECT_EQ(check(q), status::bad_size);
  for (std::uint16_t bad_op : {std::uint16_t{0}, std::uint16_t{24}, std::uint16_t{0xffff}}) {  // 23: trim_clients
    q = make_request(op::hello, 1);
    q.op = bad_op;
    EXPECT_EQ(check(q), status::unknown_op) << bad_op;
  }
}

TEST(Protocol, EveryReservedByteMustBeZero) {
  for (std::size_t i = 0; i < sizeof(request::reserved); ++i) {
    request q = make_request(op::stats, 1);
    q.reserved[i] = 1;
    EXPECT_EQ(check(q), status::bad_reserved) << i;
  }
  // The device UUID field is buffer_create's only.
  for (std::size_t i = 0; i < sizeof(request::device_uuid); ++i) {
    request q = make_request(op::stats, 1);
    q.device_uuid[i] = 1;
    EXPECT_EQ(check(q), status::bad_reserved) << i;
  }
}

TEST(Protocol, ArgumentsAreCheckedPerOperation) {
  request q = make_request(op::lease_slab, 1);
  EXPECT_EQ(check(q), status::bad_argument) << "zero bytes";
  q.arg[0] = kSlab + 1;
  EXPECT_EQ(check(q), status::bad_argument) << "more than a slab";
  q.arg[0] = kSlab;
  q.arg[3] = 1;
  EXPECT_EQ(check(q), status::bad_argument) << "unused argument set";
  q = make_request(op::return_slab, 1);
  EXPECT_EQ(check(q), status::bad_argument) << "lease 0";
  q = make_request(op::redeclare_slab, 1);
  q.arg[0] = k_max_lease_bytes + 1;
  EXPECT_EQ(check(q), status::bad_argument);
  q = make_request(op::client_stats, 1);
  q.arg[0] = std::uint64_t{1} << 40;
  EXPECT_EQ(check(q), status::bad_argument);
  for (op o : {op::hello, op::stats, op::return_idle, op::goodbye}) {
    q = make_request(o, 1);
    q.arg[1] = 5;
    EXPECT_EQ(check(q), status::bad_argument) << op_name(o);
  }
}

TEST(Protocol, PayloadIsCheckedPerOperation) {
  request q = make_request(op::stats, 1);
  q.payload[0] = 1;
  EXPECT_EQ(check(q), status::bad_reserved) << "stats carries no payload";
  q = make_request(op::ipc_register, 1);
  q.arg[0] = 4096;
  q.arg[1] = 512;
  EXPECT_EQ(check(q), status::bad_argument) << "an empty handle";
  q.payload[63] = 1;
  EXPECT_EQ(check(q), status::ok);
  q.payload[64] = 1;
  EXPECT_EQ(check(q), status::bad_reserved) << "past the handle";
  q = make_request(op::ipc_register, 1);
  q.payload[0] = 1;
  EXPECT_EQ(check(q), status::bad_argument) << "a block of 0 bytes";
  q = make_request(op::ipc_resolve, 1);
  EXPECT_EQ(check(q), status::bad_argument) << "an empty token";
  q.payload[15] = 9;
  EXPECT_EQ(check(q), status::ok);
  q.payload[16] = 9;
  EXPECT_EQ(check(q), status::bad_reserved) << "past the token";
  const request asked = make_request(op::ipc_resolve, 3);
  reply r = make_reply(asked, status::ok);
  r.payload[63] = 1;
  reply out{};
  EXPECT_EQ(validate_reply(&r, sizeof r, asked, &out), status::ok) << "the handle comes back";
  r.payload[64] = 1;
  EXPECT_EQ(validate_reply(&r, sizeof r, asked, &out), status::bad_reserved);
}

TEST(Protocol, ReplyMustAnswerTheRequestAndBeWellFormed) {
  const request q = make_request(op::stats, 42);
  reply r = make_reply(q, status::ok);
  reply out{};
  EXPECT_EQ(validate_reply(&r, sizeof r, q, &out), status::ok);
  r.seq = 41;
  EXPECT_EQ(validate_reply(&r, sizeof r, q, &out), status::bad_argument) << "another request's seq";
  r = make_reply(q, status::ok);
  r.op = static_cast<std::uint16_t>(op::hello);
  EXPECT_EQ(validate_reply(&r, sizeof r, q, &out), status::bad_argument) << "another op";
  r = make_reply(q, status::ok);
  r.status = 1000;
  EXPECT_EQ(validate_reply(&r, sizeof r, q, &out), status::bad_argument) << "unknown status";
  // Every status the daemon may answer is one a client takes (a new one refused by the client
  // would turn a clear refusal into a dropped connection).
  for (std::int32_t st = 0; st <= static_cast<std::int32_t>(k_last_status); ++st) {
    r = make_reply(q, static_cast<status>(st));
    EXPECT_EQ(validate_reply(&r, sizeof r, q, &out), status::ok) << status_name(static_cast<status>(st));
    EXPECT_STRNE(status_name(static_cast<status>(st)), "unknown") << st;
  }
  r = make_reply(q, status::ok);
  r.status = static_cast<std::int32_t>(k_last_status) + 1;
  EXPECT_EQ(validate_reply(&r, sizeof r, q, &out), status::bad_argument) << "one past the last status";
  r = make_reply(q, status::ok);
  r.reserved[55] = 1;
  EXPECT_EQ(validate_reply(&r, sizeof r, q, &out), status::bad_reserved);
  r = make_reply(q, status::ok);
  EXPECT_EQ(validate_reply(&r, sizeof r - 1, q, &out), status::bad_size);
  r.magic = 0;
  EXPECT_EQ(validate_reply(&r, sizeof r, q, &out), status::bad_magic);
}

// The daemon's figures travel typed (encode_status / decode_status) in version 1's layout: a new
// daemon's reply must read the same to an old client that reads by position, and the other way.
TEST(Protocol, StatusFiguresRoundTripInTheirFixedSlots) {
  daemon_status s;
  s.region_bytes = 101;
  s.lent_bytes = 102;
  s.free_bytes = 103;
  s.clients = 104;
  s.leases = 105;
  s.reclaimed_slabs = 106;
  s.device_lent_bytes = 107;
  const request q = make_request(op::stats, 7);
  reply r = make_reply(q, status::ok);
  encode_status(s, &r);
  reply out{};
  ASSERT_EQ(validate_reply(&r, sizeof r, q, &out), status::ok) << "only the payload bytes the op allows";
  const daemon_status back = decode_status(out);
  for (const status_figure& f : k_status_figures) EXPECT_EQ(back.*f.member, s.*f.member) << f.name;
  // By position, as version 1 and every client before the typed struct read it.
  for (int i = 0; i < 6; ++i) EXPECT_EQ(out.val[i], 101u + static_cast<unsigned>(i)) << "val[" << i << "]";
  std::uint64_t device = 0;
  std::memcpy(&device, out.payload, sizeof device);
  EXPECT_EQ(device, 107u);

  reply old = make_reply(q, status::ok);  // an older daemon's reply, written by position
  for (int i = 0; i < 6; ++i) old.val[i] = 11u * static_cast<unsigned>(i + 1);
  const std::uint64_t old_device = 77;
  std::memcpy(old.payload, &old_device, sizeof old_device);
  const daemon_status o = decode_status(old);
  EXPECT_EQ(o.region_bytes, 11u);
  EXPECT_EQ(o.clients, 44u);
  EXPECT_EQ(o.reclaimed_slabs, 66u);
  EXPECT_EQ(o.device_lent_bytes, 77u);
}

TEST(Protocol, ClientFiguresRoundTripInTheirFixedSlots) {
  client_status c;
  c.pid = 4242;
  c.uid = 1000;
  c.lent_bytes = std::uint64_t{3} << 30;
  c.leases = 3;
  c.device_bytes = std::uint64_t{1} << 21;
  request q = make_request(op::client_stats, 9);
  reply r = make_reply(q, status::ok);
  encode_client_status(c, &r);
  reply out{};
  ASSERT_EQ(validate_reply(&r, sizeof r, q, &out), status::ok);
  const client_status back = decode_client_status(out);
  for (const client_figure& f : k_client_figures) EXPECT_EQ(back.*f.member, c.*f.member) << f.name;
  EXPECT_EQ(out.val[0], 4242u);
  EXPECT_EQ(out.val[1], 1000u);
  EXPECT_EQ(out.val[2], std::uint64_t{3} << 30);
  EXPECT_EQ(out.val[3], 3u);
  EXPECT_EQ(out.val[4], std::uint64_t{1} << 21);
  EXPECT_EQ(out.val[5], 0u);  // idle_device_bytes, not set here
  EXPECT_TRUE(std::all_of(std::begin(out.payload), std::end(out.payload), [](std::uint8_t b) { return b == 0; }));
}

TEST(Protocol, StatusFigureNamesAreThoseOfStatusAndTheMetricsPage) {
  std::vector<std::string> names, metrics;
  for (const status_figure& f : k_status_figures) {
    names.push_back(f.name);
    if (f.metric != nullptr) metrics.push_back(f.metric);
  }
  // `poolshimd --status` prints these, in this order, and scripts read them.
  EXPECT_EQ(names, (std::vector<std::string>{"region_bytes", "lent_bytes", "free_bytes", "clients", "leases",
                                             "reclaimed_slabs", "device_lent_bytes", "named_bytes"}));
  EXPECT_EQ(metrics, (std::vector<std::string>{"poolshimd_region_bytes", "poolshimd_lent_bytes", "poolshimd_free_bytes",
                                               "poolshimd_clients", "poolshimd_reclaimed_slabs_total",
                                               "poolshimd_device_lent_bytes", "poolshimd_named_bytes"}));
}

TEST(Protocol, DescriptorRulesFollowTheOpTable) {
  EXPECT_TRUE(op_gives_fd(op::lease_slab));
  EXPECT_TRUE(op_takes_fd(op::redeclare_slab));
  EXPECT_FALSE(op_takes_fd(op::lease_slab));
  EXPECT_FALSE(op_gives_fd(op::stats));
  EXPECT_STREQ(op_name(op::return_idle), "return_idle");
  EXPECT_STREQ(status_name(status::quota), "quota");
}

}  // namespace
}  // namespace poolshim::proto

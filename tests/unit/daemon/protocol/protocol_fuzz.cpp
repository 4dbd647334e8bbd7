// libFuzzer target for the record parser (daemon/protocol/protocol.h): any bytes, any length, as a
// request and as a reply to a request. Built with clang -fsanitize=fuzzer,address,undefined and run
// for a bounded time by ctest (fuzz.protocol_records). A crash, a read past the given length or an
// accepted record that breaks an invariant aborts.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "poolshim/protocol.h"

namespace proto = poolshim::proto;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Exactly `size` bytes on the heap, so ASan sees any read past them.
  auto* bytes = static_cast<std::uint8_t*>(std::malloc(size == 0 ? 1 : size));
  if (size != 0) std::memcpy(bytes, data, size);
  constexpr std::uint64_t slab = std::uint64_t{64} << 20;
  proto::request q{};
  if (proto::validate_request(bytes, size, slab, &q) == proto::status::ok) {
    // What validation promises to everything after it.
    if (size != proto::k_record_size || q.magic != proto::k_magic || q.version != proto::k_version) std::abort();
    if (q.op == static_cast<std::uint16_t>(proto::op::lease_slab) && (q.arg[0] == 0 || q.arg[0] > slab)) std::abort();
    for (std::uint8_t b : q.reserved)
      if (b != 0) std::abort();
    (void)proto::op_name(static_cast<proto::op>(q.op));
  }
  // The same bytes as the reply to a fixed request.
  const proto::request asked = proto::make_request(proto::op::stats, 7);
  proto::reply r{};
  if (proto::validate_reply(bytes, size, asked, &r) == proto::status::ok) {
    if (r.seq != 7 || r.op != asked.op || r.status < 0) std::abort();
    (void)proto::status_name(static_cast<proto::status>(r.status));
  }
  std::free(bytes);
  return 0;
}

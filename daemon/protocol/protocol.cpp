// Validation of the wire records (protocol.h): the only code that looks at bytes a peer sent.
#include "poolshim/protocol.h"

#include <cstring>

namespace poolshim::proto {
namespace {

bool known_op(std::uint16_t v) noexcept {
  switch (static_cast<op>(v)) {
#define POOLSHIM_PROTO_OP_CASE(name, value, fd_in, fd_out) case op::name:
    POOLSHIM_PROTO_OPS(POOLSHIM_PROTO_OP_CASE)
#undef POOLSHIM_PROTO_OP_CASE
    return true;
  }
  return false;
}

template <std::size_t N>
bool all_zero(const std::uint8_t (&b)[N], std::size_t from = 0) noexcept {
  for (std::size_t i = from; i < N; ++i)
    if (b[i] != 0) return false;
  return true;
}

bool any_nonzero(const std::uint8_t* b, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    if (b[i] != 0) return true;
  return false;
}

// Per-operation argument rules: unused arguments must be zero, so a later version can give them
// meaning without an old daemon misreading them.
status check_args(const request& r, std::uint64_t slab_bytes) noexcept {
  auto unused_from = [&](int first) {
    for (int i = first; i < 4; ++i)
      if (r.arg[i] != 0) return false;
    return true;
  };
  switch (static_cast<op>(r.op)) {
    case op::hello:
      return r.arg[0] == 0 && unused_from(1) ? status::ok : status::bad_argument;
    case op::lease_slab:
      return r.arg[0] != 0 && r.arg[0] <= slab_bytes && unused_from(1) ? status::ok : status::bad_argument;
    case op::return_slab:
      return r.arg[0] != 0 && unused_from(1) ? status::ok : status::bad_argument;
    case op::redeclare_slab:
      return r.arg[0] != 0 && r.arg[0] <= k_max_lease_bytes && unused_from(1) ? status::ok : status::bad_argument;
    case op::client_stats:
      return r.arg[0] < (std::uint64_t{1} << 32) && unused_from(1) ? status::ok : status::bad_argument;
    case op::return_idle:
      return (r.arg[2] == k_idle_report || (r.arg[2] == 0 && r.arg[0] == 0 && r.arg[1] == 0)) &&
                     r.arg[0] <= k_max_lease_bytes * 64 && r.arg[1] <= k_max_lease_bytes * 64 && unused_from(3)
                 ? status::ok
                 : status::bad_argument;
    case op::trim_clients:
      return r.arg[0] <= k_max_lease_bytes * 64 && unused_from(1) ? status::ok : status::bad_argument;
    case op::stats:
    case op::goodbye:
      return unused_from(0) ? status::ok : status::bad_argument;
    case op::ipc_register:
      // A handle and a block inside its segment: offset and size bounded, the handle not empty.
      return r.arg[1] != 0 && r.arg[0] < k_max_lease_bytes && r.arg[1] <= k_max_lease_bytes && unused_from(2) &&
                     any_nonzero(r.payload, k_ipc_handle_size)
                 ? status::ok
                 : status::bad_argument;
    case op::ipc_resolve:
    case op::ipc_unregister:
      return unused_from(0) && any_nonzero(r.payload, k_token_size) ? status::ok : status::bad_argument;
    case op::lease_device:
      return r.arg[0] != 0 && r.arg[0] % k_device_granule == 0 && r.arg[0] <= k_max_lease_bytes && unused_from(1) &&
                     any_nonzero(r.payload, k_uuid_size)
                 ? status::ok
                 : status::bad_argument;
    case op::buffer_create:
      return buffer_create_problem(r) == nullptr ? status::ok : status::bad_argument;
    case op::buffer_open:  // arg0: the daemon's buffer id, or 0 (by name)
      return (r.arg[1] & ~k_buffer_shared) == 0 && (r.arg[2] & ~k_open_reference_only) == 0 &&
                     (r.arg[3] == 0 || r.arg[2] == k_open_reference_only) && buffer_name_problem(r.payload) == nullptr
                 ? status::ok
                 : status::bad_argument;
    case op::buffer_unlink:
      return r.arg[0] == 0 && (r.arg[1] & ~k_buffer_shared) == 0 && unused_from(2) &&
                     buffer_name_problem(r.payload) == nullptr
                 ? status::ok
                 : status::bad_argument;
    case op::buffer_close:
    case op::buffer_handles:
    case op::channel_close:
      return r.arg[0] != 0 && unused_from(1) ? status::ok : status::bad_argument;
    case op::channel_create: {
      const std::uint64_t readers = r.arg[1] & 0xff;
      const std::uint64_t c = r.arg[0];
      return c >= 4096 && c <= (std::uint64_t{1} << 32) && (c & (c - 1)) == 0 && readers >= 1 && readers <= 64 &&
                     (r.arg[1] & ~(std::uint64_t{0xff} | k_buffer_shared)) == 0 && unused_from(2) &&
                     buffer_name_problem(r.payload) == nullptr
                 ? status::ok
                 : status::bad_argument;
    }
    case op::channel_open:
      return r.arg[0] == 0 && (r.arg[1] & ~k_buffer_shared) == 0 && unused_from(2) &&
                     buffer_name_problem(r.payload) == nullptr
                 ? status::ok
                 : status::bad_argument;
    case op::buffer_list:
    case op::channel_list:
      return r.arg[0] < (std::uint64_t{1} << 32) && unused_from(1) ? status::ok : status::bad_argument;
  }
  return status::unknown_op;
}

}  // namespace

std::size_t dtype_size(std::uint32_t code) noexcept {
  switch (code) {
#define POOLSHIM_PROTO_DTYPE_SIZE(name, value, bytes) \
  case value:                                         \
    return bytes;
    POOLSHIM_PROTO_DTYPES(POOLSHIM_PROTO_DTYPE_SIZE)
#undef POOLSHIM_PROTO_DTYPE_SIZE
  }
  return 0;
}

const char* dtype_name(std::uint32_t code) noexcept {
  switch (code) {
#define POOLSHIM_PROTO_DTYPE_NAME(name, value, bytes) \
  case value:                                         \
    return #name;
    POOLSHIM_PROTO_DTYPES(POOLSHIM_PROTO_DTYPE_NAME)
#undef POOLSHIM_PROTO_DTYPE_NAME
  }
  return nullptr;
}

std::uint32_t dtype_code(const char* name) noexcept {
  if (name == nullptr) return 0;
#define POOLSHIM_PROTO_DTYPE_CODE(n, value, bytes) \
  if (std::strcmp(name, #n) == 0) return value;
  POOLSHIM_PROTO_DTYPES(POOLSHIM_PROTO_DTYPE_CODE)
#undef POOLSHIM_PROTO_DTYPE_CODE
  return 0;
}

const char* buffer_name_problem(const std::uint8_t (&payload)[k_payload_size]) noexcept {
  std::size_t n = 0;
  while (n < k_name_size && payload[n] != 0) ++n;
  if (n == 0) return "the name is empty";
  if (n == k_name_size) return "the name is longer than 63 bytes";
  for (std::size_t i = 0; i < n; ++i) {
    if (payload[i] == '/') return "the name holds a '/'";
    if (payload[i] < 0x21 || payload[i] > 0x7e) return "the name holds a byte that is not printable ASCII (or a space)";
  }
  for (std::size_t i = n; i < k_name_size; ++i)
    if (payload[i] != 0) return "the name is not NUL-padded";
  return nullptr;
}

const char* buffer_create_problem(const request& r) noexcept {
  if (const char* p = buffer_name_problem(r.payload)) return p;
  const std::uint64_t kind = r.arg[1] & k_buffer_kind_mask;
  if (kind != static_cast<std::uint64_t>(buffer_kind::host) && kind != static_cast<std::uint64_t>(buffer_kind::device))
    return "the kind is neither host nor device";
  if ((r.arg[1] & ~(k_buffer_kind_mask | k_buffer_shared)) != 0) return "unknown flags";
  const bool named_device = any_nonzero(r.device_uuid, k_uuid_size);
  if (kind == static_cast<std::uint64_t>(buffer_kind::host) && named_device) return "a host buffer names no device";
  if (kind == static_cast<std::uint64_t>(buffer_kind::device) && !named_device)
    return "a device buffer names its device (UUID)";
  if (r.arg[3] != 0) return "argument 3 is not zero";
  if (r.arg[0] == 0) return "the buffer has no bytes";
  if (r.arg[0] > k_max_lease_bytes) return "the buffer is larger than 1 TiB";
  const std::uint64_t dtype = r.arg[2] & 0xffff;
  const std::uint64_t ndim = (r.arg[2] >> 16) & 0xffff;
  if ((r.arg[2] >> 32) != 0) return "unknown bits in the element type and rank";
  const std::size_t item = dtype_size(static_cast<std::uint32_t>(dtype));
  if (item == 0) return "unknown element type (dtype)";
  if (ndim > k_max_dims) return "more than 8 dimensions";
  std::uint64_t elements = 1;
  for (std::uint64_t d = 0; d < ndim; ++d) {
    std::uint64_t dim;
    std::memcpy(&dim, r.payload + k_name_size + d * sizeof dim, sizeof dim);
    if (dim != 0 && elements > k_max_lease_bytes / dim) return "the shape's product overflows";
    elements *= dim;
  }
  for (std::size_t i = k_name_size + ndim * sizeof(std::uint64_t); i < k_payload_size; ++i)
    if (r.payload[i] != 0) return "bytes past the shape's last dimension are not zero";
  if (elements > k_max_lease_bytes / item || elements * item != r.arg[0])
    return "the shape times the element size is not the buffer's bytes";
  return nullptr;
}

const char* op_name(op o) noexcept {
  switch (o) {
#define POOLSHIM_PROTO_OP_NAME(name, value, fd_in, fd_out) \
  case op::name:                                           \
    return #name;
    POOLSHIM_PROTO_OPS(POOLSHIM_PROTO_OP_NAME)
#undef POOLSHIM_PROTO_OP_NAME
  }
  return "unknown";
}

const char* status_name(status s) noexcept {
  switch (s) {
    case status::ok:
      return "ok";
    case status::bad_size:
      return "bad_size";
    case status::bad_magic:
      return "bad_magic";
    case status::bad_version:
      return "bad_version";
    case status::unknown_op:
      return "unknown_op";
    case status::bad_reserved:
      return "bad_reserved";
    case status::bad_argument:
      return "bad_argument";
    case status::missing_fd:
      return "missing_fd";
    case status::quota:
      return "quota";
    case status::no_memory:
      return "no_memory";
    case status::not_found:
      return "not_found";
    case status::not_permitted:
      return "not_permitted";
    case status::internal:
      return "internal";
    case status::exists:
      return "exists";
    case status::unsupported:
      return "unsupported";
    case status::no_device:
      return "no_device";
    case status::busy:
      return "busy";
  }
  return "unknown";
}

std::size_t request_payload_bytes(op o) noexcept {
  switch (o) {
    case op::ipc_register:
      return k_ipc_handle_size;
    case op::ipc_resolve:
    case op::ipc_unregister:
      return k_token_size;
    case op::lease_device:
      return k_uuid_size;
    case op::buffer_create:
      return k_payload_size;
    case op::buffer_open:
    case op::buffer_unlink:
    case op::channel_create:
    case op::channel_open:
      return k_name_size;
    default:
      return 0;
  }
}

std::size_t reply_payload_bytes(op o) noexcept {
  switch (o) {
    case op::ipc_register:
      return k_token_size;
    case op::ipc_resolve:
      return k_ipc_handle_size;
    case op::stats:
      return 2 * sizeof(std::uint64_t);
    case op::client_stats:
      return sizeof(std::uint64_t);  // slot 6
    case op::buffer_open:
      // The shape; the device's UUID; the buffer's id; its references.
      return k_open_reply_refs + sizeof(std::uint64_t);
    case op::buffer_list:
      return k_name_size + k_uuid_size;  // the name; the device's UUID
    case op::buffer_handles:
      return 2 * k_ipc_handle_size;
    case op::channel_list:
      return k_name_size + sizeof(std::uint64_t);  // the name; the bytes its writer holds for it
    default:
      return 0;
  }
}

bool op_takes_fd(op o) noexcept {
  switch (o) {
#define POOLSHIM_PROTO_OP_FD_IN(name, value, fd_in, fd_out) \
  case op::name:                                            \
    return fd_in;
    POOLSHIM_PROTO_OPS(POOLSHIM_PROTO_OP_FD_IN)
#undef POOLSHIM_PROTO_OP_FD_IN
  }
  return false;
}

bool op_gives_fd(op o) noexcept {
  switch (o) {
#define POOLSHIM_PROTO_OP_FD_OUT(name, value, fd_in, fd_out) \
  case op::name:                                             \
    return fd_out;
    POOLSHIM_PROTO_OPS(POOLSHIM_PROTO_OP_FD_OUT)
#undef POOLSHIM_PROTO_OP_FD_OUT
  }
  return false;
}

request make_request(op o, std::uint32_t seq) noexcept {
  request r;
  std::memset(&r, 0, sizeof r);
  r.magic = k_magic;
  r.version = k_version;
  r.op = static_cast<std::uint16_t>(o);
  r.size = k_record_size;
  r.seq = seq;
  return r;
}

reply make_reply(const request& q, status s) noexcept {
  reply r;
  std::memset(&r, 0, sizeof r);
  r.magic = k_magic;
  r.version = k_version;
  r.op = q.op;
  r.size = k_record_size;
  r.seq = q.seq;
  r.status = static_cast<std::int32_t>(s);
  return r;
}

status validate_request(const void* bytes, std::size_t len, std::uint64_t slab_bytes, request* out) noexcept {
  if (bytes == nullptr || len != k_record_size) return status::bad_size;
  request r;
  std::memcpy(&r, bytes, sizeof r);
  if (r.magic != k_magic) return status::bad_magic;
  if (r.version != k_version) return status::bad_version;
  if (r.size != k_record_size) return status::bad_size;
  if (!known_op(r.op)) return status::unknown_op;
  if (!all_zero(r.reserved) || !all_zero(r.payload, request_payload_bytes(static_cast<op>(r.op))) ||
      (static_cast<op>(r.op) != op::buffer_create && !all_zero(r.device_uuid)))
    return status::bad_reserved;
  if (status s = check_args(r, slab_bytes); s != status::ok) return s;
  *out = r;
  return status::ok;
}

status validate_reply(const void* bytes, std::size_t len, const request& asked, reply* out) noexcept {
  if (bytes == nullptr || len != k_record_size) return status::bad_size;
  reply r;
  std::memcpy(&r, bytes, sizeof r);
  if (r.magic != k_magic) return status::bad_magic;
  if (r.version != k_version) return status::bad_version;
  if (r.size != k_record_size) return status::bad_size;
  if (r.op != asked.op || r.seq != asked.seq) return status::bad_argument;
  if (!all_zero(r.reserved) || !all_zero(r.payload, reply_payload_bytes(static_cast<op>(r.op))))
    return status::bad_reserved;
  if (r.status < 0 || r.status > static_cast<std::int32_t>(k_last_status)) return status::bad_argument;
  *out = r;
  return status::ok;
}

namespace {

// A figure's slot: val[0..5], or the payload's 8-byte words (slots 6 and 7; reply_payload_bytes(stats)).
static_assert(sizeof(reply{}.val) / sizeof(std::uint64_t) == 6);

void put_slot(reply* r, int slot, std::uint64_t v) noexcept {
  if (slot < 6)
    r->val[slot] = v;
  else
    std::memcpy(r->payload + (slot - 6) * sizeof v, &v, sizeof v);
}

std::uint64_t get_slot(const reply& r, int slot) noexcept {
  if (slot < 6) return r.val[slot];
  std::uint64_t v;
  std::memcpy(&v, r.payload + (slot - 6) * sizeof v, sizeof v);
  return v;
}

}  // namespace

void encode_status(const daemon_status& s, reply* r) noexcept {
#define POOLSHIM_PROTO_STATUS_PUT(field, slot, metric, help) put_slot(r, slot, s.field);
  POOLSHIM_PROTO_STATUS_FIGURES(POOLSHIM_PROTO_STATUS_PUT)
#undef POOLSHIM_PROTO_STATUS_PUT
}

daemon_status decode_status(const reply& r) noexcept {
  daemon_status s;
#define POOLSHIM_PROTO_STATUS_GET(field, slot, metric, help) s.field = get_slot(r, slot);
  POOLSHIM_PROTO_STATUS_FIGURES(POOLSHIM_PROTO_STATUS_GET)
#undef POOLSHIM_PROTO_STATUS_GET
  return s;
}

void encode_client_status(const client_status& c, reply* r) noexcept {
#define POOLSHIM_PROTO_CLIENT_PUT(field, slot) put_slot(r, slot, c.field);
  POOLSHIM_PROTO_CLIENT_FIGURES(POOLSHIM_PROTO_CLIENT_PUT)
#undef POOLSHIM_PROTO_CLIENT_PUT
}

client_status decode_client_status(const reply& r) noexcept {
  client_status c;
#define POOLSHIM_PROTO_CLIENT_GET(field, slot) c.field = get_slot(r, slot);
  POOLSHIM_PROTO_CLIENT_FIGURES(POOLSHIM_PROTO_CLIENT_GET)
#undef POOLSHIM_PROTO_CLIENT_GET
  return c;
}

void encode_channel_entry(const channel_entry& c, reply* r) noexcept {
  std::memcpy(r->payload, c.name, strnlen(c.name, k_name_size));
  r->val[0] = c.capacity;
  r->val[1] = c.max_readers | (c.shared ? k_buffer_shared : 0) | (std::uint64_t{c.writer_state} << 16);
  r->val[2] = c.readers;
  r->val[3] = c.backlog;
  r->val[4] = c.writer_pid;
  r->val[5] = c.messages;
  std::memcpy(r->payload + k_name_size, &c.held_bytes, sizeof c.held_bytes);
}

channel_entry decode_channel_entry(const reply& r) noexcept {
  channel_entry c;
  std::memcpy(c.name, r.payload, k_name_size);
  c.capacity = r.val[0];
  c.max_readers = static_cast<std::uint32_t>(r.val[1] & 0xff);
  c.shared = (r.val[1] & k_buffer_shared) != 0;
  c.writer_state = static_cast<std::uint32_t>((r.val[1] >> 16) & 0xff);
  c.readers = r.val[2];
  c.backlog = r.val[3];
  c.writer_pid = r.val[4];
  c.messages = r.val[5];
  std::memcpy(&c.held_bytes, r.payload + k_name_size, sizeof c.held_bytes);
  return c;
}

void encode_buffer_entry(const buffer_entry& b, reply* r) noexcept {
  std::memcpy(r->payload, b.name, strnlen(b.name, k_name_size));
  r->val[0] = b.bytes;
  std::memcpy(r->payload + k_name_size, b.device_uuid, k_uuid_size);
  r->val[1] = b.kind_flags | (b.device >= 0 ? static_cast<std::uint64_t>(b.device) << 32 : 0);
  r->val[2] = b.references;
  r->val[3] = b.creator_pid;
  r->val[4] = b.owner_uid;
  r->val[5] = b.created_ns;
}

buffer_entry decode_buffer_entry(const reply& r) noexcept {
  buffer_entry b;
  std::memcpy(b.name, r.payload, k_name_size);  // validate_reply: the rest of the payload is zero
  b.bytes = r.val[0];
  std::memcpy(b.device_uuid, r.payload + k_name_size, k_uuid_size);
  b.kind_flags = r.val[1] & 0xffffffffu;
  b.device = (b.kind_flags & k_buffer_kind_mask) == static_cast<std::uint64_t>(buffer_kind::device)
                 ? static_cast<int>(r.val[1] >> 32)
                 : -1;
  b.references = r.val[2];
  b.creator_pid = r.val[3];
  b.owner_uid = r.val[4];
  b.created_ns = r.val[5];
  return b;
}

}  // namespace poolshim::proto

// The wire protocol between libpoolshim.so and poolshimd: one fixed-size, trivially copyable
// request and one reply, 256 bytes each, over a SOCK_SEQPACKET Unix socket (one record per
// message; a descriptor rides along by SCM_RIGHTS where an operation says so). Every field is
// validated by validate_request / validate_reply before anything acts on it: a record of the wrong
// size, magic or version, an unknown operation, a reserved byte or an unused payload byte that is
// not zero, or an argument out of range is refused with a status, never trusted. Version 1.
// Layout (the host's byte order): see the structs; sizes and offsets are static_asserted below.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace poolshim::proto {

inline constexpr std::uint32_t k_magic = 0x44485350;  // "PSHD"
// 2: buffer_open took arg2 and arg3 and answers with references; channel_list with held bytes
// (issue #15). A client and a daemon of different versions refuse each other (bad_version).
inline constexpr std::uint16_t k_version = 2;
inline constexpr std::size_t k_record_size = 256;
inline constexpr std::size_t k_payload_size = 128;
inline constexpr std::size_t k_token_size = 16;       // an IPC token: 128 random bits
inline constexpr std::size_t k_ipc_handle_size = 64;  // sizeof(CUipcMemHandle)
inline constexpr std::size_t k_uuid_size = 16;        // sizeof(CUuuid)
inline constexpr std::uint64_t k_device_granule = std::uint64_t{2} << 20;
inline constexpr std::uint64_t k_max_lease_bytes = std::uint64_t{1} << 40;  // sanity bound: 1 TiB

// Named buffers (issue #14). A name: 1 to 63 printable ASCII bytes (0x21-0x7e) other than '/',
// NUL-padded to k_name_size. A shape: at most k_max_dims dimensions whose product times the
// element's size is the buffer's bytes (no overflow). Kinds and flags share arg1.
inline constexpr std::size_t k_name_size = 64;
inline constexpr std::size_t k_max_dims = 8;
// buffer_open's reply payload: [0,64) the shape, [64,80) the device's UUID, then the daemon's id of
// the buffer and its references now (each a u64).
inline constexpr std::size_t k_open_reply_id = k_name_size + k_uuid_size;
inline constexpr std::size_t k_open_reply_refs = k_open_reply_id + sizeof(std::uint64_t);
enum class buffer_kind : std::uint8_t { host = 1, device = 2 };
inline constexpr std::uint64_t k_buffer_kind_mask = 0xff;
inline constexpr std::uint64_t k_buffer_shared = std::uint64_t{1} << 8;  // the shared namespace (any uid)
// buffer_open's arg2: a reference without the memory (no memfd in the reply): a channel's writer
// holding a buffer it sent by reference until every reader has passed it.
inline constexpr std::uint64_t k_open_reference_only = 1;
// return_idle's arg2: arg0 and arg1 report the client's idle device and pinned bytes.
inline constexpr std::uint64_t k_idle_report = 1;
// Element types: X(name, code, bytes), code as on the wire (arg2's low 16 bits).
#define POOLSHIM_PROTO_DTYPES(X) \
  X(u8, 1, 1)                    \
  X(i8, 2, 1)                    \
  X(u16, 3, 2)                   \
  X(i16, 4, 2)                   \
  X(u32, 5, 4)                   \
  X(i32, 6, 4)                   \
  X(u64, 7, 8)                   \
  X(i64, 8, 8)                   \
  X(f16, 9, 2)                   \
  X(bf16, 10, 2)                 \
  X(f32, 11, 4)                  \
  X(f64, 12, 8)                  \
  X(bool, 13, 1)
std::size_t dtype_size(std::uint32_t code) noexcept;  // 0: not an element type
const char* dtype_name(std::uint32_t code) noexcept;  // "f32", or nullptr
std::uint32_t dtype_code(const char* name) noexcept;  // 0: not an element type

#define POOLSHIM_PROTO_OPS(X)                                                                              \
  /* op, value, fd in request, fd in reply: what the op asks */                                            \
  X(hello, 1, false, false)           /* arg0 client protocol features (0); reply: val0 slab bytes,  */    \
                                      /* val1 daemon pid, val2 region bytes                           */   \
  X(lease_slab, 2, false, true)       /* arg0 bytes (<= slab size); reply: val0 lease id, val1 bytes, */   \
                                      /* the slab's memfd                                             */   \
  X(return_slab, 3, false, false)     /* arg0 lease id (of a slab or of device memory)                */   \
  X(redeclare_slab, 4, true, false)   /* the memfd of a slab leased from an earlier daemon; arg0    */     \
                                      /* bytes; reply: val0 the new lease id                          */   \
  X(stats, 5, false, false)           /* reply: a daemon_status: val0 region bytes, val1 lent, val2  */    \
                                      /* free, val3 clients, val4 leases, val5 reclaimed slabs since  */   \
                                      /* start; payload[0,16) device bytes lent, named bytes (below)  */   \
  X(client_stats, 6, false, false)    /* arg0 index among the clients the asker may see (root: all;  */    \
                                      /* others: their uid's); reply: a client_status: val0 pid, val1 */   \
                                      /* uid, val2 lent bytes, val3 leases, val4 device bytes;        */   \
                                      /* not_found past the last one                                  */   \
  X(return_idle, 7, false, false)     /* arg2 0, or k_idle_report: then arg0 device and arg1 pinned  */    \
                                      /* bytes this client holds idle; reply: val0 pinned bytes the   */   \
                                      /* daemon wants back (every reply also carries that pressure,   */   \
                                      /* in MiB), val1 device and val2 pinned bytes it asks of this   */   \
                                      /* client (UINT64_MAX: all idle), asked once                    */   \
  X(goodbye, 8, false, false)         /* the client returns every lease and closes                    */   \
  X(ipc_register, 9, false, false)    /* a small pooled block exported: payload[0,64) the real IPC  */     \
                                      /* handle of its segment, arg0 offset in it, arg1 bytes; reply: */   \
                                      /* payload[0,16) the token                                      */   \
  X(ipc_resolve, 10, false, false)    /* payload[0,16) a token (same uid only); reply: payload[0,64) */    \
                                      /* the segment's real handle, val0 offset, val1 bytes           */   \
  X(ipc_unregister, 11, false, false) /* payload[0,16) a token of this client (the block was freed) */     \
  X(lease_device, 12, false, true)    /* device memory (VMM, opt-in): payload[0,16) the device's UUID, */  \
                                      /* arg0 bytes (a multiple of 2 MiB); reply: val0 lease id, val1  */  \
                                      /* bytes, the allocation's POSIX-fd handle. return_slab ends it.  */ \
                                      /* Refused with no_memory: val0 the idle bytes the daemon asked   */ \
                                      /* other clients to give back for it (0: waiting will not help)   */ \
  X(buffer_create, 13, false, true)   /* a named buffer (issue #14): payload[0,64) its name,          */   \
                                      /* [64,128) its shape (ndim u64 dims); arg0 bytes; arg1 kind |  */   \
                                      /* flags (k_buffer_shared); arg2 dtype | ndim << 16; device     */   \
                                      /* kind: device_uuid the device's UUID; reply: val0 a reference */   \
                                      /* id, val1 the bytes mapped (host: rounded to a page), val2    */   \
                                      /* the daemon's device index, val3 the daemon's id of the       */   \
                                      /* buffer; the host buffer's memfd                              */   \
  X(buffer_open, 14, false, true)     /* payload[0,64) a name; arg0 0, or the daemon's id of the     */    \
                                      /* buffer of that name (it may be unlinked: a channel's buffer  */   \
                                      /* sent by reference); arg1 k_buffer_shared: the shared         */   \
                                      /* namespace, else the asker's uid's; arg2 0, or                */   \
                                      /* k_open_reference_only (no memfd in the reply); arg3 0, or    */   \
                                      /* with it the asker's writer reference of the channel that    */    \
                                      /* holds the buffer (counted as the channel's held bytes);     */    \
                                      /* reply: val0 a                                                */   \
                                      /* reference id, val1 bytes, val2 kind | flags, val3 dtype |    */   \
                                      /* ndim << 16,                                                  */   \
                                      /* val4 the daemon's device index, val5 creator pid;            */   \
                                      /* payload[0,64) the shape, [64,80) the device's UUID, [80,88)  */   \
                                      /* the daemon's id of the buffer, [88,96) its references now;   */   \
                                      /* the host buffer's memfd                                      */   \
  X(buffer_close, 15, false, false)   /* arg0 a reference id of this client                          */    \
  X(buffer_unlink, 16, false, false)  /* payload[0,64) a name; arg1 k_buffer_shared (as open): the    */   \
                                      /* name goes now, the memory with its last reference            */   \
  X(buffer_list, 17, false, false)    /* arg0 index among the buffers the asker may see (its uid's   */    \
                                      /* and the shared ones; root: all); reply: payload[0,64) name,  */   \
                                      /* [64,80) the device's UUID; val0 bytes, val1 kind | flags |   */   \
                                      /* the daemon's device index << 32, val2 references, val3       */   \
                                      /* creator pid, val4 owner uid, val5 creation time (ns, epoch)  */   \
  X(buffer_handles, 18, false, false) /* a device buffer's CUDA IPC handles: arg0 a reference id of   */   \
                                      /* this client; reply: payload[0,64) the memory's legacy IPC    */   \
                                      /* handle (cuIpcGetMemHandle), [64,128) its interprocess event's */  \
                                      /* (cuIpcGetEventHandle)                                        */   \
  X(channel_create, 19, false, true)  /* a channel (issue #15; channel_ring.h), the asker its writer: */   \
                                      /* payload[0,64) its name; arg0 the ring's capacity (a power of */   \
                                      /* two); arg1 readers at most (1-64) | k_buffer_shared; reply:  */   \
                                      /* val0 a reference id, the ring's memfd                         */  \
  X(channel_open, 20, false, true)    /* a reader of the named channel: payload[0,64) the name; arg1  */   \
                                      /* k_buffer_shared or 0; reply: val0 a reference id, val1 its    */  \
                                      /* reader slot, the ring's memfd (it reads from the send after)  */  \
  X(channel_close, 21, false, false)  /* arg0 a channel reference id of this client: a writer closes  */   \
                                      /* the channel (readers drain it), a reader leaves its slot     */   \
  X(channel_list, 22, false, false)   /* arg0 index among the channels the asker may see (as          */   \
                                      /* buffer_list); reply: payload[0,64) name; val0 capacity, val1 */   \
                                      /* readers at most | k_buffer_shared | writer state << 16, val2 */   \
                                      /* readers attached, val3 backlog bytes (sent, not yet read by  */   \
                                      /* the slowest reader), val4 writer pid, val5 messages sent;    */   \
                                      /* payload[64,72) bytes of the buffers its writer holds for it  */   \
                                      /* (sent by reference, not yet passed by every reader)          */   \
  X(trim_clients, 23, false, false)   /* ask clients to give back idle memory (poolshimd --trim):    */    \
                                      /* every client the asker may see (root: all; others: their     */   \
                                      /* uid's); arg0 bytes of each (0: all idle); reply: val0 clients */  \
                                      /* asked, val1 device and val2 pinned bytes they reported idle  */

enum class op : std::uint16_t {
#define POOLSHIM_PROTO_OP_ENUM(name, value, fd_in, fd_out) name = value,
  POOLSHIM_PROTO_OPS(POOLSHIM_PROTO_OP_ENUM)
#undef POOLSHIM_PROTO_OP_ENUM
};

enum class status : std::int32_t {
  ok = 0,
  bad_size = 1,  // not exactly k_record_size bytes
  bad_magic = 2,
  bad_version = 3,
  unknown_op = 4,
  bad_reserved = 5,    // a reserved field is not zero
  bad_argument = 6,    // an argument out of range for the operation
  missing_fd = 7,      // the operation carries a descriptor and none came (or one came unasked)
  quota = 8,           // the client's or the uid's quota would be exceeded
  no_memory = 9,       // the region has no free slab
  not_found = 10,      // no such lease (or client index)
  not_permitted = 11,  // the lease is another client's
  internal = 12,
  exists = 13,       // buffer_create: the name is taken
  unsupported = 14,  // a kind this daemon does not serve
  no_device = 15,    // buffer_create: no device with that UUID here, or no CUDA driver
  busy = 16,         // channel_open: every reader slot is taken
};
inline constexpr status k_last_status = status::busy;  // a reply's status is at most this

const char* op_name(op o) noexcept;          // "lease_slab", or "unknown"
const char* status_name(status s) noexcept;  // "quota", or "unknown"
bool op_takes_fd(op o) noexcept;             // the request carries a descriptor
bool op_gives_fd(op o) noexcept;             // a successful reply carries one

struct request {
  std::uint32_t magic;    // k_magic
  std::uint16_t version;  // k_version
  std::uint16_t op;       // proto::op
  std::uint32_t size;     // k_record_size
  std::uint32_t seq;      // echoed in the reply
  std::uint64_t arg[4];
  std::uint8_t payload[k_payload_size];  // per op (see the table); zero where the op uses none
  std::uint8_t device_uuid[16];          // buffer_create of a device buffer: its device; else zero
  std::uint8_t reserved[64];             // zero
};

struct reply {
  std::uint32_t magic;
  std::uint16_t version;
  std::uint16_t op;            // the request's op
  std::uint32_t size;          // k_record_size
  std::uint32_t seq;           // the request's seq
  std::int32_t status;         // proto::status
  std::uint32_t pressure_mib;  // MiB the daemon wants back from its clients' idle caches (0: none)
  std::uint64_t val[6];
  std::uint8_t payload[k_payload_size];  // per op; zero where the op's reply uses none
  std::uint8_t reserved[56];             // zero
};

static_assert(sizeof(request) == k_record_size && std::is_trivially_copyable_v<request>);
static_assert(sizeof(reply) == k_record_size && std::is_trivially_copyable_v<reply>);
static_assert(offsetof(request, arg) == 16 && offsetof(request, payload) == 48);
static_assert(offsetof(reply, val) == 24 && offsetof(reply, payload) == 72);

// Bytes of the payload an operation's request, and its reply, may use (the rest must be zero).
std::size_t request_payload_bytes(op o) noexcept;
std::size_t reply_payload_bytes(op o) noexcept;

request make_request(op o, std::uint32_t seq) noexcept;
reply make_reply(const request& r, status s) noexcept;

// What is wrong with a buffer_create request's name, kind, element type or shape, in words for the
// user (nullptr: nothing); and a name's problem alone (buffer_open, buffer_unlink). validate_request
// refuses such a record with bad_argument; the client library says this text.
const char* buffer_create_problem(const request& r) noexcept;
const char* buffer_name_problem(const std::uint8_t (&payload)[k_payload_size]) noexcept;

// Checks every field of `len` received bytes and copies them to *out when they form a valid
// request (for ops with size limits: `slab_bytes` bounds lease_slab). Never reads past len.
status validate_request(const void* bytes, std::size_t len, std::uint64_t slab_bytes, request* out) noexcept;
// The client's side: a reply must match the request it answers (op and seq) and be well formed.
status validate_reply(const void* bytes, std::size_t len, const request& asked, reply* out) noexcept;

// ---- the daemon's figures, typed: one description for the reply, its readers and the metrics ----

// op::stats: X(field, slot, metric, help). slot 0-5 is the reply's val[slot], 6 and 7 its
// payload[0,8) and [8,16) (7: since named buffers; an older daemon leaves it zero);
// the field is also the figure's name in `poolshimd --status` and poolshim-stats; metric is its
// Prometheus name on the metrics page (nullptr: not there). The layout is version 1's: fixed.
#define POOLSHIM_PROTO_STATUS_FIGURES(X)                                                               \
  X(region_bytes, 0, "poolshimd_region_bytes", "Bytes of the pinned-host region.")                     \
  X(lent_bytes, 1, "poolshimd_lent_bytes", "Bytes lent to clients.")                                   \
  X(free_bytes, 2, "poolshimd_free_bytes", "Bytes not lent.")                                          \
  X(clients, 3, "poolshimd_clients", "Connected or lease-holding clients.")                            \
  X(leases, 4, nullptr, nullptr)                                                                       \
  X(reclaimed_slabs, 5, "poolshimd_reclaimed_slabs_total", "Slabs returned or reclaimed since start.") \
  X(device_lent_bytes, 6, "poolshimd_device_lent_bytes", "Device bytes held: leases, device buffers.") \
  X(named_bytes, 7, "poolshimd_named_bytes", "Region bytes held by named buffers.")

// op::client_stats, one client: X(field, slot), slots as above. The idle figures are what the
// client last reported (return_idle with k_idle_report; 0 for a client that never did).
#define POOLSHIM_PROTO_CLIENT_FIGURES(X) \
  X(pid, 0) X(uid, 1) X(lent_bytes, 2) X(leases, 3) X(device_bytes, 4) X(idle_device_bytes, 5) X(idle_pinned_bytes, 6)

struct daemon_status {
#define POOLSHIM_PROTO_STATUS_MEMBER(field, slot, metric, help) std::uint64_t field = 0;
  POOLSHIM_PROTO_STATUS_FIGURES(POOLSHIM_PROTO_STATUS_MEMBER)
#undef POOLSHIM_PROTO_STATUS_MEMBER
};

struct client_status {
#define POOLSHIM_PROTO_CLIENT_MEMBER(field, slot) std::uint64_t field = 0;
  POOLSHIM_PROTO_CLIENT_FIGURES(POOLSHIM_PROTO_CLIENT_MEMBER)
#undef POOLSHIM_PROTO_CLIENT_MEMBER
};

// The lists as data, in wire order, for code that prints every figure.
struct status_figure {
  const char* name;
  const char* metric;  // nullptr: not on the metrics page
  const char* help;
  std::uint64_t daemon_status::*member;
};
inline constexpr status_figure k_status_figures[] = {
#define POOLSHIM_PROTO_STATUS_ENTRY(field, slot, metric, help) {#field, metric, help, &daemon_status::field},
    POOLSHIM_PROTO_STATUS_FIGURES(POOLSHIM_PROTO_STATUS_ENTRY)
#undef POOLSHIM_PROTO_STATUS_ENTRY
};
struct client_figure {
  const char* name;
  std::uint64_t client_status::*member;
};
inline constexpr client_figure k_client_figures[] = {
#define POOLSHIM_PROTO_CLIENT_ENTRY(field, slot) {#field, &client_status::field},
    POOLSHIM_PROTO_CLIENT_FIGURES(POOLSHIM_PROTO_CLIENT_ENTRY)
#undef POOLSHIM_PROTO_CLIENT_ENTRY
};

// op::buffer_list, one named buffer: the one description of that reply, for the daemon and every
// reader (poolshimd --status, poolshim-stats node, libpoolshim_buffers).
struct buffer_entry {
  char name[k_name_size + 1] = {};  // NUL-terminated
  std::uint64_t bytes = 0;
  std::uint64_t kind_flags = 0;  // buffer_kind | k_buffer_shared
  int device = -1;               // a device buffer's: the daemon's index of its device
  std::uint8_t device_uuid[k_uuid_size] = {};
  std::uint64_t references = 0;
  std::uint64_t creator_pid = 0;
  std::uint64_t owner_uid = 0;
  std::uint64_t created_ns = 0;  // since the epoch
};
// op::channel_list, one channel (the same for every reader of the reply).
struct channel_entry {
  char name[k_name_size + 1] = {};
  std::uint64_t capacity = 0;
  std::uint32_t max_readers = 0;
  bool shared = false;
  std::uint32_t writer_state = 0;  // channel_ring.h's writer_state: 1 attached, 2 dead, 3 closed
  std::uint64_t readers = 0, backlog = 0, writer_pid = 0, messages = 0;
  std::uint64_t held_bytes = 0;  // buffers sent by reference that the writer still holds for readers
};
void encode_channel_entry(const channel_entry& c, reply* r) noexcept;
channel_entry decode_channel_entry(const reply& r) noexcept;

void encode_buffer_entry(const buffer_entry& b, reply* r) noexcept;
buffer_entry decode_buffer_entry(const reply& r) noexcept;

// Into a successful reply's record (the daemon), and out of a validated one (its clients).
void encode_status(const daemon_status& s, reply* r) noexcept;
daemon_status decode_status(const reply& r) noexcept;
void encode_client_status(const client_status& c, reply* r) noexcept;
client_status decode_client_status(const reply& r) noexcept;

}  // namespace poolshim::proto

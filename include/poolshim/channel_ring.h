// A channel's ring (issue #15): one writer, any number of readers (broadcast: a message is read by
// every reader attached when it was sent), in a shared mapping poolshimd makes and owns. Used by
// libpoolshim_buffers (send, receive) and by poolshimd (it attaches readers and marks a dead
// process's slot). Header-only; the layout is the wire: fixed for each k_version.
//
// Every participant maps the header writable, so nothing in it is trusted for memory safety: the
// capacity and the reader count are the ones checked when the mapping was made (the daemon's own,
// or valid()'s), passed in as a `shape`, and a record's size is checked against the ring before it
// is read.
//
// The mapping: a header (page-rounded), then `capacity` bytes of data (a power of two). Positions
// are 64-bit byte counts that only grow; a record sits at position % capacity and never wraps: a
// record that would cross the end is preceded by a wrap record that fills the rest. A record is an
// 8-byte head (payload bytes, kind) and the payload, padded to 8 bytes.
//
// Ordering: the writer copies a record, then publishes `head` (release) and bumps `data_seq`; a
// reader reads `head` (acquire), reads the record in place (zero copy), and releases it by moving
// its `tail` (release) and bumping `space_seq`. The writer never overwrites a byte some attached
// reader's tail has not passed: it waits (back-pressure), with a timeout, never drops. Waits spin
// for a while (k_spin unless the caller says), then sleep on the 32-bit sequence word with a
// shared futex; a sleeper counts itself in the word's waiter count first, so that a publish or a
// release makes the wake-up system call only when somebody sleeps.
//
// A send is a reserve (room waited for, the record's head written) and a publish; between them the
// writer fills the payload in place (poolshim_channel_reserve: no copy at all).
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace poolshim::channel {

inline constexpr std::uint64_t k_magic = 0x314c4e4843535050ull;  // "PPSCHNL1"
inline constexpr std::uint32_t k_version = 2;                    // 2: the waiter counts
inline constexpr std::uint32_t k_max_readers = 64;
inline constexpr std::uint64_t k_min_capacity = 4096;
inline constexpr std::uint64_t k_max_capacity = std::uint64_t{1} << 32;

enum slot_state : std::uint32_t { slot_free = 0, slot_attached = 1 };
enum writer_state : std::uint32_t { writer_none = 0, writer_attached = 1, writer_dead = 2, writer_closed = 3 };
// record_buffer: a reference to a named buffer (channel.h's send_buffer): a buffer_ref, its name,
// then the sender's head bytes; the bytes themselves are in the buffer (no copy).
enum record_kind : std::uint32_t { record_data = 1, record_wrap = 2, record_buffer = 3 };

struct buffer_ref {
  std::uint32_t name_bytes;  // then the name (not terminated)
  std::uint32_t flags;       // poolshim/buffers.h's flags to open it with (the namespace)
  std::uint64_t bytes;       // the buffer's size
  std::uint64_t id;          // the daemon's id of it (opened by id: its name may be gone already)
};

struct alignas(64) reader_slot {
  std::atomic<std::uint32_t> state;  // slot_state
  std::uint32_t pid;
  std::atomic<std::uint64_t> tail;  // the next position this reader reads
};

struct header {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t max_readers;
  std::uint64_t capacity;
  std::uint64_t data_offset;                    // from the mapping's start
  alignas(64) std::atomic<std::uint64_t> head;  // the next position the writer writes
  std::atomic<std::uint32_t> data_seq;          // futex: bumped by a publish, a close, a death
  std::atomic<std::uint32_t> space_seq;         // futex: bumped by a release, a detach, a death
  std::atomic<std::uint32_t> writer;            // writer_state
  std::uint32_t writer_pid;
  std::atomic<std::uint64_t> messages;       // sent so far
  std::atomic<std::uint32_t> data_waiters;   // readers asleep on data_seq
  std::atomic<std::uint32_t> space_waiters;  // a writer asleep on space_seq
  reader_slot readers[k_max_readers];
};
static_assert(sizeof(reader_slot) == 64);

struct record_head {
  std::uint32_t bytes;  // payload
  std::uint32_t kind;   // record_kind
};

inline std::uint64_t round8(std::uint64_t n) { return (n + 7) & ~std::uint64_t{7}; }
inline std::uint64_t data_offset_for() { return (sizeof(header) + 4095) & ~std::uint64_t{4095}; }
inline std::uint64_t mapping_bytes(std::uint64_t capacity) { return data_offset_for() + capacity; }
inline bool valid_capacity(std::uint64_t c) { return c >= k_min_capacity && c <= k_max_capacity && (c & (c - 1)) == 0; }

// A fresh header (poolshimd, on a new mapping of mapping_bytes(capacity) zero bytes).
inline void init(header* h, std::uint64_t capacity, std::uint32_t max_readers) {
  h->magic = k_magic;
  h->version = k_version;
  h->max_readers = max_readers;
  h->capacity = capacity;
  h->data_offset = data_offset_for();
}

// The header of a mapping someone else made, checked (false: not a channel of this version).
inline bool valid(const header* h, std::uint64_t mapped) {
  return h->magic == k_magic && h->version == k_version && h->max_readers >= 1 && h->max_readers <= k_max_readers &&
         valid_capacity(h->capacity) && h->data_offset == data_offset_for() && mapping_bytes(h->capacity) <= mapped;
}

// Bumps the word and wakes its sleepers, if any. Both sides are sequentially consistent: either
// the sleeper's futex sees the bump (and does not sleep) or the waker sees the sleeper's count.
inline void wake_all(std::atomic<std::uint32_t>* word, std::atomic<std::uint32_t>* waiters) {
  word->fetch_add(1, std::memory_order_seq_cst);
  if (waiters->load(std::memory_order_seq_cst) == 0) return;
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}
inline void wake_readers(header* h) { wake_all(&h->data_seq, &h->data_waiters); }
inline void wake_writer(header* h) { wake_all(&h->space_seq, &h->space_waiters); }

// Sleeps while *word == seen, until `until` (false: the time is up). Spurious returns are fine.
inline bool wait_change(std::atomic<std::uint32_t>* word, std::atomic<std::uint32_t>* waiters, std::uint32_t seen,
                        std::chrono::steady_clock::time_point until) {
  const auto now = std::chrono::steady_clock::now();
  if (now >= until) return false;
  const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(until - now);
  timespec ts{static_cast<time_t>(left.count() / 1000000000), static_cast<long>(left.count() % 1000000000)};
  waiters->fetch_add(1, std::memory_order_seq_cst);
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT, seen, &ts, nullptr, 0);
  waiters->fetch_sub(1, std::memory_order_seq_cst);
  return true;
}

enum class result { ok, timeout, no_reader, too_large, closed, writer_gone, corrupt };

// The ring's size and reader slots as checked once (never re-read from the shared header).
struct shape {
  std::uint64_t capacity;
  std::uint32_t max_readers;
};
inline shape shape_of(const header* h) { return {h->capacity, h->max_readers}; }

// How long a wait spins before it sleeps on the futex, unless the caller says: a message that comes
// within it is taken without a wake-up (tens of microseconds on a VM); an idle reader costs this
// much CPU per wait.
inline constexpr std::chrono::microseconds k_spin{20};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// True while a wait begun at `start` should keep spinning (checked every 64 rounds).
inline bool keep_spinning(int round, std::chrono::steady_clock::time_point start, std::chrono::microseconds spin) {
  cpu_relax();
  return (round & 63) != 63 || std::chrono::steady_clock::now() - start < spin;
}

// The lowest tail of the attached readers, or false when none is attached.
inline bool lowest_tail(const header* h, std::uint32_t max_readers, std::uint64_t* out) {
  bool any = false;
  std::uint64_t low = 0;
  for (std::uint32_t i = 0; i < max_readers && i < k_max_readers; ++i) {
    if (h->readers[i].state.load(std::memory_order_seq_cst) != slot_attached) continue;
    const std::uint64_t t = h->readers[i].tail.load(std::memory_order_acquire);
    if (!any || t < low) low = t;
    any = true;
  }
  *out = low;
  return any;
}

// For the tools: the readers attached now, and the bytes sent that the slowest has not read.
inline std::uint32_t attached_readers(const header* h, std::uint32_t max_readers) {
  std::uint32_t n = 0;
  for (std::uint32_t i = 0; i < max_readers && i < k_max_readers; ++i)
    n += h->readers[i].state.load(std::memory_order_acquire) == slot_attached;
  return n;
}
inline std::uint64_t backlog(const header* h, std::uint32_t max_readers) {
  std::uint64_t low = 0;
  const std::uint64_t head = h->head.load(std::memory_order_acquire);
  return lowest_tail(h, max_readers, &low) && head > low ? head - low : 0;
}

// Whether a message of `bytes` goes inline: its record (head and padded payload) takes at most half
// the ring. A larger one travels apart (a buffer of its own, by reference).
inline bool fits_inline(shape sh, std::uint64_t bytes) {
  return bytes <= UINT32_MAX && sizeof(record_head) + round8(bytes) <= sh.capacity / 2;
}

// A reservation: where the payload goes, and what publish needs.
struct reservation {
  unsigned char* payload = nullptr;
  std::uint64_t end = 0;  // the head once published
};

// The writer's reserve of a record of `bytes` payload bytes: waits for room (back-pressure, up to
// `until`), writes the wrap record and the record's head, and returns where the payload goes. Nothing
// is visible to readers until publish. With no reader attached it refuses (no_reader).
inline result reserve(header* h, shape sh, unsigned char* data, std::uint64_t bytes,
                      std::chrono::steady_clock::time_point until, std::uint32_t kind, reservation* out,
                      std::chrono::microseconds spin = k_spin) {
  const std::uint64_t cap = sh.capacity;
  const std::uint64_t rec = sizeof(record_head) + round8(bytes);
  if (!fits_inline(sh, bytes)) return result::too_large;
  const std::uint64_t head = h->head.load(std::memory_order_relaxed);  // only the writer moves it
  const std::uint64_t pos = head % cap;
  const std::uint64_t room_to_end = cap - pos;
  const std::uint64_t wrap = rec > room_to_end ? room_to_end : 0;
  const auto start = std::chrono::steady_clock::now();
  bool spinning = true;
  for (int round = 0;; ++round) {
    const std::uint32_t seen = h->space_seq.load(std::memory_order_acquire);
    std::uint64_t low = 0;
    if (!lowest_tail(h, sh.max_readers, &low)) return result::no_reader;
    if (low > head || head + wrap + rec - low <= cap) break;  // (a tail past the head: a peer wrote it)
    if (spinning && (spinning = keep_spinning(round, start, spin))) continue;
    if (!wait_change(&h->space_seq, &h->space_waiters, seen, until)) return result::timeout;
  }
  std::uint64_t at = pos;
  if (wrap != 0) {
    const record_head w{0, record_wrap};
    std::memcpy(data + pos, &w, sizeof w);
    at = 0;
  }
  const record_head r{static_cast<std::uint32_t>(bytes), kind};
  std::memcpy(data + at, &r, sizeof r);
  out->payload = data + at + sizeof r;
  out->end = head + wrap + rec;
  return result::ok;
}

// Makes a reserved record visible to the readers and wakes them.
inline void publish(header* h, const reservation& r) {
  h->head.store(r.end, std::memory_order_release);
  h->messages.fetch_add(1, std::memory_order_relaxed);
  wake_readers(h);
}

// The writer's send: `parts` pieces gathered into one record (a reserve, the copy, a publish).
inline result send(header* h, shape sh, unsigned char* data, const void* const* parts, const std::size_t* sizes,
                   std::size_t nparts, std::chrono::steady_clock::time_point until, std::uint32_t kind = record_data,
                   std::uint64_t* end = nullptr, std::chrono::microseconds spin = k_spin) {
  std::uint64_t bytes = 0;
  for (std::size_t i = 0; i < nparts; ++i) {
    if (sizes[i] > UINT32_MAX - bytes) return result::too_large;  // no sum that wraps
    bytes += sizes[i];
  }
  reservation res;
  if (const result r = reserve(h, sh, data, bytes, until, kind, &res, spin); r != result::ok) return r;
  unsigned char* out = res.payload;
  for (std::size_t i = 0; i < nparts; ++i) {
    if (sizes[i] != 0) std::memcpy(out, parts[i], sizes[i]);
    out += sizes[i];
  }
  if (end != nullptr) *end = res.end;
  publish(h, res);
  return result::ok;
}

// A reader's receive: the next record in place (*payload, *bytes), valid until release(). Skips
// wrap records. closed / writer_gone once the writer closed or died and everything sent was read.
inline result receive(header* h, shape sh, const unsigned char* data, std::uint32_t slot, const unsigned char** payload,
                      std::uint32_t* bytes, std::uint64_t* next, std::chrono::steady_clock::time_point until,
                      std::uint32_t* kind = nullptr, std::chrono::microseconds spin = k_spin) {
  reader_slot& me = h->readers[slot];
  const std::uint64_t cap = sh.capacity;
  const auto start = std::chrono::steady_clock::now();
  bool spinning = true;
  for (int round = 0;; ++round) {
    const std::uint32_t seen = h->data_seq.load(std::memory_order_acquire);
    std::uint64_t tail = me.tail.load(std::memory_order_relaxed);
    const std::uint64_t head = h->head.load(std::memory_order_acquire);
    if (tail != head) {
      const std::uint64_t pos = tail % cap;
      record_head r;
      std::memcpy(&r, data + pos, sizeof r);
      // A record runs past the ring's end, or past what was published: not the writer's (or not
      // the same ring's) doing; nothing of it is read.
      if (tail > head || cap - pos < sizeof r ||
          (r.kind != record_wrap && sizeof r + round8(r.bytes) > std::min(cap - pos, head - tail)))
        return result::corrupt;
      if (r.kind == record_wrap) {
        me.tail.store(tail + (cap - pos), std::memory_order_release);
        wake_writer(h);
        continue;
      }
      *payload = data + pos + sizeof r;
      *bytes = r.bytes;
      if (kind != nullptr) *kind = r.kind;
      *next = tail + sizeof r + round8(r.bytes);
      return result::ok;
    }
    const std::uint32_t w = h->writer.load(std::memory_order_acquire);
    if (w == writer_closed) return result::closed;
    if (w == writer_dead) return result::writer_gone;
    if (spinning && (spinning = keep_spinning(round, start, spin))) continue;
    if (!wait_change(&h->data_seq, &h->data_waiters, seen, until)) return result::timeout;
  }
}

inline void release(header* h, std::uint32_t slot, std::uint64_t next) {
  h->readers[slot].tail.store(next, std::memory_order_release);
  wake_writer(h);
}

// Attaches a reader in slot `slot` at the current head (it reads what is sent from now on). The
// daemon assigns slots; this is its step (and a test's).
inline void attach(header* h, std::uint32_t slot, std::uint32_t pid) {
  reader_slot& s = h->readers[slot];
  s.pid = pid;
  s.tail.store(h->head.load(std::memory_order_acquire), std::memory_order_release);
  s.state.store(slot_attached, std::memory_order_seq_cst);
  // A writer that looked before the state was set may have moved on: start at the head it has now.
  s.tail.store(h->head.load(std::memory_order_seq_cst), std::memory_order_seq_cst);
}

inline void detach(header* h, std::uint32_t slot) {
  h->readers[slot].state.store(slot_free, std::memory_order_seq_cst);
  wake_writer(h);
}

}  // namespace poolshim::channel

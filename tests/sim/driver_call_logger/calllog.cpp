// libpoolshim_calllog.so: an LD_PRELOAD library that records which CUDA driver entry points a
// program's cudart (shared or static) looks up and how often it calls each, per program phase.
// It answers dlsym("cuGetProcAddress*") and dlsym(h, "cuXxx") with counting thunks
// (calllog_thunks.S) and writes the map at exit; DESIGN.md's driver-call map is recorded with it.
// With POOLSHIM_CALLLOG_SEQUENCE=1 the map also lists every lookup in the order it was made (`seq`
// lines; the `lookup` lines are one per distinct lookup, sorted), which `call_map.py lookups`
// compares with a record of NVIDIA's cudart (tests/sim/fixtures/cudart-13.0-lookups.tsv).
#include <cuda.h>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "calllog_config.h"

#if !defined(__x86_64__)
#error "libpoolshim_calllog.so is x86-64 only: its thunks are x86-64 assembly"
#endif

// Defined in calllog_thunks.S. Thunk n lives at poolshim_calllog_thunks + 16*n, counts into
// poolshim_calllog_counts[n] and jumps through poolshim_calllog_targets[n].
extern "C" {
extern const unsigned char poolshim_calllog_thunks[];
extern std::uint64_t poolshim_calllog_counts[];
extern void* poolshim_calllog_targets[];
}

namespace {

constexpr int kSlots = POOLSHIM_CALLLOG_SLOTS;
constexpr int kRecords = 2 * kSlots;      // lookups that found nothing need no slot
constexpr int kIndexSize = 4 * kRecords;  // open addressing, load factor <= 1/2
constexpr int kPhases = 64;
constexpr std::size_t kNameMax = 96;  // longest driver name today is under 50 bytes
constexpr std::size_t kPhaseNameMax = 64;
constexpr std::size_t kPathMax = 4096;

// How the caller obtained the pointer.
enum class via_kind : unsigned char { dlsym, gpa_v1, gpa_v2 };

const char* via_name(via_kind v) {
  switch (v) {
    case via_kind::dlsym:
      return "dlsym";
    case via_kind::gpa_v1:
      return "cuGetProcAddress";
    case via_kind::gpa_v2:
      return "cuGetProcAddress_v2";
  }
  return "?";
}

// One distinct lookup (name, version, flags, route, real pointer). Each gets its own slot, so a
// call is attributed to the exact lookup whose pointer the caller used.
struct lookup_record {
  char name[kNameMax];
  char entry[kNameMax];  // the driver export the pointer is (e.g. cuMemAlloc_v2)
  void* real;
  std::uint64_t flags;
  int version;
  int result;  // CUresult of the lookup call (0 for dlsym)
  int status;  // CUdriverProcAddressQueryResult, or 0/1 found/not found
  int slot;    // -1: handed back unwrapped (not found, data symbol, or table full)
  via_kind via;
};

struct phase_record {
  char name[kPhaseNameMax];
  std::uint64_t start[kSlots];  // counters when the phase began
};

// Process-wide state. Plain static storage (zero pages until touched), never heap: the logger runs
// inside dlsym and at exit, where allocating is not allowed.
lookup_record g_records[kRecords];
int g_index[kIndexSize];  // record number + 1; 0 = empty
int g_record_count = 0;
int g_slot_count = 0;
int g_dropped_lookups = 0;
int g_unwrapped_for_lack_of_slots = 0;
phase_record g_phases[kPhases];
int g_phase_count = 1;  // phase 0, "startup", covers everything before the first marker
int g_dropped_phases = 0;
std::uint64_t g_final[kSlots];
bool g_finished = false;

// With POOLSHIM_CALLLOG_SEQUENCE=1, every lookup as it was made (the `lookup` lines are one per
// distinct lookup, sorted): record number (-1: the record table was full) and phase.
constexpr int kSequence = 1 << 15;
struct sequence_entry {
  int record;
  int phase;
};
bool g_sequence_on = false;
sequence_entry g_sequence[kSequence];
int g_sequence_count = 0;
int g_dropped_sequence = 0;

char g_out_path[kPathMax];
char g_process_name[kPhaseNameMax] = "main";

// A spinlock that never allocates and never sleeps in the kernel, so it is safe inside dlsym and
// at exit. Held only for table edits and copies, never across a driver or dl* call.
std::atomic_flag g_lock = ATOMIC_FLAG_INIT;
struct spin_guard {
  spin_guard() {
    while (g_lock.test_and_set(std::memory_order_acquire)) __builtin_ia32_pause();
  }
  ~spin_guard() { g_lock.clear(std::memory_order_release); }
  spin_guard(const spin_guard&) = delete;
  spin_guard& operator=(const spin_guard&) = delete;
};

void write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

void say(const char* msg) { write_all(2, msg, std::strlen(msg)); }

void copy_name(char* dst, std::size_t cap, const char* src) {
  std::size_t n = src ? std::strlen(src) : 0;
  if (n >= cap) n = cap - 1;
  if (n) std::memcpy(dst, src, n);
  dst[n] = '\0';
}

// ---- the real dlsym ---------------------------------------------------------------------------

using dlsym_fn = void* (*)(void*, const char*);
std::atomic<dlsym_fn> g_real_dlsym{nullptr};

[[gnu::noinline]] dlsym_fn resolve_real_dlsym() {
  // dlvsym is not interposed, so this cannot recurse into our dlsym. glibc 2.34 moved dlsym into
  // libc under a new version; older glibc has only GLIBC_2.2.5.
  void* p = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
  if (!p) p = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
  if (!p) {
    say("poolshim_calllog: cannot find the real dlsym; aborting\n");
    std::abort();
  }
  auto f = reinterpret_cast<dlsym_fn>(p);
  g_real_dlsym.store(f, std::memory_order_release);
  return f;
}

inline dlsym_fn real_dlsym() {
  dlsym_fn f = g_real_dlsym.load(std::memory_order_acquire);
  if (f) [[likely]]
    return f;
  return resolve_real_dlsym();
}

// ---- cuGetProcAddress wrappers -----------------------------------------------------------------

using gpa_v1_fn = CUresult (*)(const char*, void**, int, cuuint64_t);
using gpa_v2_fn = CUresult (*)(const char*, void**, int, cuuint64_t, CUdriverProcAddressQueryResult*);
std::atomic<gpa_v1_fn> g_real_gpa_v1{nullptr};
std::atomic<gpa_v2_fn> g_real_gpa_v2{nullptr};

CUresult wrapped_gpa_v1(const char* symbol, void** pfn, int version, cuuint64_t flags);
CUresult wrapped_gpa_v2(const char* symbol, void** pfn, int version, cuuint64_t flags,
                        CUdriverProcAddressQueryResult* status);

// A driver name is "cu" followed by an upper-case letter; "cuda*" (runtime) names are not.
inline bool is_driver_name(const char* name) {
  return name[0] == 'c' && name[1] == 'u' && name[2] >= 'A' && name[2] <= 'Z';
}

std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h;
}

std::uint64_t key_hash(const char* name, int version, std::uint64_t flags, via_kind via, const void* real) {
  std::uint64_t h = 1469598103934665603ULL;
  for (const char* p = name; *p; ++p) h = (h ^ static_cast<unsigned char>(*p)) * 1099511628211ULL;
  h = mix(h, static_cast<std::uint64_t>(static_cast<unsigned>(version)));
  h = mix(h, flags);
  h = mix(h, static_cast<std::uint64_t>(via));
  h = mix(h, reinterpret_cast<std::uintptr_t>(real));
  return h;
}

void* thunk_address(int slot) {
  return const_cast<unsigned char*>(poolshim_calllog_thunks) +
         static_cast<std::size_t>(slot) * POOLSHIM_CALLLOG_THUNK_BYTES;
}

// Names the driver export at `p`. Done before taking the lock: dladdr takes the loader lock.
// A pointer that is not exactly an exported symbol (an internal function handed out by
// cuGetProcAddress) is named "?<symbol>@<version>" rather than after the nearest export.
void name_entry(char* out, const void* p, const char* symbol, int version) {
  Dl_info info{};
  if (p && dladdr(p, &info) != 0 && info.dli_sname && info.dli_saddr == p) {
    copy_name(out, kNameMax, info.dli_sname);
    return;
  }
  char buf[kNameMax];
  std::size_t n = 0;
  buf[n++] = '?';
  for (const char* s = symbol; *s && n < kNameMax - 16; ++s) buf[n++] = *s;
  buf[n++] = '@';
  char digits[16];
  int d = 0;
  unsigned v = static_cast<unsigned>(version);
  do {
    digits[d++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  while (d) buf[n++] = digits[--d];
  buf[n] = '\0';
  copy_name(out, kNameMax, buf);
}

// Data symbols must be handed back as they are: a thunk is code.
bool is_function_symbol(const void* p) {
  Dl_info info{};
  void* entry = nullptr;
  if (!dladdr1(p, &info, &entry, RTLD_DL_SYMENT) || !entry) return true;
  const auto* sym = static_cast<const ElfW(Sym)*>(entry);
  unsigned type = ELF64_ST_TYPE(sym->st_info);
  return type != STT_OBJECT && type != STT_TLS && type != STT_COMMON;
}

// Appends lookup record `record` to the sequence (under g_lock).
void note_in_sequence(int record) {
  if (!g_sequence_on || g_finished) return;
  if (g_sequence_count >= kSequence) {
    ++g_dropped_sequence;
    return;
  }
  g_sequence[g_sequence_count++] = sequence_entry{record, g_phase_count - 1};
}

// Records one lookup and returns what the caller gets: the slot's thunk, or `target` unwrapped.
// `target` is the real pointer, or our own wrapper when the symbol is cuGetProcAddress itself.
void* record_lookup(const char* name, int version, std::uint64_t flags, int result, int status, via_kind via,
                    void* real, void* target, const char* entry_override) {
  char entry[kNameMax];
  bool wrap = target != nullptr;
  if (entry_override) {
    copy_name(entry, kNameMax, entry_override);
  } else if (via == via_kind::dlsym) {
    copy_name(entry, kNameMax, name);
    if (wrap) wrap = is_function_symbol(real);
  } else {
    name_entry(entry, real, name, version);
  }

  char key_name[kNameMax];
  copy_name(key_name, kNameMax, name);
  const std::uint64_t h = key_hash(key_name, version, flags, via, real);

  spin_guard guard;
  std::size_t pos = h % kIndexSize;
  for (;;) {
    int id = g_index[pos];
    if (id == 0) break;
    lookup_record& r = g_records[id - 1];
    if (r.real == real && r.version == version && r.flags == flags && r.via == via &&
        std::strcmp(r.name, key_name) == 0) {
      note_in_sequence(id - 1);
      return r.slot >= 0 ? thunk_address(r.slot) : target;
    }
    pos = (pos + 1) % kIndexSize;
  }
  if (g_record_count >= kRecords) {
    ++g_dropped_lookups;
    note_in_sequence(-1);
    return target;
  }
  note_in_sequence(g_record_count);
  lookup_record& r = g_records[g_record_count];
  std::memcpy(r.name, key_name, kNameMax);
  std::memcpy(r.entry, entry, kNameMax);
  r.real = real;
  r.flags = flags;
  r.version = version;
  r.result = result;
  r.status = status;
  r.via = via;
  r.slot = -1;
  if (wrap) {
    if (g_slot_count < kSlots) {
      r.slot = g_slot_count++;
      // The target is stored before the thunk's address escapes; the caller's own later call
      // (or the synchronisation that hands the pointer to another thread) orders the two.
      __atomic_store_n(&poolshim_calllog_targets[r.slot], target, __ATOMIC_RELEASE);
    } else {
      ++g_unwrapped_for_lack_of_slots;
    }
  }
  g_index[pos] = ++g_record_count;
  return r.slot >= 0 ? thunk_address(r.slot) : target;
}

// If the driver handed back cuGetProcAddress itself, the caller gets our wrapper of the same ABI,
// so lookups made through it are logged too. Comparing pointers keeps the ABI choice the driver's.
void* own_wrapper_for(void* real, const char** entry) {
  if (real && real == reinterpret_cast<void*>(g_real_gpa_v2.load(std::memory_order_acquire))) {
    *entry = "cuGetProcAddress_v2";
    return reinterpret_cast<void*>(&wrapped_gpa_v2);
  }
  if (real && real == reinterpret_cast<void*>(g_real_gpa_v1.load(std::memory_order_acquire))) {
    *entry = "cuGetProcAddress";
    return reinterpret_cast<void*>(&wrapped_gpa_v1);
  }
  *entry = nullptr;
  return real;
}

CUresult wrapped_gpa_v2(const char* symbol, void** pfn, int version, cuuint64_t flags,
                        CUdriverProcAddressQueryResult* status) {
  gpa_v2_fn real = g_real_gpa_v2.load(std::memory_order_acquire);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  CUdriverProcAddressQueryResult local = CU_GET_PROC_ADDRESS_SUCCESS;
  CUdriverProcAddressQueryResult* st = status ? status : &local;
  CUresult rc = real(symbol, pfn, version, flags, st);
  if (!symbol || !pfn) return rc;
  void* got = rc == CUDA_SUCCESS ? *pfn : nullptr;
  const char* entry = nullptr;
  void* target = own_wrapper_for(got, &entry);
  void* handed = record_lookup(symbol, version, flags, static_cast<int>(rc), static_cast<int>(*st), via_kind::gpa_v2,
                               got, target, entry);
  if (rc == CUDA_SUCCESS) *pfn = handed;
  return rc;
}

CUresult wrapped_gpa_v1(const char* symbol, void** pfn, int version, cuuint64_t flags) {
  gpa_v1_fn real = g_real_gpa_v1.load(std::memory_order_acquire);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  CUresult rc = real(symbol, pfn, version, flags);
  if (!symbol || !pfn) return rc;
  void* got = rc == CUDA_SUCCESS ? *pfn : nullptr;
  const char* entry = nullptr;
  void* target = own_wrapper_for(got, &entry);
  // The 4-argument lookup reports no query status: found or not is all there is.
  void* handed =
      record_lookup(symbol, version, flags, static_cast<int>(rc), got ? 0 : 1, via_kind::gpa_v1, got, target, entry);
  if (rc == CUDA_SUCCESS) *pfn = handed;
  return rc;
}

// dlsym(handle, "cu...") after the cheap name check: look it up for real, learn both
// cuGetProcAddress flavours from the same handle, and hand back a thunk.
[[gnu::noinline]] void* driver_dlsym(void* handle, const char* name) {
  dlsym_fn real = real_dlsym();
  void* p = real(handle, name);
  const bool v2 = std::strcmp(name, "cuGetProcAddress_v2") == 0;
  const bool v1 = !v2 && std::strcmp(name, "cuGetProcAddress") == 0;
  const char* entry = nullptr;
  void* target = p;
  if (p && (v1 || v2)) {
    void* other = real(handle, v2 ? "cuGetProcAddress" : "cuGetProcAddress_v2");
    void* p_v2 = v2 ? p : other;
    void* p_v1 = v2 ? other : p;
    if (p_v2) g_real_gpa_v2.store(reinterpret_cast<gpa_v2_fn>(p_v2), std::memory_order_release);
    if (p_v1) g_real_gpa_v1.store(reinterpret_cast<gpa_v1_fn>(p_v1), std::memory_order_release);
    target = own_wrapper_for(p, &entry);
  }
  return record_lookup(name, 0, 0, 0, p ? 0 : 1, via_kind::dlsym, p, target, entry);
}

// ---- phases and output -------------------------------------------------------------------------

void snapshot(std::uint64_t* into) {
  for (int s = 0; s < kSlots; ++s) into[s] = __atomic_load_n(&poolshim_calllog_counts[s], __ATOMIC_RELAXED);
}

const char* phase_name(int p) { return p == 0 ? "startup" : g_phases[p].name; }

// Buffered writer over write(2): no stdio and no allocation at exit.
struct out_writer {
  int fd;
  std::size_t len = 0;
  char buf[1 << 16];

  void flush() {
    write_all(fd, buf, len);
    len = 0;
  }
  void put(const char* s) {
    while (*s) {
      if (len == sizeof buf) flush();
      buf[len++] = *s++;
    }
  }
  void put_u64(std::uint64_t v) {
    char d[24];
    int n = 0;
    do {
      d[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v);
    char s[24];
    int i = 0;
    while (n) s[i++] = d[--n];
    s[i] = '\0';
    put(s);
  }
  void put_i64(std::int64_t v) {
    if (v < 0) {
      put("-");
      put_u64(static_cast<std::uint64_t>(-(v + 1)) + 1);
    } else {
      put_u64(static_cast<std::uint64_t>(v));
    }
  }
};

// " flags=F status=S" of a lookup (S is "error:N" when the lookup itself failed).
void put_flags_and_status(out_writer& o, const lookup_record& r) {
  o.put(" flags=");
  o.put_u64(r.flags);
  o.put(" status=");
  if (r.result != 0) {
    o.put("error:");
    o.put_i64(r.result);
  } else {
    o.put_i64(r.status);
  }
}

out_writer g_out{2};
int g_order[kRecords];

struct call_row {
  const lookup_record* rec;
  std::uint64_t calls;
};
call_row g_rows[kRecords];

bool lookup_less(int a, int b) {
  const lookup_record& x = g_records[a];
  const lookup_record& y = g_records[b];
  if (int c = std::strcmp(x.name, y.name)) return c < 0;
  if (x.version != y.version) return x.version < y.version;
  if (x.flags != y.flags) return x.flags < y.flags;
  if (x.via != y.via) return x.via < y.via;
  if (int c = std::strcmp(x.entry, y.entry)) return c < 0;
  if (x.status != y.status) return x.status < y.status;
  return a < b;
}

bool row_less(const call_row& a, const call_row& b) {
  if (int c = std::strcmp(a.rec->entry, b.rec->entry)) return c < 0;
  return a.rec->via < b.rec->via;
}

void write_map(out_writer& o) {
  o.put("# poolshim driver-call log v1: lookup = what was looked up (calls = calls through it);\n");
  o.put("# call = entry points called per phase (a phase runs until the next marker).\n");
  if (g_sequence_on) o.put("# seq = every lookup in the order made: ORDER PHASE via= version= flags= status= name=\n");
  o.put("process ");
  o.put(g_process_name);
  o.put("\n");
  for (int p = 0; p < g_phase_count; ++p) {
    o.put("phase ");
    o.put_u64(static_cast<std::uint64_t>(p));
    o.put(" ");
    o.put(phase_name(p));
    o.put("\n");
  }

  const int n = g_record_count;
  for (int i = 0; i < n; ++i) g_order[i] = i;
  std::sort(g_order, g_order + n, lookup_less);
  for (int i = 0; i < n; ++i) {
    const lookup_record& r = g_records[g_order[i]];
    o.put("lookup ");
    o.put(r.name);
    o.put(" version=");
    o.put_i64(r.version);
    put_flags_and_status(o, r);
    o.put(" via=");
    o.put(via_name(r.via));
    o.put(" calls=");
    if (r.slot >= 0) {
      o.put_u64(g_final[r.slot]);
    } else {
      o.put("-");
    }
    o.put("\n");
  }

  // Lookups in the order made; the name comes last (it may be empty).
  for (int i = 0; i < g_sequence_count; ++i) {
    const sequence_entry& e = g_sequence[i];
    o.put("seq ");
    o.put_u64(static_cast<std::uint64_t>(i + 1));
    o.put(" ");
    o.put(phase_name(e.phase));
    if (e.record < 0) {
      o.put(" dropped\n");
      continue;
    }
    const lookup_record& r = g_records[e.record];
    o.put(" via=");
    o.put(via_name(r.via));
    o.put(" version=");
    o.put_i64(r.version);
    put_flags_and_status(o, r);
    o.put(" name=");
    o.put(r.name);
    o.put("\n");
  }

  for (int p = 0; p < g_phase_count; ++p) {
    const std::uint64_t* begin = g_phases[p].start;
    const std::uint64_t* end = p + 1 < g_phase_count ? g_phases[p + 1].start : g_final;
    int rows = 0;
    for (int i = 0; i < n; ++i) {
      const lookup_record& r = g_records[i];
      if (r.slot < 0) continue;
      std::uint64_t d = end[r.slot] - begin[r.slot];
      if (d) g_rows[rows++] = call_row{&r, d};
    }
    std::sort(g_rows, g_rows + rows, row_less);
    for (int i = 0; i < rows;) {
      int j = i;
      std::uint64_t total = 0;
      while (j < rows && !row_less(g_rows[i], g_rows[j])) total += g_rows[j++].calls;
      o.put("call ");
      o.put(phase_name(p));
      o.put(" ");
      o.put(g_rows[i].rec->entry);
      o.put(" via=");
      o.put(via_name(g_rows[i].rec->via));
      o.put(" calls=");
      o.put_u64(total);
      o.put("\n");
      i = j;
    }
  }
  if (g_dropped_sequence) {
    o.put("# warning: lookup sequence full: ");
    o.put_u64(static_cast<std::uint64_t>(g_dropped_sequence));
    o.put(" later lookups not in it\n");
  }
  if (g_dropped_lookups || g_unwrapped_for_lack_of_slots || g_dropped_phases) {
    o.put("# warning: tables full: lookups dropped=");
    o.put_u64(static_cast<std::uint64_t>(g_dropped_lookups));
    o.put(" unwrapped=");
    o.put_u64(static_cast<std::uint64_t>(g_unwrapped_for_lack_of_slots));
    o.put(" phases dropped=");
    o.put_u64(static_cast<std::uint64_t>(g_dropped_phases));
    o.put("\n");
  }
  o.put("end ");
  o.put(g_process_name);
  o.put("\n");
}

void copy_env(char* dst, std::size_t cap, const char* var) {
  const char* v = std::getenv(var);
  if (v && *v) copy_name(dst, cap, v);
}

[[gnu::constructor]] void calllog_init() {
  resolve_real_dlsym();
  // Read once, here: the program may change its environment later, and getenv at exit would
  // see the change.
  copy_env(g_out_path, sizeof g_out_path, "POOLSHIM_CALLLOG_OUT");
  copy_env(g_process_name, sizeof g_process_name, "POOLSHIM_CALLLOG_PROCESS");
  const char* sequence = std::getenv("POOLSHIM_CALLLOG_SEQUENCE");
  g_sequence_on = sequence != nullptr && sequence[0] == '1';
  for (char* c = g_process_name; *c; ++c)
    if (*c == ' ' || *c == '\n' || *c == '\t') *c = '_';
}

// Runs when this library is finalised: after the program's atexit handlers (cudart's
// __cudaUnregisterFatBinary included), but before libraries that were initialised earlier than
// us (the shared libcudart among them) — calls from their ELF destructors are not counted.
[[gnu::destructor]] void calllog_fini() {
  {
    spin_guard guard;
    if (g_finished) return;
    g_finished = true;
    snapshot(g_final);
  }
  // A process that never looked up a driver symbol nor marked a phase (a shell or `timeout`
  // that inherited LD_PRELOAD) writes nothing, so it cannot clutter a probe's map.
  if (g_record_count == 0 && g_phase_count == 1) return;
  int fd = 2;
  if (g_out_path[0]) {
    // Appended, not truncated: a probe's child processes write their own blocks to the same file
    // (each names its process). Callers remove the file before a run.
    fd = ::open(g_out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      say("poolshim_calllog: cannot open $POOLSHIM_CALLLOG_OUT; writing the map to stderr\n");
      fd = 2;
    }
  }
  g_out.fd = fd;
  g_out.len = 0;
  write_map(g_out);
  g_out.flush();
  if (fd != 2) ::close(fd);
}

}  // namespace

extern "C" {

// Starts phase `name`: counters are snapshotted so later calls are attributed to it.
[[gnu::visibility("default")]] void poolshim_calllog_phase(const char* name) {
  spin_guard guard;
  if (g_finished) return;
  if (g_phase_count >= kPhases) {
    ++g_dropped_phases;
    return;
  }
  phase_record& p = g_phases[g_phase_count];
  copy_name(p.name, kPhaseNameMax, name && *name ? name : "unnamed");
  for (char* c = p.name; *c; ++c)
    if (*c == ' ' || *c == '\n' || *c == '\t') *c = '_';
  snapshot(p.start);
  ++g_phase_count;
}

// The interposed dlsym. Nothing before the name check allocates, locks or initialises.
// Caveat: the real dlsym is reached by a call from here, so it sees this library as its caller and
// resolves RTLD_NEXT relative to us, not to the original caller (the compiler usually emits the
// forward below as a tail jump, which hides that, but nothing guarantees it). Good enough for
// recording cudart; the product's dlsym hook (DESIGN.md) forwards with an explicit tail jump.
// Lookups made with dlvsym are not seen (cudart 13 uses plain dlsym).
[[gnu::visibility("default")]] void* dlsym(void* __restrict handle, const char* __restrict name) noexcept {
  if (is_driver_name(name)) [[unlikely]]
    return driver_dlsym(handle, name);
  return real_dlsym()(handle, name);
}

}  // extern "C"

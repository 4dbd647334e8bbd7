// Python frames for the call-site statistics (python_frames.h).
//
// The calling thread's own Python frame chain is read in place: its PyThreadState comes from
// PyGILState_GetThisThreadState (a thread-specific key; correct while the thread has released the
// GIL, as ctypes does around a foreign call, where the interpreter's "current" thread state is
// another thread's), its frames from the thread state. Nothing here takes the GIL, a lock or
// memory: the frames of a thread that is blocked in this code cannot change or be freed, and each
// one keeps its code object (and so the code's names and line table) alive. The interpreter's
// struct layouts are private and change with every minor version: each supported one is listed
// below, checked at start-up against what the running interpreter tells about itself (type object
// sizes, 3.13's debug offsets, the calling thread's own frames); anything else is refused.
#include "stats/python_frames.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstring>

#include "base/log.h"
#include "base/real_driver.h"
#include "poolshim/stats_file.h"
#include "poolshim/stats_python.h"
#include "stats/unwinder.h"

namespace poolshim::stats {
namespace {

// Offsets (bytes) of the fields read, for one CPython minor version on an LP64 target (a debug
// build has the same ones; a trace-refs or free-threaded build fails the object checks in
// python_start).
// From that version's Include/cpython/pystate.h, Include/internal/pycore_frame.h,
// Include/cpython/code.h and Include/cpython/unicodeobject.h.
struct layout {
  unsigned minor;
  // PyThreadState
  int ts_interp;
  int ts_cframe;         // the _PyCFrame* (3.11, 3.12); -1: the frame pointer is in the thread state
  int cframe_current;    // _PyCFrame.current_frame
  int ts_current_frame;  // PyThreadState.current_frame (3.13); -1 otherwise
  // _PyInterpreterFrame
  int f_code, f_previous, f_instr, f_owner;
  int f_is_entry;  // 3.11: the frame an eval loop was entered with; -1 (3.12+): such a run of
                   // frames ends at a frame owned by the C stack (the loop's entry frame)
  // PyCodeObject (co_code_adaptive is also PyCode_Type.tp_basicsize, checked at start-up)
  int co_firstlineno, co_filename, co_qualname, co_linetable, co_firsttraceable, co_code_adaptive;
  // PyASCIIObject and PyCompactUnicodeObject sizes (the text follows them); sizeof(PyUnicodeObject)
  int ascii_size, compact_size, unicode_basicsize;
  bool unicode_ready_bit;  // 3.11 still has the "ready" state bit
  int ts_thread_id;        // PyThreadState.thread_id (pthread_self() of its thread)
};

// The layouts below hold for a 64-bit little-endian target only (x86-64, aarch64).
constexpr bool k_layouts_apply = sizeof(void*) == 8 && std::endian::native == std::endian::little;

// The code table's layout is a file format (readers parse it): keep it where it is.
static_assert(offsetof(poolshim_stats_python_header, codes_offset) == 96 &&
              sizeof(poolshim_stats_python_header) == 144 && sizeof(poolshim_stats_python_code) == 80);

constexpr layout k_layouts[] = {
    {11, 16, 56, 8, -1, 32, 48, 56, 69, 68, 72, 112, 128, 136, 168, 184, 48, 72, 80, true, 152},
    {12, 16, 56, 0, -1, 0, 8, 56, 70, -1, 68, 112, 128, 136, 176, 192, 40, 56, 64, false, 136},
    {13, 16, -1, -1, 72, 0, 8, 56, 70, -1, 68, 112, 128, 136, 184, 200, 40, 56, 64, false, 152},
};

// Common to the versions above: PyObject, PyVarObject, PyTypeObject and PyBytesObject.
constexpr int k_ob_type = 8, k_ob_size = 16, k_tp_basicsize = 32, k_tp_itemsize = 40, k_bytes_data = 32;
constexpr int k_unicode_length = 16, k_unicode_state = 32;
constexpr char k_owned_by_generator = 1, k_owned_by_cstack = 3;

constexpr int k_max_chain = 4096;           // frames walked per event at most (a sane program has fewer)
constexpr int k_max_in = 128;               // native frames looked at
constexpr int k_max_probes = 64;            // code table probes per lookup
constexpr std::int64_t k_max_chars = 1024;  // characters kept of a name
constexpr std::int64_t k_max_linetable = 64 * 1024;

struct state {
  const layout* lay = nullptr;
  std::uintptr_t eval_lo = 0, eval_hi = 0;      // _PyEval_EvalFrameDefault's code
  std::uintptr_t interp_lo = 0, interp_hi = 0;  // the module that holds it (libpython or the program)
  void* (*this_thread_state)() = nullptr;
  int (*is_finalizing)() = nullptr;  // _Py_IsFinalizing (3.11, 3.12), Py_IsFinalizing (3.13)
  std::uintptr_t code_type = 0, unicode_type = 0, bytes_type = 0;
  unsigned char* region = nullptr;
  poolshim_stats_python_header* header = nullptr;
  poolshim_stats_python_code* codes = nullptr;
  std::uint32_t mask = 0;
};

state g;
std::atomic<bool> g_on{false};

template <class T>
T load(std::uintptr_t p) noexcept {
  T v;
  std::memcpy(&v, reinterpret_cast<const void*>(p), sizeof v);
  return v;
}

// A pointer the interpreter could have made: not null, not in the first page, aligned, user space.
bool plausible(std::uintptr_t p) noexcept { return p >= 4096 && (p & 7) == 0 && p < (std::uintptr_t{1} << 47); }

std::uintptr_t type_of(std::uintptr_t obj) noexcept { return load<std::uintptr_t>(obj + k_ob_type); }

bool is_code(std::uintptr_t obj) noexcept { return plausible(obj) && type_of(obj) == g.code_type; }

// --- the code table (include/poolshim/stats_python.h) ---

// Heap bytes for the table, or 0 when it is full (then nothing is written for that field).
std::uint64_t heap_alloc(std::uint64_t n) noexcept {
  const std::uint64_t at = std::atomic_ref(g.header->heap_used).fetch_add(n, std::memory_order_relaxed);
  if (at > g.header->heap_size || n > g.header->heap_size - at) return 0;
  return g.header->heap_offset + at;
}

// UTF-8 bytes of one code point (a surrogate escape U+DC80..U+DCFF stands for the byte it
// replaced, as os.fsencode gives it back; another lone surrogate becomes '?').
int utf8(std::uint32_t c, unsigned char* out) noexcept {
  if (c < 0x80) {
    out[0] = static_cast<unsigned char>(c);
    return 1;
  }
  if (c >= 0xdc80 && c <= 0xdcff) {
    out[0] = static_cast<unsigned char>(c - 0xdc00);
    return 1;
  }
  if (c >= 0xd800 && c <= 0xdfff) {
    out[0] = '?';
    return 1;
  }
  if (c < 0x800) {
    out[0] = static_cast<unsigned char>(0xc0 | (c >> 6));
    out[1] = static_cast<unsigned char>(0x80 | (c & 0x3f));
    return 2;
  }
  if (c < 0x10000) {
    out[0] = static_cast<unsigned char>(0xe0 | (c >> 12));
    out[1] = static_cast<unsigned char>(0x80 | ((c >> 6) & 0x3f));
    out[2] = static_cast<unsigned char>(0x80 | (c & 0x3f));
    return 3;
  }
  out[0] = static_cast<unsigned char>(0xf0 | ((c >> 18) & 0x07));
  out[1] = static_cast<unsigned char>(0x80 | ((c >> 12) & 0x3f));
  out[2] = static_cast<unsigned char>(0x80 | ((c >> 6) & 0x3f));
  out[3] = static_cast<unsigned char>(0x80 | (c & 0x3f));
  return 4;
}

// Copies a str's text (compact ASCII or compact 1-, 2- or 4-byte kind) as UTF-8 into the heap;
// anything else ("?") sets POOLSHIM_STATS_PYCODE_FLAG_NAME_CUT; a full heap, _HEAP_FULL.
void copy_text(std::uintptr_t obj, std::uint64_t* at, std::uint32_t* size, std::uint32_t* flags) noexcept {
  const layout& L = *g.lay;
  *at = 0;
  *size = 0;
  std::uint32_t kind = 0;
  std::int64_t length = -1;
  std::uintptr_t data = 0;
  if (plausible(obj) && type_of(obj) == g.unicode_type) {
    const auto st = load<std::uint32_t>(obj + k_unicode_state);
    const bool compact = (st >> 5) & 1, ascii = (st >> 6) & 1, ready = !L.unicode_ready_bit || ((st >> 7) & 1);
    kind = (st >> 2) & 7;
    if (compact && ready && (kind == 1 || (!ascii && (kind == 2 || kind == 4)))) {
      length = load<std::int64_t>(obj + k_unicode_length);
      data = obj + static_cast<std::uintptr_t>(ascii ? L.ascii_size : L.compact_size);
    }
  }
  if (length < 0) {
    *flags |= POOLSHIM_STATS_PYCODE_FLAG_NAME_CUT;
    if (const std::uint64_t a = heap_alloc(1); a != 0) {
      g.region[a] = '?';
      *at = a;
      *size = 1;
    } else {
      *flags |= POOLSHIM_STATS_PYCODE_FLAG_HEAP_FULL;
    }
    return;
  }
  if (length > k_max_chars) {
    length = k_max_chars;
    *flags |= POOLSHIM_STATS_PYCODE_FLAG_NAME_CUT;
  }
  auto char_at = [&](std::int64_t i) -> std::uint32_t {
    if (kind == 1) return load<std::uint8_t>(data + static_cast<std::uintptr_t>(i));
    if (kind == 2) return load<std::uint16_t>(data + 2 * static_cast<std::uintptr_t>(i));
    return load<std::uint32_t>(data + 4 * static_cast<std::uintptr_t>(i));
  };
  unsigned char tmp[4];
  std::uint64_t bytes = 0;
  for (std::int64_t i = 0; i < length; ++i) bytes += static_cast<std::uint64_t>(utf8(char_at(i), tmp));
  if (bytes == 0) return;
  const std::uint64_t a = heap_alloc(bytes);
  if (a == 0) {
    *flags |= POOLSHIM_STATS_PYCODE_FLAG_HEAP_FULL;
    return;
  }
  unsigned char* out = g.region + a;
  for (std::int64_t i = 0; i < length; ++i) out += utf8(char_at(i), out);
  *at = a;
  *size = static_cast<std::uint32_t>(bytes);
}

void copy_bytes(std::uintptr_t obj, std::uint64_t* at, std::uint32_t* size, std::uint32_t* flags) noexcept {
  *at = 0;
  *size = 0;
  if (!plausible(obj) || type_of(obj) != g.bytes_type) return;
  std::int64_t n = load<std::int64_t>(obj + k_ob_size);
  if (n <= 0) return;
  if (n > k_max_linetable) {
    n = k_max_linetable;
    *flags |= POOLSHIM_STATS_PYCODE_FLAG_LINETABLE_CUT;
  }
  const std::uint64_t a = heap_alloc(static_cast<std::uint64_t>(n));
  if (a == 0) {
    *flags |= POOLSHIM_STATS_PYCODE_FLAG_HEAP_FULL;
    return;
  }
  std::memcpy(g.region + a, reinterpret_cast<const void*>(obj + k_bytes_data), static_cast<std::size_t>(n));
  *at = a;
  *size = static_cast<std::uint32_t>(n);
}

std::uint64_t code_hash(std::uintptr_t code) noexcept {
  std::uint64_t x = static_cast<std::uint64_t>(code) * 0x9e3779b97f4a7c15ull;
  return x ^ (x >> 31);
}

// The code table index + 1 of `code` (a checked code object), interning it when new; 0 when the
// table is full. Lock-free: an entry is claimed by a CAS on its key and published with `ready`.
std::uint32_t intern_code(std::uintptr_t code) noexcept {
  const layout& L = *g.lay;
  const auto filename = load<std::uintptr_t>(code + static_cast<std::uintptr_t>(L.co_filename));
  const auto qualname = load<std::uintptr_t>(code + static_cast<std::uintptr_t>(L.co_qualname));
  const auto linetable = load<std::uintptr_t>(code + static_cast<std::uintptr_t>(L.co_linetable));
  std::uint32_t i = static_cast<std::uint32_t>(code_hash(code)) & g.mask;
  for (int probe = 0; probe < k_max_probes; ++probe, i = (i + 1) & g.mask) {
    poolshim_stats_python_code& e = g.codes[i];
    std::atomic_ref<std::uint64_t> key(e.code);
    std::uint64_t k = key.load(std::memory_order_acquire);
    if (k == 0 && key.compare_exchange_strong(k, code, std::memory_order_acq_rel)) {
      std::uint32_t flags = 0;
      e.first_line = load<std::int32_t>(code + static_cast<std::uintptr_t>(L.co_firstlineno));
      e.filename_obj = filename;
      e.qualname_obj = qualname;
      e.linetable_obj = linetable;
      copy_text(filename, &e.filename_at, &e.filename_size, &flags);
      copy_text(qualname, &e.qualname_at, &e.qualname_size, &flags);
      copy_bytes(linetable, &e.linetable_at, &e.linetable_size, &flags);
      e.flags = flags;
      std::atomic_ref(e.ready).store(1, std::memory_order_release);
      std::atomic_ref(g.header->codes_used).fetch_add(1, std::memory_order_relaxed);
      return i + 1;
    }
    if (k != code) continue;
    // Still being filled in by another thread: almost surely this very code object (one freed
    // at the same address in that instant is not worth a wait).
    if (std::atomic_ref(e.ready).load(std::memory_order_acquire) == 0) return i + 1;
    if (e.filename_obj == filename && e.qualname_obj == qualname && e.linetable_obj == linetable) return i + 1;
    // Another code object had this address before (it was freed): look on.
  }
  std::atomic_ref(g.header->flags).fetch_or(POOLSHIM_STATS_PYTHON_FLAG_CODES_FULL, std::memory_order_relaxed);
  return 0;
}

// --- the frame chain ---

std::uintptr_t current_frame(std::uintptr_t tstate) noexcept {
  const layout& L = *g.lay;
  if (L.ts_current_frame >= 0) return load<std::uintptr_t>(tstate + static_cast<std::uintptr_t>(L.ts_current_frame));
  const auto cframe = load<std::uintptr_t>(tstate + static_cast<std::uintptr_t>(L.ts_cframe));
  if (!plausible(cframe)) return 0;
  return load<std::uintptr_t>(cframe + static_cast<std::uintptr_t>(L.cframe_current));
}

// The frame value of one interpreter frame, or 0 when it shows nothing (not started yet).
// *bad is set when the frame is not what the layout says one is.
std::uint64_t frame_value(std::uintptr_t f, char owner, bool* bad) noexcept {
  const layout& L = *g.lay;
  const auto code = load<std::uintptr_t>(f + static_cast<std::uintptr_t>(L.f_code));
  if (!is_code(code)) {
    *bad = true;
    return 0;
  }
  const auto instr = load<std::uintptr_t>(f + static_cast<std::uintptr_t>(L.f_instr));
  const std::uintptr_t start = code + static_cast<std::uintptr_t>(L.co_code_adaptive);
  // Incomplete: pushed, but its first traceable instruction has not run (CPython hides it too).
  const auto first = load<std::int32_t>(code + static_cast<std::uintptr_t>(L.co_firsttraceable));
  if (owner != k_owned_by_generator && instr < start + 2 * static_cast<std::uintptr_t>(std::max(first, 0))) return 0;
  const auto units = load<std::int64_t>(code + k_ob_size);
  std::uint64_t at = POOLSHIM_STATS_PYFRAME_INSTR_UNKNOWN;
  if (instr >= start && (instr - start) / 2 < static_cast<std::uint64_t>(std::max<std::int64_t>(units, 0)))
    at = std::min<std::uint64_t>((instr - start) / 2, POOLSHIM_STATS_PYFRAME_INSTR_UNKNOWN);
  const std::uint64_t index = intern_code(code);
  return (POOLSHIM_STATS_PYFRAME_TAG << 48) | (index << 24) | at;
}

bool in_eval(const void* pc) noexcept {
  // A return address: the call is the instruction before it.
  const auto a = reinterpret_cast<std::uintptr_t>(pc) - 1;
  return a >= g.eval_lo && a < g.eval_hi;
}

bool in_interpreter(const void* pc) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(pc) - 1;
  return a >= g.interp_lo && a < g.interp_hi;
}

// --- start-up checks ---

void* sym(const char* name) noexcept { return real_dlsym()(RTLD_DEFAULT, name); }

template <class T>
bool field_is(std::uintptr_t base, int offset, T want) noexcept {
  return load<T>(base + static_cast<std::uintptr_t>(offset)) == want;
}

// 3.13 describes its own layout (_PyRuntime starts with _Py_DebugOffsets): where it says
// something about a field read here, it must say what k_layouts says. Offsets within 3.13's
// _Py_DebugOffsets, from its Include/internal/pycore_runtime.h.
bool debug_offsets_agree(const layout& L, std::uint32_t hexversion) noexcept {
  const auto rt = reinterpret_cast<std::uintptr_t>(sym("_PyRuntime"));
  if (rt == 0 || std::memcmp(reinterpret_cast<const void*>(rt), "xdebugpy", 8) != 0) return false;
  if (load<std::uint64_t>(rt + 8) != hexversion) return false;
  struct {
    int at;
    int value;
  } const want[] = {{184, L.ts_current_frame}, {232, L.f_previous},    {240, L.f_code},
                    {248, L.f_instr},          {264, L.f_owner},       {280, L.co_filename},
                    {296, L.co_qualname},      {304, L.co_linetable},  {312, L.co_firstlineno},
                    {344, L.co_code_adaptive}, {544, k_unicode_state}, {552, k_unicode_length},
                    {560, L.ascii_size}};
  for (const auto& w : want)
    if (load<std::uint64_t>(rt + static_cast<std::uintptr_t>(w.at)) != static_cast<std::uint64_t>(w.value))
      return false;
  return true;
}

// The calling thread's own frames, when it has any, must be what the layout says they are.
bool own_frames_agree(const layout& L) noexcept {
  const auto tstate = reinterpret_cast<std::uintptr_t>(g.this_thread_state());
  if (tstate == 0) return true;  // not a Python thread: nothing to compare
  if (!plausible(tstate) || !plausible(load<std::uintptr_t>(tstate + static_cast<std::uintptr_t>(L.ts_interp))))
    return false;
  std::uintptr_t f = current_frame(tstate);
  for (int i = 0; f != 0 && i < 256; ++i) {
    if (!plausible(f)) return false;
    const char owner = load<char>(f + static_cast<std::uintptr_t>(L.f_owner));
    if (owner < 0 || owner > (L.f_is_entry >= 0 ? 2 : k_owned_by_cstack)) return false;
    if (owner != k_owned_by_cstack && !is_code(load<std::uintptr_t>(f + static_cast<std::uintptr_t>(L.f_code))))
      return false;
    f = load<std::uintptr_t>(f + static_cast<std::uintptr_t>(L.f_previous));
  }
  return true;
}

// Why this interpreter cannot be read, or null when it can (g filled in).
const char* check_interpreter(std::uint32_t* hexversion) noexcept {
  const auto* version = static_cast<const unsigned long*>(sym("Py_Version"));
  if (version == nullptr) return "older than 3.11";  // Py_Version exists since 3.11
  *hexversion = static_cast<std::uint32_t>(*version);
  const unsigned major = *hexversion >> 24, minor = (*hexversion >> 16) & 0xff;
  const layout* L = nullptr;
  for (const layout& l : k_layouts)
    if (major == 3 && l.minor == minor && k_layouts_apply) L = &l;
  if (L == nullptr) return "not a version whose frames poolshim knows";
  // Alphas and betas may still change the layouts: release candidates and finals only.
  if ((*hexversion & 0xf0) < 0xc0) return "a pre-release (alpha or beta)";
  g.is_finalizing = reinterpret_cast<int (*)()>(sym(minor >= 13 ? "Py_IsFinalizing" : "_Py_IsFinalizing"));
  if (g.is_finalizing == nullptr) return "an interpreter symbol is missing";
  const auto type_type = reinterpret_cast<std::uintptr_t>(sym("PyType_Type"));
  g.code_type = reinterpret_cast<std::uintptr_t>(sym("PyCode_Type"));
  g.unicode_type = reinterpret_cast<std::uintptr_t>(sym("PyUnicode_Type"));
  g.bytes_type = reinterpret_cast<std::uintptr_t>(sym("PyBytes_Type"));
  g.this_thread_state = reinterpret_cast<void* (*)()>(sym("PyGILState_GetThisThreadState"));
  void* eval = sym("_PyEval_EvalFrameDefault");
  if (type_type == 0 || g.code_type == 0 || g.unicode_type == 0 || g.bytes_type == 0 ||
      g.this_thread_state == nullptr || eval == nullptr)
    return "an interpreter symbol is missing";
  // The object header and the sizes of the objects read (what a debug, trace-refs or
  // free-threaded build changes).
  if (type_of(g.code_type) != type_type || type_of(g.unicode_type) != type_type ||
      !field_is<std::int64_t>(g.code_type, k_tp_basicsize, L->co_code_adaptive) ||
      !field_is<std::int64_t>(g.code_type, k_tp_itemsize, 2) ||
      !field_is<std::int64_t>(g.unicode_type, k_tp_basicsize, L->unicode_basicsize) ||
      !field_is<std::int64_t>(g.bytes_type, k_tp_basicsize, k_bytes_data + 1))
    return "its objects are not laid out as in a release build of that version";
  if (minor >= 13 && !debug_offsets_agree(*L, *hexversion)) return "its debug offsets disagree with poolshim's";
  Dl_info info{};
  void* entry = nullptr;
  const bool found = dladdr1(eval, &info, &entry, RTLD_DL_SYMENT) != 0;
  const auto* s = static_cast<const ElfW(Sym)*>(entry);
  if (!found || s == nullptr || s->st_size == 0 || info.dli_saddr != eval) return "the eval loop's size is unknown";
  g.eval_lo = reinterpret_cast<std::uintptr_t>(eval);
  g.eval_hi = g.eval_lo + s->st_size;
  module_range(g.eval_lo, &g.interp_lo, &g.interp_hi);
  if (g.interp_lo > g.eval_lo || g.interp_hi < g.eval_hi) g.interp_lo = g.eval_lo, g.interp_hi = g.eval_hi;
  g.lay = L;
  if (!own_frames_agree(*L)) return "its frames are not laid out as poolshim expects";
  // Keep the interpreter's library loaded for good: the pointers above must stay valid.
  if (info.dli_fname != nullptr && info.dli_fname[0] == '/')
    (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
  return nullptr;
}

void version_text(char* out, std::size_t cap) noexcept {
  out[0] = '\0';
  auto get = reinterpret_cast<const char* (*)()>(sym("Py_GetVersion"));
  const char* v = get != nullptr ? get() : nullptr;
  if (v == nullptr) return;
  std::size_t n = 0;
  while (n + 1 < cap && v[n] != '\0' && v[n] != ' ') ++n;
  std::memcpy(out, v, n);
  out[n] = '\0';
}

}  // namespace

bool python_start(unsigned char* region, std::size_t size) noexcept {
  // Again in a fork child, with the child's own table (the parent's is not mapped there).
  g_on.store(false, std::memory_order_release);
  if (region == nullptr || size < 64 * 1024) {
    POOLSHIM_LOG_WARN("POOLSHIM_STATS=python: no room for the Python code table: native frames only");
    return false;
  }
  if (sym("PyGILState_GetThisThreadState") == nullptr) {
    POOLSHIM_LOG_WARN("POOLSHIM_STATS=python: this process runs no CPython interpreter: native frames only");
    return false;
  }
  char version[64];
  version_text(version, sizeof version);
  std::uint32_t hexversion = 0;
  if (const char* why = check_interpreter(&hexversion)) {
    g.lay = nullptr;
    POOLSHIM_LOG_WARN("POOLSHIM_STATS=python: CPython {} is not supported ({}; 3.11 to 3.13 are): native frames only",
                      version[0] != '\0' ? version : "?", why);
    return false;
  }
  auto* h = reinterpret_cast<poolshim_stats_python_header*>(region);
  const std::size_t codes_at = (sizeof *h + 63) & ~std::size_t{63};
  std::uint32_t capacity = 16;
  while (std::size_t{capacity} * 2 * sizeof(poolshim_stats_python_code) <= size / 4) capacity *= 2;
  const std::size_t heap_at = codes_at + std::size_t{capacity} * sizeof(poolshim_stats_python_code);
  std::memcpy(h->magic, POOLSHIM_STATS_PYTHON_MAGIC, sizeof POOLSHIM_STATS_PYTHON_MAGIC);
  h->version = POOLSHIM_STATS_PYTHON_VERSION;
  h->header_size = sizeof *h;
  h->size = size;
  h->python_hexversion = hexversion;
  h->linetable_format = POOLSHIM_STATS_PYTHON_LINETABLE_LOCATIONS;
  std::memcpy(h->python_version, version, sizeof h->python_version);
  h->codes_offset = codes_at;
  h->code_capacity = capacity;
  h->code_size = sizeof(poolshim_stats_python_code);
  h->heap_offset = heap_at;
  h->heap_size = size - heap_at;
  g.region = region;
  g.header = h;
  g.codes = reinterpret_cast<poolshim_stats_python_code*>(region + codes_at);
  g.mask = capacity - 1;
  g_on.store(true, std::memory_order_release);
  POOLSHIM_LOG_INFO("POOLSHIM_STATS=python: CPython {} frames recorded", version);
  return true;
}

int python_expand(void** frames, int n, int cap, bool* python) noexcept {
  *python = false;
  if (!g_on.load(std::memory_order_acquire) || n <= 0) return n;
  n = std::min(n, k_max_in);
  int first = 0;
  while (first < n && !in_eval(frames[first])) ++first;
  if (first == n) return n;  // no eval loop on this stack: nothing to replace
  // While the interpreter finalizes, daemon threads' thread states are freed long before the
  // thread-specific key that finds them is cleared: a freed one must never be read (it crashed
  // the program once its memory was reused). A thread state that names another thread is not
  // this thread's either.
  if (g.is_finalizing() != 0) return n;
  const auto tstate = reinterpret_cast<std::uintptr_t>(g.this_thread_state());
  if (!plausible(tstate) ||
      load<unsigned long>(tstate + static_cast<std::uintptr_t>(g.lay->ts_thread_id)) != pthread_self())
    return n;
  while (first > 0 && in_interpreter(frames[first - 1])) --first;
  const layout& L = *g.lay;
  void* in[k_max_in];
  std::memcpy(in, frames, sizeof(void*) * static_cast<std::size_t>(n));
  std::uintptr_t f = current_frame(tstate);
  int out = first, walked = 0;
  // The interpreter's own frames just inside an eval loop whose Python frames are shown (the call
  // machinery between two loops, or between a loop and the extension it called) are left out:
  // which of them run depends on the interpreter's specialisation of the call, not on the program,
  // and would split one Python call site in two. held: the first of such a run not yet written.
  int held = -1;
  auto flush = [&](int to) {
    for (int k = held; k >= 0 && k < to && out < cap; ++k) frames[out++] = in[k];
    held = -1;
  };
  for (int i = first; i < n && out < cap; ++i) {
    if (!in_eval(in[i]) || f == 0) {
      if (in_interpreter(in[i]) && f != 0) {
        if (held < 0) held = i;
        continue;
      }
      flush(i);
      if (out < cap) frames[out++] = in[i];
      continue;
    }
    // The run of Python frames this eval loop executes, innermost first.
    const int held_run = held;
    held = -1;
    const int before = out;
    bool bad = false;
    while (f != 0) {
      if (!plausible(f) || ++walked > k_max_chain) {
        bad = true;
        break;
      }
      const char owner = load<char>(f + static_cast<std::uintptr_t>(L.f_owner));
      if (owner < 0 || owner > k_owned_by_cstack) {
        bad = true;
        break;
      }
      const auto previous = load<std::uintptr_t>(f + static_cast<std::uintptr_t>(L.f_previous));
      if (L.f_is_entry < 0 && owner == k_owned_by_cstack) {  // 3.12+: the loop's entry frame
        f = previous;
        break;
      }
      const std::uint64_t v = frame_value(f, owner, &bad);
      if (bad) break;
      if (v != 0 && out < cap) frames[out++] = reinterpret_cast<void*>(v);
      const bool entry = L.f_is_entry >= 0 && load<unsigned char>(f + static_cast<std::uintptr_t>(L.f_is_entry)) != 0;
      f = previous;
      if (entry) break;  // 3.11: the frame this eval loop was entered with
    }
    if (bad) f = 0;  // the chain is not what it should be: outer eval loops stay native
    if (out > before) {
      *python = true;
      continue;
    }
    // Nothing to show for this loop (its frame not started yet): its native frames stay.
    held = held_run;
    flush(i);
    if (out < cap) frames[out++] = in[i];
  }
  flush(n);
  return out;
}

}  // namespace poolshim::stats

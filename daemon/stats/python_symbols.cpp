// Python frames from the stats file's code table (python_symbols.h). The table comes from a
// process that may have died mid-write, or from a damaged file: every offset, size and index is
// checked against the table's bounds before use, and a line table that does not parse gives line 0.
#include "stats/python_symbols.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "poolshim/stats_python.h"
#include "stats/stats_file.h"

namespace poolshim::stats_tool {
namespace {

constexpr std::uint32_t k_max_text_bytes = 4096;

// Bytes [at, at + size) of the table, or null when they are not all inside it.
const unsigned char* span(const unsigned char* region, std::size_t region_size, std::uint64_t at, std::uint64_t size) {
  if (at > region_size || size > region_size - at) return nullptr;
  return region + at;
}

// Valid UTF-8 for the report: each byte of a broken sequence (a damaged table, or a file name's
// undecodable byte that the shim kept as it was) becomes '?'.
std::string valid_utf8(const unsigned char* p, std::size_t n) {
  std::string out;
  out.reserve(n);
  for (std::size_t i = 0; i < n;) {
    const unsigned char b = p[i];
    std::size_t len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    bool ok = len != 0 && i + len <= n && b != 0;
    std::uint32_t c = len == 1 ? b : len == 2 ? (b & 0x1f) : len == 3 ? (b & 0x0f) : (b & 0x07);
    for (std::size_t k = 1; ok && k < len; ++k) {
      ok = (p[i + k] & 0xc0) == 0x80;
      c = (c << 6) | (p[i + k] & 0x3f);
    }
    // Shortest form only, no surrogates, nothing past U+10FFFF.
    ok = ok && !(len == 2 && c < 0x80) && !(len == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) &&
         !(len == 4 && (c < 0x10000 || c > 0x10ffff));
    if (ok) {
      out.append(reinterpret_cast<const char*>(p + i), len);
      i += len;
    } else {
      out += '?';
      ++i;
    }
  }
  return out;
}

// An unsigned varint of the location table: 6-bit chunks, least significant first, bit 6 set on
// every chunk but the last (CPython's Objects/locations.md).
bool read_varint(const unsigned char* p, std::size_t n, std::size_t* i, std::uint64_t* out) {
  std::uint64_t v = 0;
  for (unsigned shift = 0; *i < n && shift < 64; shift += 6) {
    const unsigned char b = p[(*i)++];
    v |= static_cast<std::uint64_t>(b & 63) << shift;
    if ((b & 64) == 0) {
      *out = v;
      return true;
    }
  }
  return false;
}

// The line of code unit `instr` (CPython's PyCode_Addr2Line over a 3.11+ location table); 0 when
// it has none or the table does not say.
int line_of(const unsigned char* p, std::size_t n, std::int64_t first_line, std::uint32_t instr) {
  std::int64_t line = first_line;
  std::uint64_t addr = 0;
  std::size_t i = 0;
  while (i < n) {
    const unsigned char b = p[i++];
    if ((b & 0x80) == 0) return 0;  // not at an entry's first byte: a damaged table
    const int code = (b >> 3) & 15;
    const std::uint64_t length = (b & 7) + 1u;
    std::int64_t delta = 0;
    if (code == 13 || code == 14) {  // no columns, long form: a signed varint line delta first
      std::uint64_t v = 0;
      if (!read_varint(p, n, &i, &v)) return 0;
      delta = (v & 1) != 0 ? -static_cast<std::int64_t>(v >> 1) : static_cast<std::int64_t>(v >> 1);
    } else if (code >= 10 && code <= 12) {  // one-line forms: the delta is in the code
      delta = code - 10;
    }
    line += delta;
    if (instr < addr + length) return code == 15 || line < 0 || line > INT32_MAX ? 0 : static_cast<int>(line);
    addr += length;
    while (i < n && (p[i] & 0x80) == 0) ++i;  // the rest of this entry's operands
  }
  return 0;
}

}  // namespace

bool python_symbols::resolve(frame* f) const {
  if ((f->pc >> 48) != POOLSHIM_STATS_PYFRAME_TAG || region_ == nullptr) return false;
  poolshim_stats_python_header h;
  if (size_ < sizeof h) return false;
  std::memcpy(&h, region_, sizeof h);
  if (std::memcmp(h.magic, POOLSHIM_STATS_PYTHON_MAGIC, sizeof POOLSHIM_STATS_PYTHON_MAGIC) != 0 ||
      h.version != POOLSHIM_STATS_PYTHON_VERSION || h.header_size < sizeof h ||
      h.code_size < sizeof(poolshim_stats_python_code) || h.code_capacity == 0)
    return false;
  const std::uint32_t index = POOLSHIM_STATS_PYFRAME_CODE(f->pc);
  const std::uint32_t instr = POOLSHIM_STATS_PYFRAME_INSTR(f->pc);
  if (index == 0 || index > h.code_capacity || h.codes_offset > size_) return false;
  // At most 2^24 entries of at most 2^32 bytes: the product fits, and the sum is checked without
  // adding (a codes_offset near 2^64 must not wrap into the table).
  const std::uint64_t entry_at = std::uint64_t{index - 1} * h.code_size;
  if (entry_at > size_ - h.codes_offset) return false;
  const unsigned char* at = span(region_, size_, h.codes_offset + entry_at, sizeof(poolshim_stats_python_code));
  if (at == nullptr) return false;
  poolshim_stats_python_code c;
  std::memcpy(&c, at, sizeof c);
  if (c.code == 0 || c.ready != 1) return false;
  // Names and the line table lie in the heap; anything outside it is not trusted.
  if (h.heap_offset > size_ || h.heap_size > size_ - h.heap_offset) return false;
  const std::uint64_t heap_end = h.heap_offset + h.heap_size;  // <= size_: cannot wrap
  auto text = [&](std::uint64_t off, std::uint32_t n) -> std::string {
    if (off < h.heap_offset || off > heap_end || n > heap_end - off) return {};
    // The shim keeps at most 1024 characters of a name: a longer one is cut (each frame's copy
    // would otherwise be as large as the heap, however many frames name it).
    n = std::min<std::uint32_t>(n, k_max_text_bytes);
    const unsigned char* p = span(region_, size_, off, n);
    return p == nullptr ? std::string{} : valid_utf8(p, n);
  };
  f->function = text(c.qualname_at, c.qualname_size);
  if (f->function.empty()) f->function = "?";
  f->file = text(c.filename_at, c.filename_size);
  if (f->file.empty()) f->file = "?";
  f->line = 0;
  if (instr != POOLSHIM_STATS_PYFRAME_INSTR_UNKNOWN &&
      h.linetable_format == POOLSHIM_STATS_PYTHON_LINETABLE_LOCATIONS && c.linetable_at >= h.heap_offset &&
      c.linetable_at <= heap_end && c.linetable_size <= heap_end - c.linetable_at)
    if (const unsigned char* p = span(region_, size_, c.linetable_at, c.linetable_size))
      f->line = line_of(p, c.linetable_size, c.first_line, instr);
  f->module = "[python]";
  f->offset = instr == POOLSHIM_STATS_PYFRAME_INSTR_UNKNOWN ? 0 : std::uint64_t{instr} * 2;  // as f_lasti
  return true;
}

}  // namespace poolshim::stats_tool

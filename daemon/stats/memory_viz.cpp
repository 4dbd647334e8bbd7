// The PyTorch memory_viz snapshot (memory_viz.h).
#include "stats/memory_viz.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <vector>

#include "stats/site_text.h"

namespace poolshim::stats_tool {
namespace {

// A pickle writer for the few types a snapshot needs. Protocol 4 opcodes only where the viewer's
// unpickler (MemoryViz.js) reads them too: PROTO, EMPTY_DICT, EMPTY_LIST, MARK, SETITEMS, APPENDS,
// SHORT_BINUNICODE, BINUNICODE, BININT1, BININT2, BININT, LONG1, NEWTRUE, NEWFALSE, NONE,
// LONG_BINPUT, LONG_BINGET, STOP. Lists and dicts are filled in batches of 1000 (as Python's own
// pickler does: the viewer spreads a batch into a call's arguments).
class pickler {
 public:
  pickler() { out_.append("\x80\x04", 2); }
  std::string finish() {
    out_ += '.';
    return std::move(out_);
  }

  void none() { out_ += 'N'; }
  void boolean(bool v) { out_ += static_cast<char>(v ? 0x88 : 0x89); }
  void integer(std::int64_t v) {
    if (v >= 0 && v < 256) {
      out_ += 'K';
      out_ += static_cast<char>(v);
    } else if (v >= 0 && v < 65536) {
      out_ += 'M';
      put_le(static_cast<std::uint64_t>(v), 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      out_ += 'J';
      put_le(static_cast<std::uint64_t>(static_cast<std::uint32_t>(static_cast<std::int32_t>(v))), 4);
    } else {
      long1(static_cast<std::uint64_t>(v), v < 0, false);
    }
  }
  void unsigned_integer(std::uint64_t v) {
    if (v <= static_cast<std::uint64_t>(INT64_MAX))
      integer(static_cast<std::int64_t>(v));
    else
      long1(v, false, true);
  }
  void str(const std::string& s) {
    const std::string u = valid_utf8(s);
    if (u.size() < 256) {
      out_ += static_cast<char>(0x8c);
      out_ += static_cast<char>(u.size());
    } else {
      out_ += 'X';
      put_le(u.size(), 4);
    }
    out_ += u;
  }

  // A dict: begin_dict(), then key and value pairs (item() before each key), end_dict().
  void begin_dict() { open('}', 's'); }
  void end_dict() { close(); }
  void key(const char* k) {
    item();
    str(k);
  }
  // A list: begin_list(), item() before each element, end_list().
  void begin_list() { open(']', 'a'); }
  void end_list() { close(); }
  void item() {
    frame& f = stack_.back();
    if (f.count % 1000 == 0) {  // a dict's item is a key and its value: item() runs once per pair
      if (f.count != 0) out_ += f.kind == 's' ? 'u' : 'e';
      out_ += '(';
    }
    ++f.count;
  }

  // Memo: remember the object just completed, or push a remembered one.
  std::uint32_t memo_put() {
    out_ += 'r';
    put_le(next_memo_, 4);
    return next_memo_++;
  }
  void memo_get(std::uint32_t id) {
    out_ += 'j';
    put_le(id, 4);
  }

 private:
  struct frame {
    char kind;  // 's': dict, 'a': list
    std::size_t count = 0;
  };
  void open(char empty, char kind) {
    out_ += empty;
    stack_.push_back(frame{kind, 0});
  }
  void close() {
    const frame f = stack_.back();
    stack_.pop_back();
    if (f.count != 0) out_ += f.kind == 's' ? 'u' : 'e';
  }
  void put_le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_ += static_cast<char>((v >> (8 * i)) & 0xff);
  }
  // LONG1: little-endian two's complement, as few bytes as keep the sign.
  void long1(std::uint64_t bits, bool negative, bool wide) {
    unsigned char b[9];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>((bits >> (8 * i)) & 0xff);
    int n = 8;
    if (wide) {
      b[8] = 0;  // above INT64_MAX: a ninth byte keeps it positive
      n = 9;
    } else if (negative) {
      while (n > 1 && b[n - 1] == 0xff && (b[n - 2] & 0x80) != 0) --n;
    } else {
      while (n > 1 && b[n - 1] == 0x00 && (b[n - 2] & 0x80) == 0) --n;
    }
    out_ += static_cast<char>(0x8a);
    out_ += static_cast<char>(n);
    out_.append(reinterpret_cast<const char*>(b), static_cast<std::size_t>(n));
  }
  // Python decodes strictly: a byte that is not UTF-8 becomes '?'.
  static std::string valid_utf8(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
      const auto c = static_cast<unsigned char>(s[i]);
      std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
      bool ok = n != 0 && i + n <= s.size() && !(n == 2 && c < 0xc2);
      for (std::size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
      if (ok && n == 3) {
        const auto c1 = static_cast<unsigned char>(s[i + 1]);
        ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);  // overlong, surrogates
      } else if (ok && n == 4) {
        const auto c1 = static_cast<unsigned char>(s[i + 1]);
        ok = c <= 0xf4 && !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
      }
      if (!ok) {
        out += '?';
        ++i;
        continue;
      }
      out.append(s, i, n);
      i += n;
    }
    return out;
  }

  std::string out_;
  std::vector<frame> stack_;
  std::uint32_t next_memo_ = 0;
};

constexpr int k_pinned = 1;

struct block {
  std::uint64_t addr = 0, size = 0;
  std::uint32_t stack = 0;
  int device = 0;
  std::uint64_t stream = 0;  // its allocation's, when the ring saw it
};

}  // namespace

std::string memory_viz_pickle(const stats_file& f, bool symbols, std::string* note) {
  // Frames per stack id (raw stacks: the viewer shows each event's own).
  std::map<std::uint32_t, std::vector<frame>> frames_of;
  for (site& s : f.sites(symbols)) {
    if (s.cut) {  // its outermost frames are missing: the last one says so
      frame mark;
      mark.function = cut_text(s, f.header().depth_cap);
      s.frames.push_back(std::move(mark));
    }
    frames_of[s.id] = std::move(s.frames);
  }
  const std::vector<poolshim_stats_event> ring = f.event_ring();
  const std::vector<poolshim_stats_live> live = f.live();

  // The end state: the live table, plus any allocation the ring saw and did not see freed that
  // the table lacks (a file read while the program runs), minus nothing the ring freed last.
  std::map<std::uint64_t, block> end_state;
  std::size_t pinned = 0;
  for (const poolshim_stats_live& l : live) {
    if (l.kind == k_pinned) continue;
    end_state[l.ptr] = block{l.ptr, l.bytes, l.stack, l.device, 0};
  }
  std::map<std::uint64_t, block> open_in_ring;  // ptr -> the ring's last allocation of it
  int devices = 1;
  for (const poolshim_stats_event& e : ring) {
    if (e.kind == k_pinned) {
      ++pinned;
      continue;
    }
    devices = std::max(devices, static_cast<int>(e.device) + 1);
    if (e.action == 1)
      open_in_ring[e.ptr] = block{e.ptr, e.bytes, e.stack, e.device, e.stream};
    else if (e.action == 2)
      open_in_ring.erase(e.ptr);
  }
  for (const auto& [ptr, b] : open_in_ring) {
    const auto it = end_state.find(ptr);
    if (it == end_state.end())
      end_state[ptr] = b;
    else if (it->second.size == b.size)
      it->second.stream = b.stream;  // the live table has no stream: the ring's allocation of it does
  }
  for (const auto& [ptr, b] : end_state) devices = std::max(devices, b.device + 1);
  devices = std::min(devices, POOLSHIM_STATS_DEVICES);

  pickler p;
  std::map<std::uint32_t, std::uint32_t> memo;  // stack id -> memo id of its frame list
  auto frames = [&](std::uint32_t stack) {
    const auto m = memo.find(stack);
    if (m != memo.end()) {
      p.memo_get(m->second);
      return;
    }
    p.begin_list();
    const auto it = frames_of.find(stack);
    if (it != frames_of.end())
      for (const frame& fr : it->second) {
        p.item();
        p.begin_dict();
        p.key("filename");
        p.str(!fr.file.empty() ? fr.file : !fr.module.empty() ? fr.module : "??");
        p.key("line");
        p.integer(fr.line);
        p.key("name");
        p.str(!fr.function.empty() ? fr.function : fr.text());
        p.end_dict();
      }
    p.end_list();
    memo[stack] = p.memo_put();
  };

  p.begin_dict();
  p.key("segments");
  p.begin_list();
  for (const auto& [ptr, b] : end_state) {
    const auto size = static_cast<std::int64_t>(b.size);
    p.item();
    p.begin_dict();
    p.key("device");
    p.integer(b.device);
    p.key("address");
    p.unsigned_integer(b.addr);
    p.key("total_size");
    p.integer(size);
    p.key("allocated_size");
    p.integer(size);
    p.key("active_size");
    p.integer(size);
    p.key("requested_size");
    p.integer(size);
    p.key("stream");
    p.unsigned_integer(b.stream);
    p.key("segment_type");
    p.str(b.size > (1u << 20) ? "large" : "small");
    p.key("is_expandable");
    p.boolean(false);
    p.key("frames");
    frames(b.stack);
    p.key("blocks");
    p.begin_list();
    p.item();
    p.begin_dict();
    p.key("address");
    p.unsigned_integer(b.addr);
    p.key("size");
    p.integer(size);
    p.key("requested_size");
    p.integer(size);
    p.key("state");
    p.str("active_allocated");
    p.key("frames");
    frames(b.stack);
    p.end_dict();
    p.end_list();
    p.end_dict();
  }
  p.end_list();

  p.key("device_traces");
  p.begin_list();
  std::size_t unknown_size = 0;
  for (int d = 0; d < devices; ++d) {
    p.item();
    p.begin_list();
    std::map<std::uint64_t, std::uint64_t> size_of;  // ptr -> bytes, for frees that lack them
    auto entry = [&](const char* action, const poolshim_stats_event& e, std::uint64_t bytes) {
      p.item();
      p.begin_dict();
      p.key("action");
      p.str(action);
      p.key("addr");
      p.unsigned_integer(e.ptr);
      p.key("size");
      p.unsigned_integer(bytes);
      p.key("stream");
      p.unsigned_integer(e.stream);
      p.key("time_us");
      p.unsigned_integer(e.ns / 1000);
      p.key("frames");
      frames(e.stack);
      p.end_dict();
    };
    for (const poolshim_stats_event& e : ring) {
      if (e.kind == k_pinned || e.device != d) continue;
      if (e.action == 1) {
        size_of[e.ptr] = e.bytes;
        entry("segment_alloc", e, e.bytes);
        entry("alloc", e, e.bytes);
      } else if (e.action == 2) {
        std::uint64_t bytes = e.bytes;
        if (bytes == 0 && size_of.count(e.ptr) != 0) bytes = size_of[e.ptr];
        size_of.erase(e.ptr);
        if (bytes == 0) {  // a free the viewer could not draw (its allocation is unknown)
          ++unknown_size;
          continue;
        }
        entry("free_requested", e, bytes);
        entry("free_completed", e, bytes);
        entry("segment_free", e, bytes);
      }
    }
    p.end_list();
  }
  p.end_list();
  p.end_dict();

  if (note != nullptr) {
    note->clear();
    const auto& h = f.header();
    if (h.event_next > h.event_capacity)
      *note += "the event ring kept the newest " + std::to_string(ring.size()) + " of " + std::to_string(h.event_next) +
               " events (raise POOLSHIM_STATS_EVENTS for more); ";
    if (ring.empty()) *note += "the event ring is empty: the snapshot shows the live allocations only; ";
    if (pinned != 0)
      *note += std::to_string(pinned) + " pinned-host events left out (memory_viz shows device memory); ";
    if (unknown_size != 0) *note += std::to_string(unknown_size) + " frees of allocations of unknown size left out; ";
    if (!note->empty()) note->resize(note->size() - 2);
  }
  return p.finish();
}

int write_memory_viz(const stats_file& f, bool symbols, const std::string& output) {
  if (f.header().event_capacity == 0) {
    std::fprintf(stderr,
                 "poolshim-stats: %s has no event ring, which a memory_viz snapshot is made from: run the program "
                 "again with POOLSHIM_STATS_EVENTS=N (the newest N allocations and frees are kept, e.g. 65536) "
                 "besides POOLSHIM_STATS=native\n",
                 f.path().c_str());
    return 1;
  }
  const bool to_stdout = output.empty() || output == "-";
  if (to_stdout && isatty(STDOUT_FILENO) == 1) {
    std::fprintf(stderr,
                 "poolshim-stats: a memory_viz snapshot is binary (a pickle): give --output FILE or "
                 "redirect stdout\n");
    return 1;
  }
  std::string note;
  const std::string bytes = memory_viz_pickle(f, symbols, &note);
  if (!note.empty()) std::fprintf(stderr, "poolshim-stats: memory_viz: %s\n", note.c_str());
  FILE* out = to_stdout ? stdout : std::fopen(output.c_str(), "wb");
  if (out == nullptr) {
    std::fprintf(stderr, "poolshim-stats: %s: %s\n", output.c_str(), std::strerror(errno));
    return 1;
  }
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), out) == bytes.size() && std::fflush(out) == 0;
  const int err = errno;
  if (!to_stdout && std::fclose(out) != 0 && ok) {
    std::fprintf(stderr, "poolshim-stats: %s: %s\n", output.c_str(), std::strerror(errno));
    return 1;
  }
  if (!ok) {
    std::fprintf(stderr, "poolshim-stats: writing %s: %s\n", to_stdout ? "stdout" : output.c_str(), std::strerror(err));
    return 1;
  }
  if (!to_stdout)
    std::fprintf(stderr, "poolshim-stats: wrote %s (%zu bytes): open it at https://pytorch.org/memory_viz\n",
                 output.c_str(), bytes.size());
  return 0;
}

}  // namespace poolshim::stats_tool

// The PyTorch memory_viz snapshot (memory_viz.h).
#include "stats/memory_viz.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <map>
#include <vector>

#include "stats/frame_filter.h"
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

// A segment as the snapshot shows it: the pool's (from the ring's segment events) or one made up
// for an allocation that lies in none the ring saw (the driver's own, in observe mode or for kinds
// the pool does not serve, or in a segment older than the ring's window).
struct segment_state {
  std::uint64_t size = 0;
  bool made_up = false;
  std::uint32_t stack = 0;   // the allocation that made the pool take it (its first block's)
  std::uint64_t stream = 0;  // that allocation's stream
  std::uint64_t first_bytes = 0;
  bool first_seen = false;
};

struct block {
  std::uint64_t addr = 0, size = 0;
  std::uint32_t stack = 0;
  int device = 0;
  std::uint64_t stream = 0;  // its allocation's, when the ring saw it
};

// The segment of `segs` (by base) that holds [addr, addr + size), or end().
std::map<std::uint64_t, segment_state>::iterator holder(std::map<std::uint64_t, segment_state>& segs,
                                                        std::uint64_t addr, std::uint64_t size) {
  auto it = segs.upper_bound(addr);
  if (it == segs.begin()) return segs.end();
  --it;
  return addr - it->first + size <= it->second.size ? it : segs.end();
}

// One trace entry (TraceEntry in PyTorch's snapshot: an "oom" has device_free where the others
// have addr).
struct trace_entry {
  const char* action;
  std::uint64_t addr, size, stream, ns;
  std::uint32_t stack;
};

}  // namespace

std::string memory_viz_pickle(const stats_file& f, bool symbols, const frame_filter& filter, std::string* note) {
  // Frames per stack id (raw stacks: the viewer shows each event's own), cut to the frames the
  // reports show; failed allocations' stacks count nothing, and are asked for too.
  std::map<std::uint32_t, std::vector<frame>> frames_of;
  for (site& s : f.sites(symbols, true)) {
    std::vector<frame> shown = visible_frames(s.frames, filter);
    if (s.cut) {  // its outermost frames are missing: the last one says so
      frame mark;
      mark.function = cut_text(s, f.header().depth_cap);
      shown.push_back(std::move(mark));
    }
    frames_of[s.id] = std::move(shown);
  }
  const std::vector<poolshim_stats_event> ring = f.event_ring();
  const std::vector<poolshim_stats_live> live = f.live();

  // The end state's blocks: the live table, plus any allocation the ring saw and did not see freed
  // that the table lacks (a file read while the program runs).
  std::map<std::uint64_t, block> end_blocks;
  std::size_t pinned = 0;
  for (const poolshim_stats_live& l : live) {
    if (l.kind == k_pinned) continue;
    end_blocks[l.ptr] = block{l.ptr, l.bytes, l.stack, l.device, 0};
  }
  std::map<std::uint64_t, block> open_in_ring;  // ptr -> the ring's last allocation of it
  int devices = 1;
  for (const poolshim_stats_event& e : ring) {
    if (e.kind == k_pinned) {
      ++pinned;
      continue;
    }
    devices = std::max(devices, static_cast<int>(e.device) + 1);
    if (e.action == POOLSHIM_STATS_EVENT_ALLOC)
      open_in_ring[e.ptr] = block{e.ptr, e.bytes, e.stack, e.device, e.stream};
    else if (e.action == POOLSHIM_STATS_EVENT_FREE)
      open_in_ring.erase(e.ptr);
  }
  for (const auto& [ptr, b] : open_in_ring) {
    const auto it = end_blocks.find(ptr);
    if (it == end_blocks.end())
      end_blocks[ptr] = b;
    else if (it->second.size == b.size)
      it->second.stream = b.stream;  // the live table has no stream: the ring's allocation of it does
  }
  for (const auto& [ptr, b] : end_blocks) devices = std::max(devices, b.device + 1);
  devices = std::min(devices, POOLSHIM_STATS_DEVICES);

  // The timeline per device, and the segments at its end. The pool's segments come from the ring;
  // one the ring saw given back before it saw it taken was there from the window's start.
  std::vector<std::vector<trace_entry>> traces(static_cast<std::size_t>(devices));
  std::vector<std::map<std::uint64_t, segment_state>> segs(static_cast<std::size_t>(devices));
  for (const poolshim_stats_event& e : ring) {
    if (e.kind == k_pinned || e.device >= devices) continue;
    auto& known = segs[e.device];
    if (e.action == POOLSHIM_STATS_EVENT_SEGMENT_ALLOC) {
      known.emplace(e.ptr, segment_state{});  // seen taken first (size 0): not there at the start
    } else if (e.action == POOLSHIM_STATS_EVENT_SEGMENT_FREE && known.count(e.ptr) == 0) {
      known[e.ptr] = segment_state{e.bytes, false, 0, 0, 0, false};
    }
  }
  for (auto& known : segs)  // back to the window's start: only those given back first stay
    for (auto it = known.begin(); it != known.end();) it = it->second.size == 0 ? known.erase(it) : std::next(it);

  std::size_t unknown_size = 0, ooms = 0, pool_segments = 0;
  std::map<std::uint64_t, std::uint64_t> size_of;                // ptr -> bytes, for frees that lack them
  std::map<std::pair<int, std::uint64_t>, std::size_t> pending;  // a segment_alloc entry awaiting its first block
  for (const poolshim_stats_event& e : ring) {
    if (e.kind == k_pinned || e.device >= devices) continue;
    auto& trace = traces[e.device];
    auto& known = segs[e.device];
    switch (e.action) {
      case POOLSHIM_STATS_EVENT_SEGMENT_ALLOC:
        known[e.ptr] = segment_state{e.bytes, false, 0, 0, 0, false};
        pending[{e.device, e.ptr}] = trace.size();
        trace.push_back({"segment_alloc", e.ptr, e.bytes, 0, e.ns, 0});
        ++pool_segments;
        break;
      case POOLSHIM_STATS_EVENT_SEGMENT_FREE:
        known.erase(e.ptr);
        pending.erase({e.device, e.ptr});
        trace.push_back({"segment_free", e.ptr, e.bytes, 0, e.ns, 0});
        break;
      case POOLSHIM_STATS_EVENT_ALLOC: {
        size_of[e.ptr] = e.bytes;
        auto in = holder(known, e.ptr, e.bytes);
        if (in == known.end()) {  // in no segment the ring saw: one of its own
          in = known.emplace(e.ptr, segment_state{e.bytes, true, e.stack, e.stream, e.bytes, true}).first;
          trace.push_back({"segment_alloc", e.ptr, e.bytes, e.stream, e.ns, e.stack});
        } else if (!in->second.first_seen) {  // the pool took this segment for this allocation
          in->second.first_seen = true;
          in->second.stack = e.stack;
          in->second.stream = e.stream;
          in->second.first_bytes = e.bytes;
          if (const auto p = pending.find({e.device, in->first}); p != pending.end()) {
            trace[p->second].stack = e.stack;
            trace[p->second].stream = e.stream;
            pending.erase(p);
          }
        }
        trace.push_back({"alloc", e.ptr, e.bytes, e.stream, e.ns, e.stack});
        break;
      }
      case POOLSHIM_STATS_EVENT_FREE: {
        std::uint64_t bytes = e.bytes;
        if (bytes == 0 && size_of.count(e.ptr) != 0) bytes = size_of[e.ptr];
        size_of.erase(e.ptr);
        if (bytes == 0) {  // a free the viewer could not draw (its allocation is unknown)
          ++unknown_size;
          break;
        }
        trace.push_back({"free_requested", e.ptr, bytes, e.stream, e.ns, e.stack});
        trace.push_back({"free_completed", e.ptr, bytes, e.stream, e.ns, e.stack});
        const auto in = holder(known, e.ptr, bytes);
        if (in == known.end() || (in->second.made_up && in->first == e.ptr)) {
          // Its own segment (made up at its allocation, or before the window) goes with it.
          trace.push_back({"segment_free", e.ptr, in == known.end() ? bytes : in->second.size, e.stream, e.ns, 0});
          if (in != known.end()) known.erase(in);
        }
        break;
      }
      case POOLSHIM_STATS_EVENT_OOM:
        ++ooms;
        trace.push_back({"oom", e.ptr, e.bytes, e.stream, e.ns, e.stack});
        break;
      default:
        break;
    }
  }
  // Live blocks the ring never placed (allocated before its window): in the segment that holds
  // them, else one of their own.
  std::vector<std::map<std::uint64_t, std::vector<block>>> contents(static_cast<std::size_t>(devices));
  std::size_t own_segments = 0;
  for (const auto& [ptr, b] : end_blocks) {
    if (b.device >= devices) continue;
    auto& known = segs[b.device];
    auto in = holder(known, ptr, b.size);
    if (in == known.end()) {
      in = known.emplace(ptr, segment_state{b.size, true, b.stack, b.stream, b.size, true}).first;
      ++own_segments;
    }
    contents[b.device][in->first].push_back(b);
  }

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
    if (stack != 0 && it != frames_of.end())
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
  auto put_block = [&](std::uint64_t addr, std::uint64_t size, std::uint64_t requested, const char* state,
                       std::uint32_t stack) {
    p.item();
    p.begin_dict();
    p.key("address");
    p.unsigned_integer(addr);
    p.key("size");
    p.unsigned_integer(size);
    p.key("requested_size");
    p.unsigned_integer(requested);
    p.key("state");
    p.str(state);
    p.key("frames");
    frames(stack);
    p.end_dict();
  };

  p.begin_dict();
  p.key("segments");
  p.begin_list();
  for (int d = 0; d < devices; ++d)
    for (const auto& [base, seg] : segs[static_cast<std::size_t>(d)]) {
      // Its blocks in address order, the space between them free ("inactive"), so that they tile
      // the segment as the viewer expects.
      std::vector<block> inside;
      if (const auto c = contents[static_cast<std::size_t>(d)].find(base);
          c != contents[static_cast<std::size_t>(d)].end())
        inside = c->second;
      std::uint64_t active = 0;
      for (const block& b : inside) active += b.size;
      p.item();
      p.begin_dict();
      p.key("device");
      p.integer(d);
      p.key("address");
      p.unsigned_integer(base);
      p.key("total_size");
      p.unsigned_integer(seg.size);
      p.key("allocated_size");
      p.unsigned_integer(active);
      p.key("active_size");
      p.unsigned_integer(active);
      p.key("requested_size");
      p.unsigned_integer(active);
      p.key("stream");
      p.unsigned_integer(seg.stream);
      p.key("segment_type");
      p.str(seg.first_bytes > (1u << 20) ? "large" : "small");
      p.key("is_expandable");
      p.boolean(false);
      p.key("frames");
      frames(seg.stack);
      p.key("blocks");
      p.begin_list();
      std::uint64_t at = base;
      for (const block& b : inside) {
        if (b.addr > at) put_block(at, b.addr - at, 0, "inactive", 0);
        put_block(b.addr, b.size, b.size, "active_allocated", b.stack);
        at = b.addr + b.size;
      }
      if (at < base + seg.size) put_block(at, base + seg.size - at, 0, "inactive", 0);
      p.end_list();
      p.end_dict();
    }
  p.end_list();

  p.key("device_traces");
  p.begin_list();
  for (const auto& trace : traces) {
    p.item();
    p.begin_list();
    for (const trace_entry& t : trace) {
      const bool oom = std::strcmp(t.action, "oom") == 0;
      p.item();
      p.begin_dict();
      p.key("action");
      p.str(t.action);
      p.key(oom ? "device_free" : "addr");
      p.unsigned_integer(t.addr);
      p.key("size");
      p.unsigned_integer(t.size);
      p.key("stream");
      p.unsigned_integer(t.stream);
      p.key("time_us");
      p.unsigned_integer(t.ns / 1000);
      p.key("frames");
      frames(t.stack);
      p.end_dict();
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
    if (pool_segments == 0 && !ring.empty())
      *note +=
          "no pool segments in the event ring (POOLSHIM_MODE=observe, or none taken in its window): each "
          "allocation is its own segment; ";
    else if (own_segments != 0)
      *note += std::to_string(own_segments) +
               " live allocations lie in no segment the event ring saw (older than its window): each is shown "
               "as its own segment; ";
    if (ooms != 0) *note += std::to_string(ooms) + " failed allocations (oom) in the timeline; ";
    if (!note->empty()) note->resize(note->size() - 2);
  }
  return p.finish();
}

int write_memory_viz(const stats_file& f, bool symbols, const frame_filter& filter, const std::string& output) {
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
  const std::string bytes = memory_viz_pickle(f, symbols, filter, &note);
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

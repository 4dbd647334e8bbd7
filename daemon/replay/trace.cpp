// The trace text format (tests/data/traces/README.md) and the builder both readers share. The
// parser is strict: a trace that frees what it never allocated, or allocates a live name again,
// is a broken file, and replaying it would report figures of a program that never ran.
#include "replay/trace.h"

#include <cerrno>
#include <cstdlib>
#include <sstream>

namespace poolshim::replay {

bool trace_builder::alloc(std::uint64_t name, std::uint64_t bytes) {
  if (live_.count(name) != 0) return false;
  std::uint32_t slot;
  if (!spare_.empty()) {
    slot = spare_.back();
    spare_.pop_back();
  } else {
    slot = t_.slots++;
    bytes_of_.push_back(0);
  }
  live_.emplace(name, slot);
  bytes_of_[slot] = bytes;
  t_.events.push_back(trace_event{trace_event::op::alloc, slot, bytes});
  ++t_.allocations;
  live_bytes_ += bytes;
  if (live_bytes_ > t_.peak_live) t_.peak_live = live_bytes_;
  return true;
}

bool trace_builder::free(std::uint64_t name) {
  const auto it = live_.find(name);
  if (it == live_.end()) return false;
  const std::uint32_t slot = it->second;
  live_.erase(it);
  live_bytes_ -= bytes_of_[slot];
  spare_.push_back(slot);
  t_.events.push_back(trace_event{trace_event::op::free, slot, 0});
  ++t_.frees;
  return true;
}

void trace_builder::time_us(std::uint64_t us) {
  if (us < last_time_) us = last_time_;  // a clock step back (CLOCK_REALTIME) reads as no time passing
  last_time_ = us;
  t_.events.push_back(trace_event{trace_event::op::time, 0, us});
}

trace trace_builder::take() { return std::move(t_); }

namespace {

constexpr const char* k_magic = "# poolshim-trace 1";
constexpr std::uint64_t k_max_bytes = std::uint64_t{1} << 46;  // the pool's largest request; no device is larger

bool parse_number(const std::string& token, std::uint64_t* out) {
  if (token.empty() || token[0] == '-' || token[0] == '+') return false;
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(token.c_str(), &end, 0);
  if (errno != 0 || end == token.c_str() || *end != '\0') return false;
  *out = v;
  return true;
}

}  // namespace

trace parse_text_trace(std::istream& in, const std::string& name) {
  trace_builder b(name);
  std::string line;
  std::size_t n = 0;
  bool seen_magic = false;
  auto fail = [&](const std::string& why) {
    throw trace_error(name + ":" + std::to_string(n) + ": " + why + " (\"" + line.substr(0, 80) + "\")");
  };
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (!seen_magic) {
      if (line != k_magic) fail(std::string("not a poolshim trace: the first line must be \"") + k_magic + "\"");
      seen_magic = true;
      continue;
    }
    if (line[0] == '#') {
      if (line == "# class: adversarial") b.get().adversarial = true;
      continue;
    }
    std::istringstream fields(line);
    std::string op, a, c, extra;
    fields >> op >> a;
    std::uint64_t id = 0, value = 0;
    if (op == "a") {
      fields >> c;
      if (!parse_number(a, &id) || !parse_number(c, &value)) fail("expected: a NAME BYTES");
      if (value == 0) fail("an allocation of 0 bytes");
      if (value > k_max_bytes) fail("an allocation over 64 TiB");
      if (!b.alloc(id, value)) fail("allocation of a name that is live (freed never)");
    } else if (op == "f") {
      if (!parse_number(a, &id)) fail("expected: f NAME");
      if (!b.free(id)) fail("free of a name that is not live");
    } else if (op == "t") {
      if (!parse_number(a, &value)) fail("expected: t MICROSECONDS");
      b.time_us(value);
    } else {
      fail("unknown event (a, f, t or a # comment)");
    }
    if (fields >> extra) fail("unexpected text after the event");
  }
  if (!seen_magic) throw trace_error(name + ": empty: not a poolshim trace");
  return b.take();
}

void write_text_trace(std::ostream& out, const trace& t, const std::vector<std::string>& header) {
  out << k_magic << '\n';
  if (t.adversarial) out << "# class: adversarial\n";
  for (const std::string& h : header) out << "# " << h << '\n';
  for (const trace_event& e : t.events) {
    switch (e.what) {
      case trace_event::op::alloc:
        out << "a " << e.slot << ' ' << e.value << '\n';
        break;
      case trace_event::op::free:
        out << "f " << e.slot << '\n';
        break;
      case trace_event::op::time:
        out << "t " << e.value << '\n';
        break;
    }
  }
}

}  // namespace poolshim::replay

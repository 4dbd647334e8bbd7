// Allocation traces for poolshim-replay: one program's allocations and frees in order, read from
// the text format of tests/data/traces/README.md or built from a stats file's event ring. Names
// (a pointer, a token of the text) become dense slots, reused after a free, so that a replay keeps
// one vector of live handles instead of a hash map.
#pragma once

#include <cstdint>
#include <istream>
#include <ostream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace poolshim::replay {

struct trace_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct trace_event {
  enum class op : std::uint8_t { alloc, free, time };
  op what = op::alloc;
  std::uint32_t slot = 0;   // alloc, free: the allocation's slot (reused after its free)
  std::uint64_t value = 0;  // alloc: bytes requested; time: microseconds since the trace began
};

struct trace {
  std::string name;
  bool adversarial = false;        // "# class: adversarial": not held to the packing goal
  std::vector<std::string> notes;  // what the source said, for the report (ring overwritten, ...)
  std::vector<trace_event> events;
  std::uint32_t slots = 0;  // slots used (the most allocations live at once, plus none)
  std::uint64_t allocations = 0;
  std::uint64_t frees = 0;
  std::uint64_t peak_live = 0;  // the most requested bytes live at once
};

// Builds a trace from named events in order; the name of a live allocation is unique, and may be
// used again after its free.
class trace_builder {
 public:
  explicit trace_builder(std::string name) { t_.name = std::move(name); }
  // False when `name` is already live (the caller decides whether that is an error).
  bool alloc(std::uint64_t name, std::uint64_t bytes);
  // False when `name` is not live: a free of memory the trace never saw allocated.
  bool free(std::uint64_t name);
  void time_us(std::uint64_t us);
  trace& get() { return t_; }
  trace take();

 private:
  trace t_;
  std::unordered_map<std::uint64_t, std::uint32_t> live_;  // name -> slot
  std::vector<std::uint64_t> bytes_of_;                    // slot -> bytes, while live
  std::vector<std::uint32_t> spare_;
  std::uint64_t live_bytes_ = 0;
  std::uint64_t last_time_ = 0;
};

// The text format. Throws trace_error naming the line of the first problem.
trace parse_text_trace(std::istream& in, const std::string& name);
// Writes t in the text format (slots as names); `header` lines become comments after the first.
void write_text_trace(std::ostream& out, const trace& t, const std::vector<std::string>& header);

}  // namespace poolshim::replay

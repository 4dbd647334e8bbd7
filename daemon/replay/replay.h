// Runs a trace through an allocation policy and reports what the device saw: peak reserved
// against the trace's peak live bytes, driver allocations (segments), hit rate and driver calls
// saved against no caching; and the tables poolshim-replay prints (text, JSON).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "replay/policies.h"
#include "replay/trace.h"

namespace poolshim::replay {

struct policy_result {
  std::string policy;
  std::uint64_t served = 0;  // allocations served (the rest hit the device limit)
  std::uint64_t failures = 0;
  std::uint64_t hits = 0;           // served without a driver allocation in that call
  std::uint64_t segments = 0;       // driver allocations during the trace
  std::uint64_t driver_frees = 0;   // driver frees during the trace (not the teardown)
  std::uint64_t peak_reserved = 0;  // the most bytes held from the driver at once
  std::uint64_t end_reserved = 0;   // held after the last event
  double ratio = 0;                 // peak_reserved / the trace's peak_live
  double hit_rate = 0;              // hits / served
  // 1 - (segments + driver_frees) / (allocations + frees of the trace): the driver calls no
  // caching makes, saved.
  double calls_saved = 0;
};

struct trace_result {
  std::string name;
  bool adversarial = false;
  std::vector<std::string> notes;
  std::uint64_t allocations = 0, frees = 0, peak_live = 0;
  std::vector<policy_result> policies;
};

policy_result replay(const trace& t, allocation_policy& policy);
// Every named policy on t, each from a fresh start.
trace_result replay_all(const trace& t, const std::vector<std::string>& policies, const policy_options& o);

// The goal of issue #17 for one trace: poolshim's peak reserved <= 1.10 x peak live, and the
// lowest of the policies compared. Empty when the trace has no poolshim row.
std::string goal_text(const trace_result& r);

void write_text(std::ostream& out, const std::vector<trace_result>& results, const policy_options& o);
void write_json(std::ostream& out, const std::vector<trace_result>& results, const policy_options& o);

}  // namespace poolshim::replay

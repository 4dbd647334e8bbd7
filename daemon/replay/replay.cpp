// The replay loop and the report. A hit is judged from the device_model's count, not from a
// policy's own counters, so that every policy is measured by the same rule: an allocation that
// made no driver allocation was served from memory the policy already held.
#include "replay/replay.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "stats/report_text.h"

namespace poolshim::replay {

policy_result replay(const trace& t, allocation_policy& policy) {
  policy_result r;
  r.policy = policy.name();
  const device_model& d = policy.device();
  std::vector<std::uint64_t> handle(t.slots, 0);
  for (const trace_event& e : t.events) {
    if (e.what == trace_event::op::alloc) {
      const std::uint64_t before = d.allocations();
      const std::uint64_t h = policy.allocate(e.value);
      handle[e.slot] = h;
      if (h == 0) {
        ++r.failures;
        continue;
      }
      ++r.served;
      if (d.allocations() == before) ++r.hits;
    } else if (e.what == trace_event::op::free) {
      if (handle[e.slot] != 0) policy.deallocate(handle[e.slot]);
      handle[e.slot] = 0;
    }
  }
  r.segments = d.allocations();
  r.driver_frees = d.deallocations();
  r.peak_reserved = d.peak_reserved();
  r.end_reserved = d.reserved();
  r.ratio = t.peak_live != 0 ? static_cast<double>(r.peak_reserved) / static_cast<double>(t.peak_live) : 0;
  r.hit_rate = r.served != 0 ? static_cast<double>(r.hits) / static_cast<double>(r.served) : 0;
  const double baseline = static_cast<double>(t.allocations + t.frees);
  r.calls_saved = baseline != 0 ? 1.0 - static_cast<double>(r.segments + r.driver_frees) / baseline : 0;
  return r;
}

trace_result replay_all(const trace& t, const std::vector<std::string>& policies, const policy_options& o) {
  trace_result out;
  out.name = t.name;
  out.adversarial = t.adversarial;
  out.notes = t.notes;
  out.allocations = t.allocations;
  out.frees = t.frees;
  out.peak_live = t.peak_live;
  for (const std::string& name : policies) {
    const auto p = make_policy(name, o);
    if (p != nullptr) out.policies.push_back(replay(t, *p));
  }
  return out;
}

namespace {

constexpr double k_goal_ratio = 1.10;

std::string bytes_text(std::uint64_t b) {
  char buf[32];
  if (b >= (std::uint64_t{1} << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1 << 30));
  else if (b >= (std::uint64_t{1} << 20))
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(b) / (1 << 20));
  else if (b >= 1024)
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(b) / 1024);
  else
    std::snprintf(buf, sizeof buf, "%" PRIu64 " B", b);
  return buf;
}

std::string limit_text(std::uint64_t b) { return b == 0 ? "none" : bytes_text(b); }

struct goal {
  bool present = false, ratio_ok = false, lowest = false;
  double ratio = 0;
  std::string best;  // the caching policy with the lowest peak reserved
  double best_ratio = 0;
};

// No caching is left out of "lowest": it reserves what is live and pays a driver call for it.
goal goal_of(const trace_result& r) {
  goal g;
  const policy_result* mine = nullptr;
  const policy_result* best = nullptr;
  for (const policy_result& p : r.policies) {
    if (p.policy == "poolshim") mine = &p;
    if (p.policy != "none" && (best == nullptr || p.peak_reserved < best->peak_reserved)) best = &p;
  }
  if (mine == nullptr) return g;
  g.present = true;
  g.ratio = mine->ratio;
  g.ratio_ok = mine->ratio <= k_goal_ratio;
  g.lowest = mine->peak_reserved <= best->peak_reserved;
  g.best = best->policy;
  g.best_ratio = best->ratio;
  return g;
}

}  // namespace

std::string goal_text(const trace_result& r) {
  const goal g = goal_of(r);
  if (!g.present) return "";
  char buf[200];
  std::snprintf(buf, sizeof buf, "%s: poolshim %.3f x live (<= %.2f: %s), lowest of the caching policies: %s",
                r.adversarial ? "goal (adversarial trace: not held to it)" : "goal", g.ratio, k_goal_ratio,
                g.ratio_ok ? "yes" : "no", g.lowest ? "yes" : "no");
  std::string out = buf;
  if (!g.lowest) {
    std::snprintf(buf, sizeof buf, " (%s %.3f)", g.best.c_str(), g.best_ratio);
    out += buf;
  }
  return out;
}

void write_text(std::ostream& out, const std::vector<trace_result>& results, const policy_options& o) {
  out << "poolshim-replay: driver granule " << bytes_text(o.driver_granule) << ", device limit "
      << limit_text(o.device_limit) << ", region chunk " << bytes_text(o.region_chunk) << "; poolshim: small limit "
      << bytes_text(o.pool.small_limit) << ", thread cache " << limit_text(o.pool.thread_cache_bytes)
      << ", cache limit " << limit_text(o.pool.idle_limit) << ", idle bound "
      << (o.pool.idle_percent == pool::kNoIdleBound
              ? std::string("none")
              : std::to_string(o.pool.idle_percent) + (o.pool.idle_bound_now ? "% of in use now" : "% of the peak"))
      << ", reuse up to 1/" << (1u << o.pool.reuse_bits) << " larger, " << (1u << o.pool.large_class_bits)
      << " classes per power of two, small segments " << (o.pool.grow_small_segments ? "256 KiB doubling to " : "")
      << bytes_text(o.pool.segment_size) << " (one thread, device-sync frees)\n";
  for (const trace_result& r : results) {
    out << '\n'
        << r.name << (r.adversarial ? " (adversarial)" : "") << ": " << r.allocations << " allocations, " << r.frees
        << " frees, peak live " << bytes_text(r.peak_live) << '\n';
    for (const std::string& n : r.notes) out << "  note: " << n << '\n';
    char line[200];
    std::snprintf(line, sizeof line, "  %-9s %13s %8s %9s %9s %12s %7s %13s\n", "policy", "peak reserved", "x live",
                  "segments", "hit rate", "calls saved", "failed", "end reserved");
    out << line;
    for (const policy_result& p : r.policies) {
      std::snprintf(line, sizeof line, "  %-9s %13s %8.3f %9" PRIu64 " %8.1f%% %11.1f%% %7" PRIu64 " %13s\n",
                    p.policy.c_str(), bytes_text(p.peak_reserved).c_str(), p.ratio, p.segments, 100 * p.hit_rate,
                    100 * p.calls_saved, p.failures, bytes_text(p.end_reserved).c_str());
      out << line;
    }
    const std::string g = goal_text(r);
    if (!g.empty()) out << "  " << g << '\n';
  }
}

void write_json(std::ostream& out, const std::vector<trace_result>& results, const policy_options& o) {
  char buf[64];
  auto num = [&](double v) {
    std::snprintf(buf, sizeof buf, "%.6f", v);
    return std::string(buf);
  };
  out << "{\"version\": 1, \"options\": {\"driver_granule\": " << o.driver_granule
      << ", \"device_limit\": " << o.device_limit << ", \"region_chunk\": " << o.region_chunk
      << ", \"small_limit\": " << o.pool.small_limit << ", \"thread_cache\": " << o.pool.thread_cache_bytes
      << ", \"cache_limit\": " << o.pool.idle_limit << ", \"segment_size\": " << o.pool.segment_size
      << ", \"idle_percent\": "
      << (o.pool.idle_percent == pool::kNoIdleBound ? std::string("null") : std::to_string(o.pool.idle_percent))
      << ", \"idle_against\": \"" << (o.pool.idle_bound_now ? "now" : "peak") << "\""
      << ", \"reuse_bits\": " << o.pool.reuse_bits << ", \"class_bits\": " << o.pool.large_class_bits
      << ", \"grow_small_segments\": " << (o.pool.grow_small_segments ? "true" : "false") << "}, \"traces\": [";
  for (std::size_t i = 0; i < results.size(); ++i) {
    const trace_result& r = results[i];
    out << (i != 0 ? ", " : "") << "{\"trace\": " << stats_tool::json_quote(r.name) << ", \"class\": \""
        << (r.adversarial ? "adversarial" : "realistic") << "\", \"allocations\": " << r.allocations
        << ", \"frees\": " << r.frees << ", \"peak_live\": " << r.peak_live << ", \"notes\": [";
    for (std::size_t n = 0; n < r.notes.size(); ++n) out << (n != 0 ? ", " : "") << stats_tool::json_quote(r.notes[n]);
    out << "], \"policies\": [";
    for (std::size_t k = 0; k < r.policies.size(); ++k) {
      const policy_result& p = r.policies[k];
      out << (k != 0 ? ", " : "") << "{\"policy\": \"" << p.policy << "\", \"peak_reserved\": " << p.peak_reserved
          << ", \"ratio\": " << num(p.ratio) << ", \"segments\": " << p.segments
          << ", \"driver_frees\": " << p.driver_frees << ", \"served\": " << p.served << ", \"hits\": " << p.hits
          << ", \"hit_rate\": " << num(p.hit_rate) << ", \"calls_saved\": " << num(p.calls_saved)
          << ", \"failures\": " << p.failures << ", \"end_reserved\": " << p.end_reserved << "}";
    }
    out << "]";
    const goal g = goal_of(r);
    if (g.present)
      out << ", \"goal\": {\"ratio_ok\": " << (g.ratio_ok ? "true" : "false")
          << ", \"lowest\": " << (g.lowest ? "true" : "false") << "}";
    out << "}";
  }
  out << "]}\n";
}

}  // namespace poolshim::replay

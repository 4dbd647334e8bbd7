// The pool hit rate (pool_hit_rate.h).
#include "stats/pool_hit_rate.h"

#include <cstdio>

namespace poolshim::stats_tool {
namespace {

std::string rate_text(std::uint64_t hits, std::uint64_t allocs) {
  if (allocs == 0) return "-";
  char b[96];
  std::snprintf(b, sizeof b, "%.1f%% (%llu of %llu allocations)",
                100.0 * static_cast<double>(hits) / static_cast<double>(allocs), static_cast<unsigned long long>(hits),
                static_cast<unsigned long long>(allocs));
  return b;
}

std::string rate_json(std::uint64_t hits, std::uint64_t allocs) {
  char b[128];
  if (allocs == 0)
    std::snprintf(b, sizeof b, "{\"hits\":%llu,\"allocs\":0,\"rate\":null}", static_cast<unsigned long long>(hits));
  else  // a JSON number with a fraction always ("0.0", not "0": a reader's type check sees a number)
    std::snprintf(b, sizeof b, "{\"hits\":%llu,\"allocs\":%llu,\"rate\":%.6f}", static_cast<unsigned long long>(hits),
                  static_cast<unsigned long long>(allocs), static_cast<double>(hits) / static_cast<double>(allocs));
  return b;
}

}  // namespace

std::string pool_hit_rate_text(const poolshim_stats_header& h) {
  return "  pool hit rate: device " + rate_text(h.device_pool_hits, h.device_pool_allocs) + ", pinned " +
         rate_text(h.host_pool_hits, h.host_pool_allocs) + "\n";
}

std::string pool_hit_rate_json(const poolshim_stats_header& h) {
  return "\"pool_hit_rate\":{\"device\":" + rate_json(h.device_pool_hits, h.device_pool_allocs) +
         ",\"pinned\":" + rate_json(h.host_pool_hits, h.host_pool_allocs) + "},";
}

}  // namespace poolshim::stats_tool

// Caching frameworks in call stacks. Under PyTorch, CuPy, JAX/XLA (and TensorFlow) or an RMM pool,
// a driver allocation happens only when the framework's own cache grows: the stack then shows
// where the cache grew, not which tensor or array uses the memory. poolshim-stats labels such a
// site with the framework and says, once per report, how to make that framework allocate each
// tensor separately (per-tensor attribution). The pattern table is in labels.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "stats/stats_file.h"

namespace poolshim::stats_tool {

struct framework {
  const char* name;  // the label: "PyTorch CUDACachingAllocator", ...
  const char* what;  // the cache in words: "PyTorch's CUDA caching allocator"
  const char* hint;  // how to get per-tensor call sites instead (one or two sentences)
};

// Every framework the table knows, in table order.
const std::vector<framework>& frameworks();

// The framework whose cache one frame belongs to, by the frame's function name, or by its
// module's file name when the function is unknown (a stripped library); nullptr if none.
const framework* framework_of(const frame& f);

// The framework whose cache a site's allocations grow: the innermost frame that belongs to one,
// unless the stack shows that framework's non-caching path (PyTorch's cudaMallocAsync backend).
// *frame_index (when given) gets that frame's index in s.frames (innermost first).
const framework* framework_of(const site& s, std::size_t* frame_index = nullptr);

// One framework that the given sites pass through, with their count and bytes.
struct framework_use {
  const framework* fw = nullptr;
  std::size_t sites = 0;
  std::int64_t bytes_at_peak = 0;
  std::int64_t live_bytes = 0;
  std::uint64_t bytes_allocated = 0;
};
std::vector<framework_use> frameworks_used(const std::vector<site>& sites);  // table order

// For the reports. framework_json: the site's "framework" value ("\"name\"" or null);
// frameworks_json: the report's "frameworks" array (REPORT_SCHEMA.md); framework_notes_text: the
// text report's closing note, once per framework used, wrapped to `width` columns ("" if none).
std::string framework_json(const site& s);
std::string frameworks_json(const std::vector<site>& sites);
std::string framework_notes_text(const std::vector<site>& sites, std::size_t width = 100);

}  // namespace poolshim::stats_tool

// Python frames for the call-site statistics (POOLSHIM_STATS=python; DESIGN.md, "Call-site
// statistics"): where a native stack passes through the interpreter's eval loop, the Python frames
// that loop is running replace it, so the report shows the script's file:line in function. Read
// from the calling thread's own frame chain, never taking the GIL and never allocating.
#pragma once

#include <cstddef>
#include <cstdint>

namespace poolshim::stats {

// Once, when the recorder starts: `region` (zeroed, `size` bytes) is the stats file's Python code
// table (include/poolshim/stats_python.h). False when this process is not a supported CPython: the
// recorder then records native frames only.
bool python_start(unsigned char* region, std::size_t size) noexcept;

// frames[0..n), innermost first: replaces each eval-loop frame with the Python frames it runs
// (values tagged POOLSHIM_STATS_PYFRAME_TAG), keeping at most `cap` frames; returns the new count.
// *python is set when a Python frame was written (such a stack is not cached: the same native
// frames run other Python lines).
int python_expand(void** frames, int n, int cap, bool* python) noexcept;

}  // namespace poolshim::stats

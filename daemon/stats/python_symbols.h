// Python frames in a stats file (POOLSHIM_STATS=python): a frame value tagged
// POOLSHIM_STATS_PYFRAME_TAG names a code object of the file's Python code table
// (include/poolshim/stats_python.h) and an instruction in it; this turns it into
// "function (file:line)" offline, after the process is gone.
#pragma once

#include <cstddef>

namespace poolshim::stats_tool {

struct frame;

class python_symbols {
 public:
  // `region`, `size`: the file's Python code table (mapped read-only; every offset checked).
  python_symbols(const unsigned char* region, std::size_t size) : region_(region), size_(size) {}
  // Fills f's function, file and line (module "[python]") when f->pc is a Python frame the table
  // names; false otherwise.
  bool resolve(frame* f) const;

 private:
  const unsigned char* region_;
  std::size_t size_;
};

}  // namespace poolshim::stats_tool

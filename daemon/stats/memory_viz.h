// poolshim-stats report --format memory_viz: a snapshot in the pickle format that
// torch.cuda.memory._snapshot() produces and https://pytorch.org/memory_viz (and
// torch/cuda/_memory_viz.py) loads: {"segments": [...], "device_traces": [[...] per device]}.
//
// The timeline is the stats file's event ring (POOLSHIM_STATS_EVENTS=N: the newest N allocations
// and frees). Each trace entry has action, addr, size, stream (0: the file does not record
// streams), time_us and frames [{"filename", "line", "name"}], innermost first, symbolised
// offline. The stats file records what the program asked for, not how the pool packed it, so
// every allocation is its own segment: an allocation is "segment_alloc" then "alloc", a free is
// "free_requested", "free_completed", then "segment_free". "segments" is the end state: one
// segment holding one active block per allocation still live (the live table), so the viewer's
// backward replay from it meets every event's block. Device memory only (device, managed, async,
// VMM, by device index); pinned host memory is left out, with a note on stderr.
//
// Written with a small pickle writer (protocol 4 opcodes that both Python's unpickler and the
// viewer's JavaScript unpickler read: dicts, lists in batches of 1000, strings, ints of any
// width, bool, None, and memo references for the frame lists that many events share).
#pragma once

#include <string>

#include "stats/stats_file.h"

namespace poolshim::stats_tool {

// Writes the snapshot to OUTPUT ("" or "-": stdout, refused when stdout is a terminal). Returns
// the exit status: 0, or 1 with a message on stderr (no event ring in the file, a write error).
int write_memory_viz(const stats_file& f, bool symbols, const std::string& output);

// The pickle bytes alone (for tests and other writers); *note gets what was left out, if anything.
std::string memory_viz_pickle(const stats_file& f, bool symbols, std::string* note);

}  // namespace poolshim::stats_tool

// poolshim-stats report --format memory_viz: a snapshot in the pickle format that
// torch.cuda.memory._snapshot() produces and https://pytorch.org/memory_viz (and
// torch/cuda/_memory_viz.py) loads: {"segments": [...], "device_traces": [[...] per device]}.
//
// The timeline is the stats file's event ring (POOLSHIM_STATS_EVENTS=N: the newest N events). Each
// trace entry has action, addr, size, stream, time_us and frames [{"filename", "line", "name"}],
// innermost first, symbolised offline and cut to the frames the reports show (frame_filter.h).
// The pool's real segments come from the ring too (the shim records each segment a device pool
// takes from its source or gives back): "segment_alloc" and "segment_free" are the pool's, and an
// allocation is "alloc" into the segment that holds it, so the viewer shows how the pool packed
// the blocks. An allocation in no segment the ring saw (the driver's own in POOLSHIM_MODE=observe,
// pitched or VMM memory, or a segment older than the ring's window) is its own segment, as before.
// A failed allocation is an "oom" entry (size: asked; device_free: the driver's free bytes then).
// "segments" is the end state: each segment with its live blocks (the live table) at their
// addresses and the space between them "inactive", so the viewer's backward replay from it meets
// every event's block and segment. Device memory only (device, managed, async, VMM, by device
// index); pinned host memory is left out, with a note on stderr.
//
// Written with a small pickle writer (protocol 4 opcodes that both Python's unpickler and the
// viewer's JavaScript unpickler read: dicts, lists in batches of 1000, strings, ints of any
// width, bool, None, and memo references for the frame lists that many events share).
#pragma once

#include <string>

#include "stats/frame_filter.h"
#include "stats/stats_file.h"

namespace poolshim::stats_tool {

// Writes the snapshot to OUTPUT ("" or "-": stdout, refused when stdout is a terminal). Returns
// the exit status: 0, or 1 with a message on stderr (no event ring in the file, a write error).
int write_memory_viz(const stats_file& f, bool symbols, const frame_filter& filter, const std::string& output);

// The pickle bytes alone (for tests and other writers); *note gets what was left out, if anything.
std::string memory_viz_pickle(const stats_file& f, bool symbols, const frame_filter& filter, std::string* note);

}  // namespace poolshim::stats_tool

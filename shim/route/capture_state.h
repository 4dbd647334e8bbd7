// Whether a stream capture is in progress anywhere in the process. The capture hooks count begins
// and ends; the routers send allocations made during a capture to the real driver (pooled memory
// would outlive or escape the graph), and the fence tracker defers its records (a record could join
// the user's graph). Relaxed: a capture begun on another thread is ordered by the capture gate
// (fence_tracker.h), not by this counter.
#pragma once

namespace poolshim::capture_state {

// Stream capture began (+1) or ended (-1).
void note_capture(int delta) noexcept;
// A capture is in progress somewhere in the process.
bool capture_active() noexcept;

}  // namespace poolshim::capture_state

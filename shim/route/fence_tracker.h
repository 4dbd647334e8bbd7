// The fence tracker behind POOLSHIM_FREE_SYNC=fence: a free returns its block at once, stamped with
// the current epoch, and the block is handed out again only after a fence has passed every stream
// that may still read it. One fence covers the whole process:
//   - every context the program uses (created, retained as primary, or owning a pool): one event
//     recorded on its legacy stream, which orders after all earlier work of the legacy stream, the
//     per-thread default streams and every blocking stream of that context;
//   - every live non-blocking stream created through the driver (the hooks see each one; kept by
//     its cuStreamGetId, so a recycled handle is never mistaken for the old stream);
//   - streams destroyed since the last fence: an event recorded just before the destroy.
// Amortised: a fence is started once a thread has freed a batch (32 blocks or 64 MiB), or when a
// pool misses only because freed blocks wait and the last fence is older than a time slice; the
// pools poll on their slow paths (cuEventQuery, in order); the hit path only loads two counters.
// Deferred while a stream capture is active anywhere in the process (a record could land in the
// user's graph, and a legacy-stream record would invalidate a blocking capture); capture begin
// takes the tracker's lock (capture_gate) so a capture cannot start between a fence's records.
// The cost the program sees: a record on the legacy stream is a join point, as any legacy-stream
// call is (later work of blocking streams waits for earlier work of the others).
#pragma once

#include <cuda.h>

#include <cstddef>
#include <cstdint>

#include "pool/fence.h"
#include "poolshim/poolshim.h"

namespace poolshim::fence_tracker {

// The process's reuse fence (leaky singleton; it outlives every pool).
pool::fence& fence() noexcept;

// What the driver hooks report. All are cheap when POOLSHIM_FREE_SYNC is not fence (nothing kept).
void note_context(CUcontext ctx) noexcept;                           // a context the program uses
void note_stream_created(CUstream stream, unsigned flags) noexcept;  // in the current context
void note_stream_destroying(CUstream stream) noexcept;               // before the real destroy
void forget_context(CUcontext ctx) noexcept;                         // destroyed, or its primary reset
// A pooled block of `bytes` went back with the current epoch: starts a fence once a batch is full.
void note_free(std::size_t bytes) noexcept;

// Held by the capture-begin hooks around the real call.
class capture_gate {
 public:
  capture_gate() noexcept;
  ~capture_gate();
  capture_gate(const capture_gate&) = delete;
  capture_gate& operator=(const capture_gate&) = delete;

 private:
  bool locked_;
};

// The tracker's figures: the FENCE rows of POOLSHIM_COUNTER_TABLE (include/poolshim/poolshim.h), by
// their `from` names (what each counts is said there).
struct stats {
#define POOLSHIM_FENCE_FIGURE(field, from, ...) std::uint64_t from = 0;
  POOLSHIM_COUNTER_TABLE(POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_SKIP, POOLSHIM_COUNTER_SKIP,
                         POOLSHIM_COUNTER_SKIP, POOLSHIM_FENCE_FIGURE, POOLSHIM_COUNTER_SKIP)
#undef POOLSHIM_FENCE_FIGURE
};
stats get_stats() noexcept;

}  // namespace poolshim::fence_tracker

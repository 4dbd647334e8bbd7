// Finding the caller's stack id: the stack cache, else an unwind (caller_stack.h).
#include "stats/caller_stack.h"

#include <algorithm>
#include <atomic>

#include "poolshim/stats_file.h"
#include "stats/file_atomic.h"
#include "stats/python_frames.h"
#include "stats/unwinder.h"

namespace poolshim::stats {
namespace {

constexpr int k_max_frames = k_cached_depth + 16;  // the depth kept, at most 64, and the shim's own

std::atomic<int> g_skip_guess{4};  // frames of the shim's own above the caller's, plus one

// The unwind of a miss. Under TSan, unw_step: unw_backtrace keeps a per-thread trace cache whose
// key destructor locks a mutex in the last destructor round, after TSan has torn the thread's
// state down, and TSan's runtime crashes there (the TSan run of the recorder test did). Only the
// sanitizer build differs; the logic around it is the same.
int capture_for_miss(void** frames, int max) noexcept {
#if defined(__SANITIZE_THREAD__)
  std::uintptr_t unused[k_max_frames];
  return capture_stack_with_slots(frames, unused, max, 0);
#else
  return capture_stack(frames, max, 0);
#endif
}

}  // namespace

std::uint32_t caller_stack::find_slow(stack_cache* cache, std::uintptr_t sp, std::uint32_t hit) noexcept {
  if (table_ == nullptr) return 0;  // counting without stacks (the file system was full)
  // With Python frames the stack is not cached (the same native frames run other Python lines).
  const bool cacheable = cache != nullptr && !python_ && cache->usable(sp);
  void* frames[k_max_frames];
  // Unwind the depth kept plus the shim's own frames, no more (~7 ns a frame): how many of those
  // there are is learnt (different hooks have different paths); a stack cut short by a guess that
  // was too small is unwound again.
  const int skip = g_skip_guess.load(std::memory_order_relaxed);
  const int asked = static_cast<int>(depth_) + skip;
  int n = capture_for_miss(frames, asked);
  int first = 0;  // the shim's own frames (hooks, seam, recorder) are not the caller's
  while (first < n && own(frames[first])) ++first;
  if (first >= skip && first < 16) {
    g_skip_guess.store(first + 1, std::memory_order_relaxed);
    if (n == asked) n = capture_for_miss(frames, static_cast<int>(depth_) + 16);  // cut short: again
  }
  bool python = false;
  if (python_) n = first + python_expand(frames + first, n - first, k_max_frames - first, &python);
  const int depth = std::min(n - first, static_cast<int>(depth_));
  // Deeper than the depth kept: the outermost frame kept gives way to a marker that says so, and
  // how deep the whole stack is (stats_file.h), so that the report can mark the stack as cut and
  // say what POOLSHIM_STATS_DEPTH would keep it whole. Counted on misses only (an unwind more).
  const bool cut = n - first > depth && depth > 0;
  // A re-check whose unwind gives the very frames that hit (up to the cut, for a stack cut at the
  // depth kept: the cache reads none past it) needs no interning, nor a cut stack's whole depth.
  if (hit != 0 && cache->confirms(frames + first, cut ? depth - 1 : depth, cut)) return hit;
  if (cut) {
    bool more = false;
    const int whole = python ? 0 : stack_depth(shim_begin_, shim_end_, POOLSHIM_STATS_CUT_COUNT_LIMIT, &more);
    frames[first + depth - 1] = reinterpret_cast<void*>(
        (POOLSHIM_STATS_CUT_TAG << 48) | (more ? POOLSHIM_STATS_CUT_MORE : 0) | static_cast<std::uint32_t>(whole));
  }
  const std::size_t before = table_->size();
  const std::uint32_t id = table_->intern(frames + first, depth);
  if (hit != 0) return cache->checked(hit, id);
  if (id == 0 && (atomic_at(*flags_).load(std::memory_order_relaxed) & POOLSHIM_STATS_FLAG_STACKS_DROPPED) == 0)
    atomic_at(*flags_).fetch_or(POOLSHIM_STATS_FLAG_STACKS_DROPPED, std::memory_order_relaxed);
  if (table_->size() != before)  // a new stack: make sure its modules are listed
    for (int i = first; i < first + depth; ++i)
      if ((reinterpret_cast<std::uintptr_t>(frames[i]) >> 48) != POOLSHIM_STATS_PYFRAME_TAG &&
          (reinterpret_cast<std::uintptr_t>(frames[i]) >> 48) != POOLSHIM_STATS_CUT_TAG &&
          !modules_->knows(reinterpret_cast<std::uintptr_t>(frames[i]))) {
        modules_->refresh();
        break;
      }
  // A cut stack's marker is no return address on the stack: the cache checks the frames before it.
  if (cacheable && id != 0 && depth > 0 && !python && cache->take_capture(sp))
    cache->capture(sp, frames + first, cut ? depth - 1 : depth, cut, id, static_cast<int>(depth_) + 16, shim_begin_,
                   shim_end_);
  return id;
}

}  // namespace poolshim::stats

// The process's count of stream captures in progress (capture_state.h).
#include "route/capture_state.h"

#include <atomic>

namespace poolshim::capture_state {
namespace {

std::atomic<int> g_captures{0};

}  // namespace

void note_capture(int delta) noexcept { g_captures.fetch_add(delta, std::memory_order_relaxed); }

bool capture_active() noexcept { return g_captures.load(std::memory_order_relaxed) > 0; }

}  // namespace poolshim::capture_state

// Native call stacks for the call-site statistics (DESIGN.md, "Call-site statistics"):
// unw_backtrace of libunwind (UNW_LOCAL_ONLY) into the caller's fixed array. libunwind is loaded
// with dlopen(RTLD_LOCAL) — from beside libpoolshim.so first (the bundle's copy), else the
// system's libunwind.so.8 — because Debian's exports unversioned _Unwind_* symbols that would take
// over C++ exception handling in the whole process if it were linked. Capture takes no shim lock
// (it may be called with none held only: libunwind reads the loader's module list), never
// allocates after the first call, and returns 0 frames when libunwind is missing.
#pragma once

#include <cstddef>
#include <cstdint>

namespace poolshim::stats {

// Frames of the calling thread, innermost first (frame 0 is in the caller of capture_stack),
// without the `skip` innermost ones (the shim's own), at most `max`. Returns how many were written
// (0 without libunwind).
int capture_stack(void** frames, int max, int skip) noexcept;

// Like capture_stack, but with unw_step and, for each frame, the stack address that holds its
// return address (x86-64: just below the callee's canonical frame address), so that a later event
// can check in a few loads that the stack is still the same (stack_cache.h). Slower per frame than
// capture_stack; 0 frames where unavailable (other architectures, no libunwind).
int capture_stack_with_slots(void** frames, std::uintptr_t* slots, int max, int skip) noexcept;

// Frames of the calling thread past the leading ones in [own_lo, own_hi) (the shim's own), counted
// up to `limit`; *more is set when the stack had more than that. 0 without libunwind. For a stack
// cut at the depth kept: how deep it really is.
int stack_depth(std::uintptr_t own_lo, std::uintptr_t own_hi, int limit, bool* more) noexcept;

// True once libunwind is loaded (loads it on first use; false for good when it cannot be found).
bool unwinder_available() noexcept;

// The address range of the loaded segments (PT_LOAD) of the module holding `addr`; 0, 0 when none
// does. Takes the loader's lock (dl_iterate_phdr).
void module_range(std::uintptr_t addr, std::uintptr_t* lo, std::uintptr_t* hi) noexcept;

}  // namespace poolshim::stats

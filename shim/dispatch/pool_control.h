// The pools' controls a program may call on purpose (include/poolshim/poolshim.h, issue #17):
// give idle memory back now (poolshim_trim, poolshim_release_all) and take memory ahead of need
// (poolshim_preallocate; POOLSHIM_PREALLOCATE does the same for an unmodified program). Each
// returns bytes; outside POOLSHIM_MODE=pool, or from inside a hook, nothing happens (0).
#pragma once

#include <cstddef>

namespace poolshim::dispatch {

// Idle device memory first, then idle pinned slabs, until at least `bytes` went back (whole
// segments and slabs: it may be more); preallocated memory may go too.
std::size_t trim(std::size_t bytes) noexcept;
// Every idle byte of every pool, preallocations included.
std::size_t release_all() noexcept;
std::size_t preallocate(int device, std::size_t bytes) noexcept;

}  // namespace poolshim::dispatch

// The stack id of the recorder's caller for one event: from the thread's stack cache when it
// hits, else unwound (unw_backtrace, the depth kept plus the shim's own frames, learnt), Python
// frames spliced in with POOLSHIM_STATS=python, interned in the stack table; a new stack's modules
// are listed. A hit is inline in the recorder (the cache's lookup and the re-check's countdown);
// a miss, a re-check and everything else are one call out of line.
#pragma once

#include <cstdint>

#include "stats/module_list.h"
#include "stats/stack_cache.h"
#include "stats/stack_table.h"

namespace poolshim::stats {

class caller_stack {
 public:
  caller_stack() noexcept = default;
  // `table` null: counting without stacks (every event is stack 0). `flags` is the file's header's
  // (POOLSHIM_STATS_FLAG_STACKS_DROPPED); frames in [shim_begin, shim_end) are the shim's own.
  caller_stack(stack_table* table, module_list* modules, std::uint32_t* flags, std::uint32_t depth, bool python,
               std::uintptr_t shim_begin, std::uintptr_t shim_end) noexcept
      : table_(table),
        modules_(modules),
        flags_(flags),
        shim_begin_(shim_begin),
        shim_end_(shim_end),
        depth_(depth),
        python_(python) {}

  // The caller's stack id (0: untracked). `cache`: the thread's, or null (none: always unwind).
  // `sp`: the recorder's frame address (__builtin_frame_address(0) of the record_* function), the
  // same at every event from the same call chain.
  [[gnu::always_inline]] std::uint32_t find(stack_cache* cache, std::uintptr_t sp) noexcept {
    std::uint32_t hit = 0;
    if (cache != nullptr && !python_ && table_ != nullptr && cache->usable(sp)) {
      hit = cache->lookup(sp);
      if (hit != 0 && !cache->recheck()) [[likely]]
        return hit;
    }
    return find_slow(cache, sp, hit);
  }

 private:
  // A miss (hit 0), or a re-check of `hit`: unwind, intern, and maybe remember in the cache.
  [[gnu::noinline]] std::uint32_t find_slow(stack_cache* cache, std::uintptr_t sp, std::uint32_t hit) noexcept;
  bool own(const void* pc) const noexcept {
    const auto a = reinterpret_cast<std::uintptr_t>(pc);
    return a >= shim_begin_ && a < shim_end_;
  }

  stack_table* table_ = nullptr;
  module_list* modules_ = nullptr;
  std::uint32_t* flags_ = nullptr;
  std::uintptr_t shim_begin_ = 0, shim_end_ = 0;
  std::uint32_t depth_ = 32;
  bool python_ = false;  // Python frames replace the eval loop's (POOLSHIM_STATS=python)
};

}  // namespace poolshim::stats

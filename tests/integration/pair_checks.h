// The checks of the pair programs (device_buffer_pair, channel_pair): EXPECT counts a failure and
// prints "PROGRAM: FAIL (line N): condition: what [the library's last error]"; the program names
// itself with POOLSHIM_PAIR_PROGRAM before including this and exits non-zero when failures != 0.
#pragma once

#include <cstdio>

#include "poolshim/buffers.h"

#ifndef POOLSHIM_PAIR_PROGRAM
#error "define POOLSHIM_PAIR_PROGRAM (the program's name) before including pair_checks.h"
#endif

namespace pair_checks {
inline int failures = 0;
}  // namespace pair_checks

#define EXPECT(cond, ...)                                                           \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      ++pair_checks::failures;                                                      \
      std::printf(POOLSHIM_PAIR_PROGRAM ": FAIL (line %d): %s: ", __LINE__, #cond); \
      std::printf(__VA_ARGS__);                                                     \
      std::printf(" [%s]\n", poolshim_buffer_error());                              \
    }                                                                               \
  } while (0)

// Runs N allocate+free pairs of one size on a warm device pool, for instruction counting under
// callgrind (pool_callgrind.sh runs it with two N and divides the difference, which cancels
// start-up and warm-up).
#include <cstdio>
#include <cstdlib>

#include "pool/device_pool.h"
#include "support/fake_segment_resource.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s BYTES PAIRS\n", argv[0]);
    return 2;
  }
  const std::size_t bytes = std::strtoull(argv[1], nullptr, 10);
  const long pairs = std::strtol(argv[2], nullptr, 10);
  poolshim::pool::fake_segment_resource resource;
  poolshim::pool::always_ready_fence fence;
  poolshim::pool::device_pool pool(resource, fence);
  std::uintptr_t a = 0;
  for (int i = 0; i < 2; ++i) {  // warm: segment, thread cache, bin
    if (pool.allocate(bytes, &a) != poolshim::pool::status::ok) return 1;
    pool.deallocate(a);
  }
  for (long i = 0; i < pairs; ++i) {
    if (pool.allocate(bytes, &a) != poolshim::pool::status::ok) return 1;
    pool.deallocate(a);
  }
  return 0;
}

// Nested inlining for the statistics test (stats_inline_test.sh): inner is inlined into middle,
// middle into outer, and outer calls middle from two lines with different sizes. The report must
// show inner, middle and outer each at its own line (as addr2line -i does) and keep the two calls
// of middle apart: two sites, 1 MiB and 2 MiB, not one of 3 MiB.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdio>

namespace {

[[gnu::always_inline]] inline void* inner(std::size_t bytes) {
  void* p = nullptr;
  cudaMalloc(&p, bytes);  // mark: inner's call
  return p;
}
[[gnu::always_inline]] inline void* middle(std::size_t bytes) {
  return inner(bytes);  // mark: middle's call
}
[[gnu::noipa]] int outer() {
  void* a = middle(std::size_t{1} << 20);  // mark: outer's first call
  void* b = middle(std::size_t{2} << 20);  // mark: outer's second call
  return a != nullptr && b != nullptr ? 0 : 1;
}

}  // namespace

int main() {
  if (outer() != 0) return 2;
  std::printf("done\n");
  return 0;
}

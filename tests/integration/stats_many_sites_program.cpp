// 100 call sites (SITE(N), one per line, each its own function) run by the main thread and by a
// second thread at once, for stats_many_sites_test.sh: more sites than a thread's shard holds (64),
// so shard entries collide and fold into the shared counters while both threads count. Site N makes
// N % 3 + 1 allocations of (N % 5 + 1) * 4 KiB per thread and frees them all except, for even N,
// the first. Prints "sites done" at the end.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <thread>

namespace {

void fail(const char* what) {
  std::fprintf(stderr, "stats_many_sites_program: %s failed\n", what);
  std::exit(1);
}

void release(int n, void** blocks) {
  for (int i = n % 2 == 0 ? 1 : 0; i < n % 3 + 1; ++i)
    if (cudaFree(blocks[i]) != cudaSuccess) fail("cudaFree");
}

#define SITE(N)                                                                                             \
  [[gnu::noinline]] void site_##N() {                                                                       \
    void* b[3] = {};                                                                                        \
    for (int i = 0; i < N % 3 + 1; ++i)                                                                     \
      if (cudaMalloc(&b[i], static_cast<std::size_t>(N % 5 + 1) * 4096) != cudaSuccess) fail("cudaMalloc"); \
    release(N, b);                                                                                          \
    asm volatile("" ::: "memory");                                                                          \
  }

SITE(0)
SITE(1)
SITE(2)
SITE(3)
SITE(4)
SITE(5)
SITE(6)
SITE(7)
SITE(8)
SITE(9)
SITE(10)
SITE(11)
SITE(12)
SITE(13)
SITE(14)
SITE(15)
SITE(16)
SITE(17)
SITE(18)
SITE(19)
SITE(20)
SITE(21)
SITE(22)
SITE(23)
SITE(24)
SITE(25)
SITE(26)
SITE(27)
SITE(28)
SITE(29)
SITE(30)
SITE(31)
SITE(32)
SITE(33)
SITE(34)
SITE(35)
SITE(36)
SITE(37)
SITE(38)
SITE(39)
SITE(40)
SITE(41)
SITE(42)
SITE(43)
SITE(44)
SITE(45)
SITE(46)
SITE(47)
SITE(48)
SITE(49)
SITE(50)
SITE(51)
SITE(52)
SITE(53)
SITE(54)
SITE(55)
SITE(56)
SITE(57)
SITE(58)
SITE(59)
SITE(60)
SITE(61)
SITE(62)
SITE(63)
SITE(64)
SITE(65)
SITE(66)
SITE(67)
SITE(68)
SITE(69)
SITE(70)
SITE(71)
SITE(72)
SITE(73)
SITE(74)
SITE(75)
SITE(76)
SITE(77)
SITE(78)
SITE(79)
SITE(80)
SITE(81)
SITE(82)
SITE(83)
SITE(84)
SITE(85)
SITE(86)
SITE(87)
SITE(88)
SITE(89)
SITE(90)
SITE(91)
SITE(92)
SITE(93)
SITE(94)
SITE(95)
SITE(96)
SITE(97)
SITE(98)
SITE(99)

void (*const k_sites[])() = {
    site_0,  site_1,  site_2,  site_3,  site_4,  site_5,  site_6,  site_7,  site_8,  site_9,  site_10, site_11, site_12,
    site_13, site_14, site_15, site_16, site_17, site_18, site_19, site_20, site_21, site_22, site_23, site_24, site_25,
    site_26, site_27, site_28, site_29, site_30, site_31, site_32, site_33, site_34, site_35, site_36, site_37, site_38,
    site_39, site_40, site_41, site_42, site_43, site_44, site_45, site_46, site_47, site_48, site_49, site_50, site_51,
    site_52, site_53, site_54, site_55, site_56, site_57, site_58, site_59, site_60, site_61, site_62, site_63, site_64,
    site_65, site_66, site_67, site_68, site_69, site_70, site_71, site_72, site_73, site_74, site_75, site_76, site_77,
    site_78, site_79, site_80, site_81, site_82, site_83, site_84, site_85, site_86, site_87, site_88, site_89, site_90,
    site_91, site_92, site_93, site_94, site_95, site_96, site_97, site_98, site_99};

void run_all() {
  for (auto* site : k_sites) site();
}

}  // namespace

int main() {
  if (cudaFree(nullptr) != cudaSuccess) fail("cudaFree(nullptr)");
  std::thread other(run_all);
  run_all();
  other.join();
  std::printf("sites done\n");
  return 0;
}

// The slab region (daemon/poolshimd/region.h): slabs are lent as memfds of the slab size, a slab
// that comes back is replaced by a fresh memfd (never lent again, zero by construction), and
// re-declared slabs are adopted or recognised.
#include "poolshimd/region.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace poolshim::daemon {
namespace {

constexpr std::size_t kSlab = std::size_t{2} << 20;

region_options small(std::size_t slabs) {
  region_options o;
  o.slab_bytes = kSlab;
  o.total_bytes = slabs * kSlab;
  o.fill_threads = 1;
  return o;
}

ino_t inode(int fd) {
  struct stat st {};
  EXPECT_EQ(fstat(fd, &st), 0);
  return st.st_ino;
}

TEST(SlabRegion, LendsEverySlabOnceThenRefuses) {
  slab_region r(small(3));
  int fds[3];
  for (int& fd : fds) {
    ASSERT_GE(r.lend(1, &fd), 0);
    struct stat st {};
    ASSERT_EQ(fstat(fd, &st), 0);
    EXPECT_EQ(static_cast<std::size_t>(st.st_size), kSlab);
  }
  EXPECT_NE(inode(fds[0]), inode(fds[1]));
  int extra = -1;
  EXPECT_EQ(r.lend(1, &extra), -1);
  EXPECT_EQ(r.figures().lent_bytes, 3 * kSlab);
  EXPECT_EQ(r.figures().free_bytes, 0u);
  for (int fd : fds) close(fd);
}

TEST(SlabRegion, SlabThatComesBackIsNeverLentAgain) {
  slab_region r(small(1));
  int fd = -1;
  const int i = r.lend(7, &fd);
  ASSERT_GE(i, 0);
  EXPECT_EQ(r.owner_of(i), 7u);
  auto* p = static_cast<unsigned char*>(mmap(nullptr, kSlab, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(p, MAP_FAILED);
  p[123] = 0xab;  // what client 7 wrote
  const ino_t first = inode(fd);
  r.give_back(i);
  EXPECT_EQ(r.figures().reclaimed, 1u);
  EXPECT_EQ(p[123], 0xab) << "the returned pages stay valid for whoever still maps them";
  int again = -1;
  ASSERT_GE(r.lend(8, &again), 0);
  EXPECT_NE(inode(again), first) << "a fresh memfd, not the one client 7 held";
  auto* q = static_cast<unsigned char*>(mmap(nullptr, kSlab, PROT_READ, MAP_SHARED, again, 0));
  ASSERT_NE(q, MAP_FAILED);
  EXPECT_EQ(q[123], 0) << "client 8 never sees client 7's bytes";
  munmap(p, kSlab);
  munmap(q, kSlab);
  close(fd);
  close(again);
}

TEST(SlabRegion, BackgroundFillersPrepareSlabsAhead) {
  slab_region r(small(4));
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (r.figures().ready_slabs < 4 && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(r.figures().ready_slabs, 4u);
}

TEST(SlabRegion, AdoptsARedeclaredSlabAndRecognisesItsOwn) {
  slab_region r(small(2));
  const int foreign = memfd_create("earlier-daemon", MFD_CLOEXEC);
  ASSERT_EQ(ftruncate(foreign, kSlab), 0);
  const int i = r.adopt(3, foreign, kSlab);
  ASSERT_GE(i, 0);
  EXPECT_EQ(r.find_lent(foreign), i);
  EXPECT_EQ(r.figures().lent_bytes, kSlab);
  const int wrong_size = memfd_create("wrong", MFD_CLOEXEC);
  ASSERT_EQ(ftruncate(wrong_size, kSlab / 2), 0);
  EXPECT_EQ(r.adopt(3, wrong_size, kSlab), -1) << "the size it claims must be its size";
  int fd = -1;
  ASSERT_GE(r.lend(4, &fd), 0);
  EXPECT_EQ(r.adopt(3, wrong_size, kSlab / 2), -1);
  const int another = memfd_create("another", MFD_CLOEXEC);
  ASSERT_EQ(ftruncate(another, kSlab), 0);
  EXPECT_EQ(r.adopt(3, another, kSlab), -1) << "nothing left to replace: the region is full";
  for (int f : {foreign, wrong_size, fd, another}) close(f);
}

TEST(SlabRegion, BadGeometryIsRejected) {
  region_options o = small(1);
  o.slab_bytes = 3 << 20;
  EXPECT_THROW(slab_region{o}, std::invalid_argument);
  o = small(1);
  o.total_bytes = kSlab / 2;
  EXPECT_THROW(slab_region{o}, std::invalid_argument);
}

}  // namespace
}  // namespace poolshim::daemon

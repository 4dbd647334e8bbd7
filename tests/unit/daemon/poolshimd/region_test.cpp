// The slab region (daemon/poolshimd/region.h): slabs are lent as memfds of the slab size, a slab
// that comes back is replaced by a fresh memfd (never lent again, zero by construction), and
// re-declared slabs are adopted or recognised.
#include "poolshimd/region.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>
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

// A slab named buffers give back stays spare (free, not refilled) for the hold, is taken first by
// the next reserve (no refill churn), and is filled again once the hold has passed.
TEST(SlabRegion, ReleasedSlabsAreSpareThenFilledAgain) {
  slab_region r(small(2));
  auto wait_ready = [&](std::size_t n, std::chrono::milliseconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (r.figures().ready_slabs < n && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return r.figures().ready_slabs;
  };
  ASSERT_EQ(wait_ready(2, std::chrono::seconds(5)), 2u);
  ASSERT_TRUE(r.reserve(1));
  EXPECT_EQ(r.figures().ready_slabs, 1u);
  r.release(1);
  EXPECT_EQ(r.figures().named_bytes, 0u) << "a spare slab is free";
  EXPECT_EQ(r.figures().free_bytes, r.figures().region_bytes);
  std::this_thread::sleep_for(slab_region::k_spare_hold / 4);
  EXPECT_EQ(r.figures().ready_slabs, 1u) << "not filled again within the hold";
  ASSERT_TRUE(r.reserve(1));
  EXPECT_EQ(r.figures().ready_slabs, 1u) << "the spare was taken, not the ready slab";
  // The fillers idle (nothing to close, nothing empty) when the slab comes back: the release must
  // wake them all the same.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  r.release(1);
  EXPECT_EQ(wait_ready(2, slab_region::k_spare_hold * 4), 2u) << "filled again after the hold";
}

// A memfd of `bytes`, sealed as the region seals its slabs (or not).
int memfd_of(const char* name, std::size_t bytes, bool sealed = true) {
  const int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0 || ftruncate(fd, static_cast<off_t>(bytes)) != 0) return -1;
  if (sealed && fcntl(fd, F_ADD_SEALS, slab_region::k_seals) != 0) return -1;
  return fd;
}

TEST(SlabRegion, AdoptsARedeclaredSlabAndRecognisesItsOwn) {
  slab_region r(small(2));
  const int foreign = memfd_of("earlier-daemon", kSlab);
  ASSERT_GE(foreign, 0);
  const int i = r.adopt(3, foreign, kSlab, 42);
  ASSERT_GE(i, 0);
  EXPECT_EQ(r.find_lent(foreign), i);
  EXPECT_TRUE(r.serial_lent(42));
  EXPECT_EQ(r.figures().lent_bytes, kSlab);
  const int wrong_size = memfd_of("wrong", kSlab / 2);
  EXPECT_EQ(r.adopt(3, wrong_size, kSlab, 43), -1) << "the size it claims must be its size";
  const int unsealed = memfd_of("unsealed", kSlab, false);
  EXPECT_EQ(r.adopt(3, unsealed, kSlab, 44), -1) << "a slab that could shrink or grow";
  int fd = -1;
  ASSERT_GE(r.lend(4, &fd), 0);
  EXPECT_EQ(r.adopt(3, wrong_size, kSlab / 2, 45), -1);
  const int another = memfd_of("another", kSlab);
  EXPECT_EQ(r.adopt(3, another, kSlab, 46), -1) << "nothing left to replace: the region is full";
  for (int f : {foreign, wrong_size, unsealed, fd, another}) close(f);
}

TEST(SlabRegion, LentSlabIsSealedAndNamedWithItsIdentity) {
  region_options o = small(1);
  o.key = identity_key{1, 2};
  slab_region r(o);
  int fd = -1;
  const int i = r.lend(5, &fd);
  ASSERT_GE(i, 0);
  EXPECT_EQ(fcntl(fd, F_GET_SEALS) & slab_region::k_seals, slab_region::k_seals);
  EXPECT_NE(ftruncate(fd, kSlab / 2), 0) << "a client cannot shrink a slab";
  EXPECT_NE(ftruncate(fd, 2 * kSlab), 0) << "nor grow it";
  std::uint64_t serial = 0;
  ASSERT_TRUE(slab_serial(o.key, fd, &serial));
  EXPECT_TRUE(r.serial_lent(serial));
  EXPECT_FALSE(slab_serial(identity_key{1, 3}, fd, &serial)) << "another key made no such name";
  const slab_id id = r.give_back(i);
  EXPECT_EQ(id.serial, serial);
  EXPECT_FALSE(r.serial_lent(serial));
  close(fd);
}

TEST(SlabIdentity, SipHashMatchesTheReferenceVectorAndNamesCannotBeForged) {
  // The SipHash paper's test key 00..0f and message 00..07: 0x93f5f5799a932462.
  const identity_key k{0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};
  EXPECT_EQ(siphash24(k, 0x0706050403020100ull), 0x93f5f5799a932462ull);
  const std::string name = slab_name(k, 0x1234);
  const int good = memfd_create(name.c_str(), MFD_CLOEXEC);
  std::uint64_t serial = 0;
  ASSERT_TRUE(slab_serial(k, good, &serial));
  EXPECT_EQ(serial, 0x1234u);
  std::string forged = name;
  forged.back() = forged.back() == '0' ? '1' : '0';  // one digit of the MAC changed
  const int bad = memfd_create(forged.c_str(), MFD_CLOEXEC);
  EXPECT_FALSE(slab_serial(k, bad, &serial));
  const int longer = memfd_create((name + "x").c_str(), MFD_CLOEXEC);
  EXPECT_FALSE(slab_serial(k, longer, &serial));
  for (int f : {good, bad, longer}) close(f);
}

TEST(SlabIdentity, KeyFileIsMadeOnceKeptAndNotTrustedWhenLoose) {
  char tmpl[] = "/tmp/poolshimd-key-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/poolshimd.key";
  std::string why;
  const identity_key a = load_identity_key(path, &why);
  EXPECT_TRUE(why.empty()) << why;
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const identity_key b = load_identity_key(path, &why);
  EXPECT_EQ(a.k0, b.k0) << "a restarted daemon has its predecessor's key";
  EXPECT_EQ(a.k1, b.k1);
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  const identity_key c = load_identity_key(path, &why);
  EXPECT_FALSE(why.empty()) << "a key others can read is not trusted";
  EXPECT_FALSE(c.k0 == a.k0 && c.k1 == a.k1);
  unlink(path.c_str());
  rmdir(tmpl);
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

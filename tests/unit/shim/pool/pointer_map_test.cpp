// pointer_map: lookups of segments packed closer than 2 MiB (the driver aligns allocations below
// 2 MiB to less), block starts versus interior pointers, erase leaving neighbours findable, and
// addresses beyond the 48-bit range.
#include "pool/pointer_map.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace poolshim::pool {
namespace pointer_map_test {  // named, not anonymous: a unity build puts several test files in one unit

constexpr std::uintptr_t kBase = (std::uintptr_t{1} << 40) + 4096;  // not 2 MiB-aligned

struct packed_segments {
  explicit packed_segments(std::size_t n, std::size_t size) {
    for (std::size_t i = 0; i < n; ++i) {
      auto s = std::make_unique<segment_info>();
      s->seg = segment{kBase + i * size, size, i};
      s->table = &s->single;
      s->table_len = 1;
      s->single.store(reinterpret_cast<block*>(0x1000 + i));  // a marker, never dereferenced
      infos.push_back(std::move(s));
    }
  }
  std::vector<std::unique_ptr<segment_info>> infos;
};

TEST(PointerMap, FindsEverySegmentWhenSeveralShareA2MiBChunk) {
  const std::size_t size = pointer_map::kMinSegment + 512;  // the smallest the pools insert
  packed_segments p(40, size);
  pointer_map map;
  for (auto& s : p.infos) ASSERT_TRUE(map.insert(s.get()));
  for (auto& s : p.infos) {
    EXPECT_EQ(map.find_segment(s->seg.base), s.get());
    EXPECT_EQ(map.find_segment(s->seg.base + s->seg.size - 1), s.get());
    EXPECT_EQ(map.find_block(s->seg.base), s->single.load());
    EXPECT_EQ(map.find_block(s->seg.base + 512), nullptr) << "interior of a one-block segment";
    EXPECT_EQ(map.find_block(s->seg.base + 1), nullptr);
  }
  map.erase(p.infos[7].get());
  EXPECT_EQ(map.find_segment(p.infos[7]->seg.base), nullptr);
  EXPECT_EQ(map.find_segment(p.infos[6]->seg.base + size - 1), p.infos[6].get());
  EXPECT_EQ(map.find_segment(p.infos[8]->seg.base), p.infos[8].get());
  EXPECT_EQ(map.find_segment(kBase - 1), nullptr);
  EXPECT_EQ(map.find_segment(kBase + 40 * size), nullptr);
}

TEST(PointerMap, RejectsAddressesBeyond48BitsAndNeverFaultsOnThem) {
  pointer_map map;
  segment_info s;
  s.seg = segment{std::uintptr_t{1} << 50, 4 << 20, 0};
  EXPECT_FALSE(map.insert(&s));
  EXPECT_EQ(map.find_segment(std::uintptr_t{1} << 50), nullptr);
  EXPECT_EQ(map.find_block(~std::uintptr_t{0}), nullptr);
  EXPECT_EQ(map.find_block(0), nullptr);
}

TEST(PointerMap, LargeSegmentsAreFoundFromEveryChunkTheyCover) {
  packed_segments p(3, (std::size_t{64} << 20) + 512);
  pointer_map map;
  for (auto& s : p.infos) ASSERT_TRUE(map.insert(s.get()));
  for (auto& s : p.infos) {
    for (std::uintptr_t a = s->seg.base; a < s->seg.base + s->seg.size; a += std::size_t{1} << 20) {
      ASSERT_EQ(map.find_segment(a), s.get());
    }
  }
}

}  // namespace pointer_map_test
}  // namespace poolshim::pool

// best_fit_allocator on synthetic segments (it never touches the memory it manages): exact splits,
// O(1) coalescing back to one block, best fit, no merging across segments, table entries at starts.
#include "pool/best_fit_allocator.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace poolshim::pool {
namespace {

constexpr std::size_t kSeg = std::size_t{2} << 20;
constexpr std::uintptr_t kBase = std::uintptr_t{1} << 40;

class BestFitAllocator : public ::testing::Test {
 protected:
  segment_info* add(std::uintptr_t base, std::size_t size = kSeg) {
    auto s = std::make_unique<segment_info>();
    s->seg = segment{base, size, 0};
    tables_.push_back(std::make_unique<std::atomic<block*>[]>(a_.table_len(size)));
    s->table = tables_.back().get();
    s->table_len = a_.table_len(size);
    EXPECT_TRUE(a_.add_segment(s.get()));
    infos_.push_back(std::move(s));
    return infos_.back().get();
  }
  std::uintptr_t take(std::size_t bytes) {
    block* b = a_.allocate(bytes);
    EXPECT_NE(b, nullptr);
    if (b == nullptr) return 0;
    EXPECT_EQ(b->size, bytes);
    b->state.store(block_state::small_allocated);
    return b->addr;
  }
  block* at(const segment_info* s, std::uintptr_t addr) { return s->table[(addr - s->seg.base) >> 9].load(); }
  void give(const segment_info* s, std::uintptr_t addr) { a_.deallocate(at(s, addr)); }

  block_arena arena_;
  best_fit_allocator a_{arena_};
  std::vector<std::unique_ptr<segment_info>> infos_;
  std::vector<std::unique_ptr<std::atomic<block*>[]>> tables_;
};

TEST_F(BestFitAllocator, SplitsExactlyAndCoalescesBackToOneBlock) {
  segment_info* s = add(kBase);
  const std::uintptr_t a = take(512), b = take(1024), c = take(4096);
  EXPECT_EQ(a, kBase);
  EXPECT_EQ(b, kBase + 512);
  EXPECT_EQ(c, kBase + 1536);
  EXPECT_EQ(a_.free_bytes(), kSeg - 5632);
  EXPECT_EQ(a_.free_blocks(), 1u);
  EXPECT_EQ(s->used, 5632u);
  give(s, b);
  EXPECT_EQ(a_.free_blocks(), 2u);
  give(s, a);  // merges with b's hole
  EXPECT_EQ(a_.free_blocks(), 2u);
  EXPECT_EQ(at(s, a)->size, 1536u);
  EXPECT_EQ(at(s, b), nullptr) << "a merged block keeps only its start in the table";
  give(s, c);  // merges with both neighbours
  EXPECT_EQ(a_.free_blocks(), 1u);
  EXPECT_EQ(a_.free_bytes(), kSeg);
  EXPECT_TRUE(best_fit_allocator::idle(s));
  EXPECT_EQ(at(s, kBase)->size, kSeg);
}

TEST_F(BestFitAllocator, ChoosesTheSmallestFreeBlockThatFits) {
  segment_info* s = add(kBase);
  std::vector<std::uintptr_t> v;
  for (std::size_t bytes : {4096, 512, 2048, 512, 8192, 512, 3072, 512}) v.push_back(take(bytes));
  give(s, v[0]);  // hole of 4096
  give(s, v[2]);  // hole of 2048
  give(s, v[4]);  // hole of 8192
  give(s, v[6]);  // hole of 3072
  EXPECT_EQ(take(2048), v[2]);
  EXPECT_EQ(take(2560), v[6]) << "3072 is the best fit for 2560";
  EXPECT_EQ(take(4096), v[0]);
  EXPECT_EQ(take(512), v[6] + 2560) << "the 512 B rest of the 3072 hole";
  EXPECT_EQ(take(1024), v[4]) << "only the 8192 hole is left below the tail";
  EXPECT_EQ(at(s, v[4] + 1024)->size, 7168u);
}

TEST_F(BestFitAllocator, NeverMergesAcrossSegments) {
  segment_info* s1 = add(kBase);
  segment_info* s2 = add(kBase + kSeg);  // adjacent in address space
  const std::uintptr_t a = take(kSeg);
  const std::uintptr_t b = take(kSeg);
  EXPECT_EQ(a_.allocate(512), nullptr);
  give(a == kBase ? s1 : s2, a);
  give(b == kBase ? s1 : s2, b);
  EXPECT_EQ(a_.free_blocks(), 2u);
  EXPECT_EQ(a_.allocate(kSeg + 512), nullptr) << "a block never spans two segments";
  a_.remove_segment(s1);
  EXPECT_EQ(a_.free_blocks(), 1u);
  EXPECT_EQ(s1->table[0].load(), nullptr);
}

TEST_F(BestFitAllocator, WorksOverSegmentsOfAnySize) {
  segment_info* s = add(kBase, 96 << 20);  // a pinned-host slab, say
  const std::uintptr_t big = take(40 << 20);
  const std::uintptr_t small = take(512);
  EXPECT_EQ(small, big + (40 << 20));
  give(s, big);
  give(s, small);
  EXPECT_TRUE(best_fit_allocator::idle(s));
  EXPECT_EQ(a_.free_blocks(), 1u);
}

}  // namespace
}  // namespace poolshim::pool

// The bottom-up view of poolshim-stats (daemon/stats/bottom_up.h) on hand-made sites: grouped by
// the allocating function whatever its line, callers below with their lines, weights summed and
// ordered, a cut stack ending in its mark, the text's layout.
#include "stats/bottom_up.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace poolshim::stats_tool {
namespace {

frame fr(std::string function, std::string file, int line) {
  frame f;
  f.function = std::move(function);
  f.file = std::move(file);
  f.line = line;
  f.module = "/app";
  return f;
}

site make(std::uint32_t id, std::int64_t at_peak, std::uint64_t allocs, std::vector<frame> frames) {
  site s;
  s.id = id;
  s.at_process_peak = at_peak;
  s.counters.allocs = allocs;
  s.counters.bytes_allocated = allocs * 100;
  s.frames = std::move(frames);
  return s;
}

std::string same(const std::string& s) { return s; }

TEST(BottomUp, GroupsByAllocatingFunctionWithCallersBelow) {
  const std::vector<site> sites = {
      make(1, 300, 3, {fr("helper()", "/s/a.cpp", 10), fr("one()", "/s/a.cpp", 20), fr("main", "/s/m.cpp", 5)}),
      make(2, 500, 1, {fr("helper()", "/s/a.cpp", 11), fr("two()", "/s/a.cpp", 30), fr("main", "/s/m.cpp", 6)}),
      make(3, 700, 2, {fr("big()", "/s/b.cpp", 4), fr("main", "/s/m.cpp", 7)}),
  };
  const std::vector<bottom_up_node> roots = bottom_up(sites, "peak");
  ASSERT_EQ(roots.size(), 2u);
  EXPECT_EQ(roots[0].name, "helper()");  // 800 together, more than big()'s 700
  EXPECT_EQ(roots[0].value, 800);
  EXPECT_EQ(roots[0].allocs, 4u);
  EXPECT_EQ(roots[0].sites, 2u);
  EXPECT_EQ(roots[0].places, (std::vector<std::string>{"a.cpp:11", "a.cpp:10"}));
  ASSERT_EQ(roots[0].callers.size(), 2u);
  EXPECT_EQ(roots[0].callers[0].name, "two() (a.cpp:30)");
  EXPECT_EQ(roots[0].callers[0].value, 500);
  ASSERT_EQ(roots[0].callers[0].callers.size(), 1u);
  EXPECT_EQ(roots[0].callers[0].callers[0].name, "main (m.cpp:6)");
  EXPECT_EQ(roots[0].callers[1].name, "one() (a.cpp:20)");
  EXPECT_EQ(roots[1].name, "big()");
  // Weighted by allocations instead, big() (2) comes after helper() (4) too, and by bytes
  // allocated likewise; the order follows the weight asked for.
  EXPECT_EQ(bottom_up(sites, "count")[0].value, 4);
}

TEST(BottomUp, ACutStackEndsWithItsMark) {
  site s = make(1, 10, 1, {fr("f()", "/s/a.cpp", 1), fr("g()", "/s/a.cpp", 2)});
  s.cut = true;
  s.whole_depth = 40;
  const std::vector<bottom_up_node> roots = bottom_up({s}, "peak", 32);
  ASSERT_EQ(roots.size(), 1u);
  ASSERT_EQ(roots[0].callers.size(), 1u);
  ASSERT_EQ(roots[0].callers[0].callers.size(), 1u);
  EXPECT_NE(roots[0].callers[0].callers[0].name.find("stack cut at 32 frames"), std::string::npos);
}

TEST(BottomUp, TextShowsTopRootsWithIndentedCallers) {
  const std::vector<site> sites = {
      make(1, 2048, 1, {fr("helper()", "/s/a.cpp", 10), fr("one()", "/s/a.cpp", 20), fr("main", "/s/m.cpp", 5)}),
      make(2, 1024, 1, {fr("other()", "/s/a.cpp", 40), fr("main", "/s/m.cpp", 8)}),
  };
  const std::string text = bottom_up_text(bottom_up(sites, "peak"), 1, true, same);
  EXPECT_NE(text.find("#1"), std::string::npos) << text;
  EXPECT_NE(text.find("helper() (a.cpp:10), 1 allocation\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("other()"), std::string::npos) << "--top 1 shows one root:\n" << text;
  const auto one = text.find("one() (a.cpp:20)"), main = text.find("main (m.cpp:5)");
  ASSERT_NE(one, std::string::npos);
  ASSERT_NE(main, std::string::npos);
  EXPECT_LT(one, main);
  // Each level is indented two columns further than its callee.
  const auto line_start = [&](std::size_t at) { return text.rfind('\n', at) + 1; };
  const auto indent = [&](std::size_t at) { return text.find_first_not_of(' ', line_start(at)) - line_start(at); };
  EXPECT_EQ(indent(main), indent(one) + 2) << text;
}

TEST(BottomUp, JsonHasTheTreeDepthFirstWithTheTextsFigures) {
  const std::vector<site> sites = {
      make(1, 300, 3, {fr("helper()", "/s/a.cpp", 10), fr("one()", "/s/a.cpp", 20), fr("main", "/s/m.cpp", 5)}),
      make(2, 500, 1, {fr("helper()", "/s/a.cpp", 11), fr("two()", "/s/a.cpp", 30), fr("main", "/s/m.cpp", 6)}),
      make(3, 700, 2, {fr("big()", "/s/b.cpp", 4), fr("main", "/s/m.cpp", 7)}),
  };
  const std::string json = bottom_up_json(bottom_up(sites, "peak"), 0, "peak");
  EXPECT_EQ(json,
            "{\"weight\":\"peak\",\"functions\":["
            "{\"function\":\"helper()\",\"places\":[\"a.cpp:11\",\"a.cpp:10\"],\"value\":800,\"allocs\":4,\"sites\":2,"
            "\"callers\":[{\"depth\":1,\"frame\":\"two() (a.cpp:30)\",\"value\":500,\"allocs\":1,\"sites\":1},"
            "{\"depth\":2,\"frame\":\"main (m.cpp:6)\",\"value\":500,\"allocs\":1,\"sites\":1},"
            "{\"depth\":1,\"frame\":\"one() (a.cpp:20)\",\"value\":300,\"allocs\":3,\"sites\":1},"
            "{\"depth\":2,\"frame\":\"main (m.cpp:5)\",\"value\":300,\"allocs\":3,\"sites\":1}]},"
            "{\"function\":\"big()\",\"places\":[\"b.cpp:4\"],\"value\":700,\"allocs\":2,\"sites\":1,"
            "\"callers\":[{\"depth\":1,\"frame\":\"main (m.cpp:7)\",\"value\":700,\"allocs\":2,\"sites\":1}]}]}");
  // --top 1: the first root only; a name is a JSON string, whatever it holds.
  EXPECT_EQ(bottom_up_json(bottom_up(sites, "count"), 1, "count").find("big()"), std::string::npos);
  const std::string odd = bottom_up_json(bottom_up({make(4, 1, 1, {fr("f\"\n", "/s/a.cpp", 1)})}, "peak"), 0, "peak");
  EXPECT_NE(odd.find("\"function\":\"f\\\"\\u000a\""), std::string::npos) << odd;
}

}  // namespace
}  // namespace poolshim::stats_tool

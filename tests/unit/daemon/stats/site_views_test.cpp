// How poolshim-stats names call sites and draws them over time, on hand-made sites and timelines:
// no two labels alike (two sites in one function by line, one helper by its caller, stacks that
// differ only inside the call site by their innermost frame); the lines of the sites with the
// largest own peaks from the timeline's samples (merged stacks added up, unknown where the shim did
// not follow them) in JSON, text and the HTML chart; and temporary allocations as a weight of the
// HTML page's flame graph.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "stats/html_report.h"
#include "stats/site_text.h"
#include "stats/timeline.h"

namespace poolshim::stats_tool {
namespace site_views_test {  // named, not anonymous: a unity build puts several test files in one unit

frame fr(std::string function, std::string file, int line, std::string module = "/app") {
  frame f;
  f.function = std::move(function);
  f.file = std::move(file);
  f.line = line;
  f.module = std::move(module);
  return f;
}

site make(std::uint32_t id, std::int64_t own_peak, std::vector<frame> frames) {
  site s;
  s.id = id;
  s.counters.own_peak = own_peak;
  s.counters.allocs = 1;
  s.frames = std::move(frames);
  return s;
}

TEST(SiteLabels, NoTwoSitesReadAlike) {
  const std::vector<site> sites = {
      // Two sites in one function: the call site's line tells them apart.
      make(1, 0,
           {fr("cudaMalloc", "", 0, "/lib/libcudart.so.13"), fr("two()", "/s/a.cpp", 10), fr("main", "/s/m.cpp", 3)}),
      make(2, 0,
           {fr("cudaMalloc", "", 0, "/lib/libcudart.so.13"), fr("two()", "/s/a.cpp", 11), fr("main", "/s/m.cpp", 3)}),
      // One helper called from two places: its caller tells them apart.
      make(3, 0, {fr("helper()", "/s/a.cpp", 20), fr("one()", "/s/a.cpp", 30), fr("main", "/s/m.cpp", 4)}),
      make(4, 0, {fr("helper()", "/s/a.cpp", 20), fr("other()", "/s/a.cpp", 40), fr("main", "/s/m.cpp", 5)}),
      // The same call site through two runtime entry points (--all-frames shows them): the innermost frame.
      make(5, 0, {fr("cudaMalloc", "", 0, "/lib/libcudart.so.13"), fr("same()", "/s/a.cpp", 50)}),
      make(6, 0, {fr("cudaMallocManaged", "", 0, "/lib/libcudart.so.13"), fr("same()", "/s/a.cpp", 50)}),
      make(0, 0, {}),
  };
  const std::vector<std::string> labels = site_labels(sites);
  ASSERT_EQ(labels.size(), sites.size());
  EXPECT_EQ(labels[0], "two() (a.cpp:10)");
  EXPECT_EQ(labels[1], "two() (a.cpp:11)");
  EXPECT_EQ(labels[2], "helper() (a.cpp:20) < one() (a.cpp:30)");
  EXPECT_EQ(labels[3], "helper() (a.cpp:20) < other() (a.cpp:40)");
  EXPECT_EQ(labels[4], "same() (a.cpp:50) via cudaMalloc (libcudart.so.13+0x0)");
  EXPECT_EQ(labels[5], "same() (a.cpp:50) via cudaMallocManaged (libcudart.so.13+0x0)");
  EXPECT_EQ(labels[6], "[untracked stacks]");
  for (std::size_t i = 0; i < labels.size(); ++i)
    for (std::size_t j = i + 1; j < labels.size(); ++j) EXPECT_NE(labels[i], labels[j]) << i << " and " << j;
  // The spans say which frames: the call site (past the runtime's frame) and, for the helper, one caller.
  const std::vector<label_span> spans = label_spans(sites);
  EXPECT_EQ(spans[0].first, 1u);
  EXPECT_EQ(spans[0].count, 1u);
  EXPECT_EQ(spans[2].count, 2u);
  EXPECT_EQ(spans[0].via, label_span::none);
  EXPECT_EQ(spans[4].first, 1u);
  EXPECT_EQ(spans[4].count, 1u);
  EXPECT_EQ(spans[4].via, 0u);
  EXPECT_EQ(spans[6].count, 0u);
}

TEST(SiteLabels, TheInnerFrameNamedIsTheOneClosestToTheCallSiteThatDiffers) {
  // Both through one internal allocator; they part at the API entry point, one frame further in.
  const std::vector<site> sites = {
      make(1, 0,
           {fr("alloc()", "/rt/m.cpp", 9, "/lib/libcudart.so.13"),
            fr("cudaMalloc", "/rt/a.cpp", 1, "/lib/libcudart.so.13"), fr("f()", "/s/a.cpp", 5)}),
      make(2, 0,
           {fr("alloc()", "/rt/m.cpp", 9, "/lib/libcudart.so.13"),
            fr("cudaMallocHost", "/rt/a.cpp", 2, "/lib/libcudart.so.13"), fr("f()", "/s/a.cpp", 5)}),
  };
  const std::vector<std::string> labels = site_labels(sites);
  EXPECT_EQ(labels[0], "f() (a.cpp:5) via cudaMalloc (a.cpp:1)");
  EXPECT_EQ(labels[1], "f() (a.cpp:5) via cudaMallocHost (a.cpp:2)");
}

TEST(SiteLabels, ACutStackIsNotTheWholeOneWithTheSameFrames) {
  site whole = make(1, 0, {fr("f()", "/s/a.cpp", 1), fr("g()", "/s/a.cpp", 2)});
  site cut = whole;
  cut.id = 2;
  cut.cut = true;
  const std::vector<std::string> labels = site_labels({whole, cut});
  EXPECT_NE(labels[0], labels[1]);
  EXPECT_NE(labels[1].find("[stack cut]"), std::string::npos) << labels[1];
}

// A timeline of `n` samples 10 ms apart; each sample's followed stacks from `sites(i)`.
template <class Sites>
timeline series(std::size_t n, Sites sites) {
  timeline t;
  t.interval_ns = 10'000'000;
  for (std::size_t i = 0; i < n; ++i) {
    timeline::sample x;
    x.ns = 1'000'000'000 + i * 10'000'000;
    x.total = 1000;
    x.sites = sites(i);
    t.samples.push_back(x);
  }
  return t;
}

TEST(SiteSeries, TheLargestOwnPeaksFromTheSamplesMergedStacksAddedUp) {
  std::vector<site> sites = {
      make(1, 100, {fr("small()", "/s/a.cpp", 1)}), make(2, 900, {fr("big()", "/s/a.cpp", 2)}),
      make(3, 500, {fr("mid()", "/s/a.cpp", 3)}),
      make(4, 700, {fr("never()", "/s/a.cpp", 4)}),  // never followed: no line
  };
  sites[2].merged = {7};  // stack 7 folded into site 3
  const timeline t = series(4, [](std::size_t i) {
    std::vector<timeline::site_live> v = {{2, 100 * static_cast<std::int64_t>(i)}, {1, 5}};
    if (i >= 2) v.push_back({3, 40});  // followed from the third sample on
    if (i >= 1) v.push_back({7, 2});
    return v;
  });
  const site_lines lines = site_lines_of(t, sites, 2);
  ASSERT_EQ(lines.sites.size(), 2u) << "two asked for";
  ASSERT_EQ(lines.live.size(), 2u);
  EXPECT_EQ(lines.sites[0].id, 2u) << "big() first: the largest own peak";
  EXPECT_EQ(lines.sites[1].id, 3u) << "then mid(): never() has no line and is passed over";
  EXPECT_EQ(lines.live[0], (std::vector<std::optional<std::int64_t>>{0, 100, 200, 300}));
  // mid() stands for stacks 3 and 7: unknown while neither was followed, then whatever was.
  EXPECT_EQ(lines.live[1], (std::vector<std::optional<std::int64_t>>{std::nullopt, 2, 42, 42}));
  EXPECT_EQ(site_lines_of(t, sites, 5).sites.size(), 3u) << "small() too, never never()";

  const std::string json = timeline_json(t, lines);
  EXPECT_NE(
      json.find("\"sites\":[{\"id\":2,\"call_site\":\"big() (a.cpp:2)\",\"own_peak\":900,\"live\":[0,100,200,300]}"),
      std::string::npos)
      << json;
  EXPECT_NE(json.find("\"live\":[null,2,42,42]"), std::string::npos) << json;
  EXPECT_NE(timeline_json(t).find("\"sites\":[]"), std::string::npos) << "no sites: an empty list";
}

TEST(SiteSeries, TextLinesShareTheProcessLinesColumnsAndSayWhenTheyWereFollowed) {
  const std::vector<site> sites = {make(1, 900, {fr("big()", "/s/a.cpp", 2)}),
                                   make(2, 50, {fr("late()", "/s/b.cpp", 9)})};
  const timeline t = series(10, [](std::size_t i) {
    std::vector<timeline::site_live> v = {{1, 900}};
    if (i >= 5) v.push_back({2, 50});
    return v;
  });
  const std::vector<std::string> text = timeline_lines(t, site_lines_of(t, sites, 5), 20);
  ASSERT_EQ(text.size(), 3u);
  EXPECT_EQ(text[0], timeline_text(t, 20));
  const std::size_t at = text[0].find('[');
  for (std::size_t i = 1; i < 3; ++i) {
    EXPECT_EQ(text[i].find('['), at) << "the sparklines in one column:\n" << text[0] << "\n" << text[i];
    EXPECT_EQ(text[i].find("site #" + std::to_string(i) + ": "), at - 9) << text[i];
  }
  EXPECT_NE(text[1].find("] max 900 B  big() (a.cpp:2)"), std::string::npos) << text[1];
  EXPECT_EQ(text[1].find("followed"), std::string::npos) << "followed all along: " << text[1];
  EXPECT_NE(text[2].find("late() (b.cpp:9) (followed from +0.05 s)"), std::string::npos) << text[2];
  // Its sparkline is blank before it was followed, full after.
  const std::string spark = text[2].substr(at + 1, 20);
  EXPECT_EQ(spark.substr(0, 9), std::string(9, ' ')) << spark;
  EXPECT_EQ(spark.substr(11), std::string(9, '@')) << spark;
}

TEST(SiteSeries, TheChartDrawsEachSiteDashedWithGapsWhereItWasNotFollowed) {
  const std::vector<site> sites = {make(1, 900, {fr("big()", "/s/a.cpp", 2)})};
  const timeline t = series(6, [](std::size_t i) {
    return i == 2 || i == 3 ? std::vector<timeline::site_live>{} : std::vector<timeline::site_live>{{1, 500}};
  });
  const std::string html = timeline_html(t, 0, site_lines_of(t, sites, 5));
  const auto at = html.find("<path class=\"site-line\" data-site-id=\"1\" d=\"");
  ASSERT_NE(at, std::string::npos) << html;
  const std::size_t from = html.find(" d=\"", at) + 4;
  const std::string d = html.substr(from, html.find('"', from) - from);
  EXPECT_EQ(std::count(d.begin(), d.end(), 'M'), 2) << "two runs, a gap between: " << d;
  EXPECT_NE(html.find("stroke-dasharray"), std::string::npos);
  EXPECT_NE(html.find("site #1: big() (a.cpp:2)"), std::string::npos) << html;
  EXPECT_EQ(timeline_html(t, 0).find("site-line"), std::string::npos) << "no sites given: none drawn";
}

TEST(HtmlPage, TemporaryAllocationsAreAFlameGraphWeight) {
  html_input in;
  in.state = "exited";
  site s = make(1, 10, {fr("tmp()", "/s/a.cpp", 7)});
  s.counters.temporary = 37;
  in.sites = {s};
  in.sort = "temporary";
  char* text = nullptr;
  std::size_t size = 0;
  std::FILE* out = open_memstream(&text, &size);
  ASSERT_NE(out, nullptr);
  ASSERT_TRUE(write_html(out, in));
  std::fclose(out);
  const std::string page(text, size);
  std::free(text);
  EXPECT_NE(page.find("name=\"metric\" value=\"temporary\""), std::string::npos) << "a weight to choose";
  EXPECT_NE(page.find("\"temporary\":37"), std::string::npos) << "each site's weight in the page's data";
  EXPECT_NE(page.find("\"sort\":\"temporary\""), std::string::npos) << "the graph opens on it with --sort temporary";
  EXPECT_NE(page.find("temporary: 'temporary allocations'"), std::string::npos) << "the script knows its name";
}

}  // namespace site_views_test
}  // namespace poolshim::stats_tool

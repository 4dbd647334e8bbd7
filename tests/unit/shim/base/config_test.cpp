// Tests of the configuration table reader (shim/config.cpp): defaults, accepted spellings, and
// that a bad value keeps its default and is reported exactly once.
#include "poolshim/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>
#include <vector>

namespace {

std::vector<std::string> g_issues;
void record(const poolshim::config_issue& i) { g_issues.push_back(std::string(i.env) + "=" + i.value); }

class Config : public ::testing::Test {
 protected:
  void SetUp() override {
    g_issues.clear();
    for (const char* v : {"POOLSHIM_MODE", "POOLSHIM_FREE_SYNC", "POOLSHIM_LOG_LEVEL", "POOLSHIM_SUMMARY",
                          "POOLSHIM_SMALL_LIMIT", "POOLSHIM_THREAD_CACHE", "POOLSHIM_DEVICE_CACHE_LIMIT",
                          "POOLSHIM_SOCKET"})
      unsetenv(v);
  }
};

TEST_F(Config, DefaultsApplyWhenNothingIsSet) {
  poolshim::config c = poolshim::read_config(record);
  EXPECT_EQ(c.mode, poolshim::run_mode::pool);
  EXPECT_EQ(c.free_sync, poolshim::free_sync_mode::device);
  EXPECT_EQ(c.log_level, 3);
  EXPECT_FALSE(c.summary);
  EXPECT_EQ(c.small_limit, std::size_t{1} << 20);
  EXPECT_TRUE(g_issues.empty());
}

TEST_F(Config, AcceptedValuesAreParsed) {
  setenv("POOLSHIM_MODE", "observe", 1);
  setenv("POOLSHIM_FREE_SYNC", "fence", 1);
  setenv("POOLSHIM_LOG_LEVEL", "debug", 1);
  setenv("POOLSHIM_SUMMARY", "1", 1);
  setenv("POOLSHIM_SMALL_LIMIT", "512KiB", 1);
  setenv("POOLSHIM_DEVICE_CACHE_LIMIT", "2G", 1);
  poolshim::config c = poolshim::read_config(record);
  EXPECT_EQ(c.mode, poolshim::run_mode::observe);
  EXPECT_EQ(c.free_sync, poolshim::free_sync_mode::fence);
  EXPECT_EQ(c.log_level, 1);
  EXPECT_TRUE(c.summary);
  EXPECT_EQ(c.small_limit, std::size_t{512} << 10);
  EXPECT_EQ(c.device_cache_limit, std::size_t{2} << 30);
  EXPECT_TRUE(g_issues.empty());
}

TEST_F(Config, BadValueKeepsTheDefaultAndIsReportedOnce) {
  setenv("POOLSHIM_MODE", "turbo", 1);
  setenv("POOLSHIM_SMALL_LIMIT", "12 parsecs", 1);
  poolshim::config c = poolshim::read_config(record);
  EXPECT_EQ(c.mode, poolshim::run_mode::pool);
  EXPECT_EQ(c.small_limit, std::size_t{1} << 20);
  ASSERT_EQ(g_issues.size(), 2u);
  EXPECT_EQ(g_issues[0], "POOLSHIM_MODE=turbo");
  EXPECT_EQ(g_issues[1], "POOLSHIM_SMALL_LIMIT=12 parsecs");
}

TEST(ConfigParseSize, RejectsOverflowAndGarbage) {
  std::size_t v = 0;
  EXPECT_TRUE(poolshim::parse_size("4096", &v));
  EXPECT_EQ(v, 4096u);
  EXPECT_TRUE(poolshim::parse_size("3M", &v));
  EXPECT_EQ(v, std::size_t{3} << 20);
  EXPECT_FALSE(poolshim::parse_size("", &v));
  EXPECT_FALSE(poolshim::parse_size("-1", &v));
  EXPECT_FALSE(poolshim::parse_size("1X", &v));
  EXPECT_FALSE(poolshim::parse_size("99999999999T", &v));
}

}  // namespace

// Tests of the configuration table (include/poolshim/config.h) and the machinery every option table
// shares (include/poolshim/options.h): defaults, each type's accepted spellings, that a bad value
// keeps its default and is reported exactly once (enumerations included), the one size parser, the
// warning line, and that the help text lists every row.
#include "poolshim/config.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

namespace {

using poolshim::config;
namespace opt = poolshim::opt;

struct recorded {
  std::string env, value, fallback, program;
  opt::kind type;
};
std::vector<recorded> g_issues;
void record(const poolshim::config_issue& i) {
  g_issues.push_back({i.env, i.value, i.fallback, i.program, i.option->type});
}

class Config : public ::testing::Test {
 protected:
  void SetUp() override {
    g_issues.clear();
    for (const opt::row& r : config::rows) unsetenv(r.env);
  }
  void TearDown() override {
    for (const opt::row& r : config::rows) unsetenv(r.env);
  }
};

TEST_F(Config, DefaultsApplyWhenNothingIsSet) {
  config c = poolshim::read_config(record);
  EXPECT_EQ(c.mode, poolshim::run_mode::pool);
  EXPECT_EQ(c.free_sync, poolshim::free_sync_mode::device);
  EXPECT_EQ(c.log_level, 3);
  EXPECT_FALSE(c.summary);
  EXPECT_EQ(c.small_limit, std::size_t{1} << 20);
  EXPECT_EQ(c.thread_cache_bytes, std::size_t{4} << 20);
  EXPECT_EQ(c.device_cache_limit, 0u);
  EXPECT_EQ(c.device_idle_percent, 1001u);  // auto: no bound with local segments (caching first), 5 with the daemon's
  EXPECT_STREQ(c.socket, "");
  EXPECT_TRUE(c.use_daemon);
  EXPECT_EQ(c.device_source, poolshim::segment_source::local);
  EXPECT_STREQ(c.stats, "off");
  EXPECT_STREQ(c.stats_dir, "/dev/shm");
  EXPECT_EQ(c.stats_depth, 32u);
  EXPECT_EQ(c.stats_events, 0u);
  EXPECT_TRUE(g_issues.empty());
}

TEST_F(Config, AcceptedValuesAreParsed) {
  setenv("POOLSHIM_MODE", "observe", 1);
  setenv("POOLSHIM_FREE_SYNC", "fence", 1);
  setenv("POOLSHIM_LOG_LEVEL", "debug", 1);
  setenv("POOLSHIM_SUMMARY", "1", 1);
  setenv("POOLSHIM_SMALL_LIMIT", "512KiB", 1);
  setenv("POOLSHIM_DEVICE_CACHE_LIMIT", "2G", 1);
  setenv("POOLSHIM_DEVICE_IDLE_PERCENT", "25", 1);
  setenv("POOLSHIM_SOCKET", "/run/x/d.sock", 1);
  setenv("POOLSHIM_DAEMON", "off", 1);
  setenv("POOLSHIM_DEVICE_SOURCE", "daemon", 1);
  setenv("POOLSHIM_STATS", "python", 1);
  setenv("POOLSHIM_STATS_DIR", "/tmp/s", 1);
  config c = poolshim::read_config(record);
  EXPECT_EQ(c.mode, poolshim::run_mode::observe);
  EXPECT_EQ(c.free_sync, poolshim::free_sync_mode::fence);
  EXPECT_EQ(c.log_level, 1);
  EXPECT_TRUE(c.summary);
  EXPECT_EQ(c.small_limit, std::size_t{512} << 10);
  EXPECT_EQ(c.device_cache_limit, std::size_t{2} << 30);
  EXPECT_EQ(c.device_idle_percent, 25u);
  EXPECT_STREQ(c.socket, "/run/x/d.sock");
  EXPECT_FALSE(c.use_daemon);
  EXPECT_EQ(c.device_source, poolshim::segment_source::daemon);
  EXPECT_STREQ(c.stats, "python");
  EXPECT_STREQ(c.stats_dir, "/tmp/s");
  EXPECT_TRUE(g_issues.empty());
}

TEST_F(Config, EveryEnumerationSpellingMapsToItsValueInOrder) {
  const std::pair<const char*, poolshim::run_mode> modes[] = {
      {"pool", poolshim::run_mode::pool}, {"observe", poolshim::run_mode::observe}, {"off", poolshim::run_mode::off}};
  for (const auto& [text, want] : modes) {
    setenv("POOLSHIM_MODE", text, 1);
    EXPECT_EQ(poolshim::read_config(record).mode, want) << text;
  }
  const std::pair<const char*, poolshim::free_sync_mode> syncs[] = {{"device", poolshim::free_sync_mode::device},
                                                                    {"fence", poolshim::free_sync_mode::fence},
                                                                    {"unsafe", poolshim::free_sync_mode::unsafe}};
  for (const auto& [text, want] : syncs) {
    setenv("POOLSHIM_FREE_SYNC", text, 1);
    EXPECT_EQ(poolshim::read_config(record).free_sync, want) << text;
  }
  for (const char* s : {"off", "native", "python"}) {
    setenv("POOLSHIM_STATS", s, 1);
    const config c = poolshim::read_config(record);
    EXPECT_STREQ(c.stats, s);
    EXPECT_NE(c.stats, std::getenv("POOLSHIM_STATS")) << "the table's own spelling, not the environment's text";
  }
  EXPECT_TRUE(g_issues.empty());
}

TEST_F(Config, LevelsFlagsAndTextTakeEverySpelling) {
  const std::pair<const char*, int> levels[] = {{"trace", 0},   {"debug", 1}, {"info", 2}, {"warn", 3},
                                                {"warning", 3}, {"error", 4}, {"err", 4},  {"critical", 5},
                                                {"off", 6},     {"0", 0},     {"6", 6}};
  for (const auto& [text, want] : levels) {
    setenv("POOLSHIM_LOG_LEVEL", text, 1);
    EXPECT_EQ(poolshim::read_config(record).log_level, want) << text;
  }
  for (const char* yes : {"1", "true", "yes", "on"}) {
    setenv("POOLSHIM_SUMMARY", yes, 1);
    EXPECT_TRUE(poolshim::read_config(record).summary) << yes;
  }
  setenv("POOLSHIM_SUMMARY", "1", 1);
  for (const char* no : {"0", "false", "no", "off"}) {
    setenv("POOLSHIM_DAEMON", no, 1);
    EXPECT_FALSE(poolshim::read_config(record).use_daemon) << no;
  }
  setenv("POOLSHIM_STATS_DIR", "", 1);
  EXPECT_STREQ(poolshim::read_config(record).stats_dir, "") << "text takes anything, even nothing";
  EXPECT_TRUE(g_issues.empty());
}

TEST_F(Config, BadValueKeepsTheDefaultAndIsReportedOnce) {
  setenv("POOLSHIM_MODE", "turbo", 1);
  setenv("POOLSHIM_SMALL_LIMIT", "12 parsecs", 1);
  config c = poolshim::read_config(record);
  EXPECT_EQ(c.mode, poolshim::run_mode::pool);
  EXPECT_EQ(c.small_limit, std::size_t{1} << 20);
  ASSERT_EQ(g_issues.size(), 2u);
  EXPECT_EQ(g_issues[0].env + "=" + g_issues[0].value, "POOLSHIM_MODE=turbo");
  EXPECT_EQ(g_issues[1].env + "=" + g_issues[1].value, "POOLSHIM_SMALL_LIMIT=12 parsecs");
  EXPECT_EQ(g_issues[1].fallback, "1MiB");
  EXPECT_EQ(g_issues[1].program, "poolshim");
}

// The bug this table fixed: POOLSHIM_STATS=nativ used to mean silently no statistics.
TEST_F(Config, AMisspelledEnumerationWarnsAndKeepsItsDefault) {
  setenv("POOLSHIM_STATS", "nativ", 1);
  setenv("POOLSHIM_DEVICE_SOURCE", "remote", 1);
  setenv("POOLSHIM_FREE_SYNC", "Fence", 1);
  setenv("POOLSHIM_SUMMARY", "maybe", 1);
  setenv("POOLSHIM_LOG_LEVEL", "7", 1);
  const config c = poolshim::read_config(record);
  EXPECT_STREQ(c.stats, "off");
  EXPECT_EQ(c.device_source, poolshim::segment_source::local);
  EXPECT_EQ(c.free_sync, poolshim::free_sync_mode::device);
  EXPECT_FALSE(c.summary);
  EXPECT_EQ(c.log_level, 3);
  ASSERT_EQ(g_issues.size(), 5u);
  // In table order, each naming its variable, its value and the default kept.
  EXPECT_EQ(g_issues[0].env, "POOLSHIM_FREE_SYNC");
  EXPECT_EQ(g_issues[0].fallback, "device");
  EXPECT_EQ(g_issues[1].env, "POOLSHIM_LOG_LEVEL");
  EXPECT_EQ(g_issues[1].fallback, "warn");
  EXPECT_EQ(g_issues[2].env, "POOLSHIM_SUMMARY");
  EXPECT_EQ(g_issues[3].env, "POOLSHIM_DEVICE_SOURCE");
  EXPECT_EQ(g_issues[3].value, "remote");
  EXPECT_EQ(g_issues[3].fallback, "local");
  EXPECT_EQ(g_issues[4].env, "POOLSHIM_STATS");
  EXPECT_EQ(g_issues[4].value, "nativ");
  EXPECT_EQ(g_issues[4].fallback, "off");
  EXPECT_EQ(g_issues[4].type, opt::kind::choice);
}

// What the shim writes for a rejected value: one line on fd 2, naming the variable, the value,
// what it accepts and the default kept.
TEST_F(Config, TheWarningIsOneLineOnStandardError) {
  setenv("POOLSHIM_STATS", "nativ", 1);
  setenv("POOLSHIM_SMALL_LIMIT", "banana", 1);
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  const int saved = dup(2);
  dup2(p[1], 2);
  poolshim::read_config(opt::warn_raw);
  dup2(saved, 2);
  close(saved);
  close(p[1]);
  std::string said;
  char buf[1024];
  for (ssize_t n; (n = read(p[0], buf, sizeof buf)) > 0;) said.append(buf, static_cast<std::size_t>(n));
  close(p[0]);
  EXPECT_EQ(said,
            "poolshim: warning: ignoring POOLSHIM_SMALL_LIMIT='banana' (not a size: bytes with an optional k, m, g "
            "or t suffix); using the default, 1MiB\n"
            "poolshim: warning: ignoring POOLSHIM_STATS='nativ' (not one of: off, native, python); using the "
            "default, off\n");
}

TEST_F(Config, OneOptionAloneIsReadWithoutTheOthers) {
  setenv("POOLSHIM_SOCKET", "/a/b.sock", 1);
  setenv("POOLSHIM_MODE", "turbo", 1);
  EXPECT_STREQ(opt::read_one(&config::socket), "/a/b.sock");
  unsetenv("POOLSHIM_SOCKET");
  EXPECT_STREQ(opt::read_one(&config::socket), "");
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

TEST(ConfigParseSize, TakesEverySuffixSpelling) {
  const std::pair<const char*, std::size_t> good[] = {
      {"0", 0},
      {"7b", 7},
      {"7B", 7},
      {"1k", 1024},
      {"1K", 1024},
      {"1KiB", 1024},
      {"1kib", 1024},
      {"1kb", 1024},
      {"1KB", 1024},
      {"2m", std::size_t{2} << 20},
      {"2MiB", std::size_t{2} << 20},
      {"3g", std::size_t{3} << 30},
      {"3GB", std::size_t{3} << 30},
      {"1t", std::size_t{1} << 40},
      {"1TiB", std::size_t{1} << 40},
      {"16777215T", std::size_t{16777215} << 40},
      {"18446744073709551615", ~std::size_t{0}},
  };
  for (const auto& [text, want] : good) {
    std::size_t v = 1234;
    EXPECT_TRUE(poolshim::parse_size(text, &v)) << text;
    EXPECT_EQ(v, want) << text;
  }
  for (const char* bad : {"1i", "1ib", "1Mi B", " 1", "+1", "1.5M", "1MM", "1Mx", "1P", "M", "16777216T",
                          "18446744073709551616", "0x10"}) {
    std::size_t v = 1234;
    EXPECT_FALSE(poolshim::parse_size(bad, &v)) << bad;
    EXPECT_EQ(v, 1234u) << bad << ": a rejected text leaves the value alone";
  }
}

TEST(ConfigParseCount, TakesWholeNumbersInItsRangeOnly) {
  std::uint64_t v = 9;
  EXPECT_TRUE(opt::parse_count("1", 1, 64, &v));
  EXPECT_EQ(v, 1u);
  EXPECT_TRUE(opt::parse_count("64", 1, 64, &v));
  EXPECT_EQ(v, 64u);
  for (const char* bad : {"0", "65", "2k", "", "-1", "1.0"}) EXPECT_FALSE(opt::parse_count(bad, 1, 64, &v)) << bad;
  EXPECT_EQ(v, 64u);
}

void append(void* to, const char* text, std::size_t len) { static_cast<std::string*>(to)->append(text, len); }

TEST(ConfigHelp, ListsEveryRowWithItsDefaultAndMeaning) {
  std::string help;
  opt::write_help<config>(append, &help, false);
  std::size_t entries = 0;
  for (std::size_t at = 0; (at = help.find("\n  POOLSHIM_", at)) != std::string::npos; ++at) ++entries;
  EXPECT_EQ(entries + (help.rfind("  POOLSHIM_", 0) == 0), std::size(config::rows)) << help;
  for (const opt::row& r : config::rows) {
    EXPECT_NE(help.find(std::string("  ") + r.env + "="), std::string::npos) << r.env;
    // The meaning's first words (wrapping only ever breaks at a blank).
    const std::string help_start(r.help, std::strcspn(r.help, " "));
    EXPECT_NE(help.find(help_start), std::string::npos) << r.env;
  }
  EXPECT_NE(help.find("POOLSHIM_STATS=off|native|python  default off"), std::string::npos) << help;
  EXPECT_NE(help.find("POOLSHIM_SMALL_LIMIT=SIZE  default 1MiB"), std::string::npos) << help;
  EXPECT_NE(help.find("POOLSHIM_LOG_LEVEL=LEVEL  default warn"), std::string::npos) << help;
  EXPECT_NE(help.find("POOLSHIM_DAEMON=0|1  default 1"), std::string::npos) << help;
  for (std::size_t start = 0, end; start < help.size(); start = end + 1) {
    end = help.find('\n', start);
    ASSERT_NE(end, std::string::npos) << "every line ends";
    EXPECT_LE(end - start, 100u) << help.substr(start, end - start);
  }
}

}  // namespace

// poolshimd's option table (daemon/poolshimd/options.h): variables then flags (a flag wins), a bad
// variable warned about once and its default kept, a bad flag an error, the shim's size parser, and
// a --help that lists every row of its table and of the shim's.
#include "poolshimd/options.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <string>
#include <vector>

namespace poolshim::daemon {
namespace {

std::vector<std::string> g_issues;
void record(const opt::issue& i) {
  g_issues.push_back(std::string(i.program) + ": " + i.env + "=" + i.value + " -> " + i.fallback);
}

class DaemonOptions : public ::testing::Test {
 protected:
  void SetUp() override {
    g_issues.clear();
    for (const opt::row& r : daemon_options::rows) unsetenv(r.env);
  }
  void TearDown() override {
    for (const opt::row& r : daemon_options::rows) unsetenv(r.env);
  }
  command_line parse(std::vector<std::string> args) {
    args.insert(args.begin(), "poolshimd");
    argv_.clear();
    storage_ = std::move(args);
    for (std::string& a : storage_) argv_.push_back(a.data());
    argv_.push_back(nullptr);
    return parse_command_line(static_cast<int>(storage_.size()), argv_.data(), record);
  }

 private:
  std::vector<std::string> storage_;
  std::vector<char*> argv_;
};

TEST_F(DaemonOptions, DefaultsAreTheServersDefaults) {
  const command_line cl = parse({});
  EXPECT_TRUE(cl.error.empty());
  EXPECT_FALSE(cl.status);
  EXPECT_FALSE(cl.help);
  const server_options o = server_options_of(cl.options);
  const region_options plain;
  EXPECT_EQ(o.region.total_bytes, plain.total_bytes);
  EXPECT_EQ(o.region.slab_bytes, plain.slab_bytes);
  EXPECT_EQ(o.region.fill_threads, plain.fill_threads);
  EXPECT_EQ(o.region.huge_pages, plain.huge_pages);
  EXPECT_EQ(o.client_quota, 0u);
  EXPECT_EQ(o.uid_quota, 0u);
  EXPECT_EQ(o.device_limit, 0u);
  EXPECT_EQ(o.idle_exit.count(), 0);
  EXPECT_EQ(o.metrics_port, 0);
  const server_options plain_server;
  EXPECT_EQ(o.uid_connections, plain_server.uid_connections);
  EXPECT_EQ(o.uid_connections, 64u);
  EXPECT_EQ(o.idle_timeout, plain_server.idle_timeout);
  EXPECT_EQ(o.idle_timeout.count(), 30);
  EXPECT_EQ(cl.options.log_level, 2) << "info";
  EXPECT_FALSE(o.socket_path.empty()) << "the standard places (transport.h)";
  EXPECT_TRUE(g_issues.empty());
}

TEST_F(DaemonOptions, VariablesAreReadAndFlagsWin) {
  setenv("POOLSHIMD_REGION", "1G", 1);
  setenv("POOLSHIMD_SLAB", "8MiB", 1);
  setenv("POOLSHIMD_HUGE_PAGES", "yes", 1);
  setenv("POOLSHIMD_FILL_THREADS", "4", 1);
  setenv("POOLSHIMD_CLIENT_QUOTA", "1t", 1);  // the shim's suffixes: poolshimd took K, M and G only
  setenv("POOLSHIMD_METRICS_PORT", "9477", 1);
  setenv("POOLSHIMD_LOG_LEVEL", "warning", 1);
  setenv("POOLSHIM_SOCKET", "/env/d.sock", 1);
  command_line cl = parse({});
  server_options o = server_options_of(cl.options);
  EXPECT_EQ(o.region.total_bytes, std::size_t{1} << 30);
  EXPECT_EQ(o.region.slab_bytes, std::size_t{8} << 20);
  EXPECT_TRUE(o.region.huge_pages);
  EXPECT_EQ(o.region.fill_threads, 4u);
  EXPECT_EQ(o.client_quota, std::uint64_t{1} << 40);
  EXPECT_EQ(o.metrics_port, 9477);
  EXPECT_EQ(cl.options.log_level, 3);
  EXPECT_EQ(o.socket_path, "/env/d.sock");

  cl = parse({"--region", "2G", "--fill-threads", "8", "--socket", "/flag/d.sock", "--idle-exit", "60", "--log-level",
              "debug", "--uid-quota", "3M", "--device-limit", "4g", "--uid-connections", "8", "--idle-timeout", "0"});
  ASSERT_TRUE(cl.error.empty()) << cl.error;
  o = server_options_of(cl.options);
  EXPECT_EQ(o.region.total_bytes, std::size_t{2} << 30);
  EXPECT_EQ(o.region.slab_bytes, std::size_t{8} << 20) << "the variable, where no flag says otherwise";
  EXPECT_EQ(o.region.fill_threads, 8u);
  EXPECT_EQ(o.socket_path, "/flag/d.sock");
  EXPECT_EQ(o.idle_exit.count(), 60);
  EXPECT_EQ(cl.options.log_level, 1);
  EXPECT_EQ(o.uid_quota, std::uint64_t{3} << 20);
  EXPECT_EQ(o.device_limit, std::uint64_t{4} << 30);
  EXPECT_EQ(o.uid_connections, 8u);
  EXPECT_EQ(o.idle_timeout.count(), 0) << "0: never";
  EXPECT_TRUE(g_issues.empty());
}

TEST_F(DaemonOptions, AFlagRowTakesNoValue) {
  const command_line cl = parse({"--huge-pages", "--status"});
  ASSERT_TRUE(cl.error.empty()) << cl.error;
  EXPECT_TRUE(cl.options.huge_pages);
  EXPECT_TRUE(cl.status);
}

// Before the table, a bad POOLSHIMD_* variable made poolshimd exit 2 and POOLSHIMD_HUGE_PAGES=yes
// was quietly "off"; now each bad variable is one warning and its default.
TEST_F(DaemonOptions, ABadVariableWarnsOnceAndKeepsItsDefault) {
  setenv("POOLSHIMD_REGION", "lots", 1);
  setenv("POOLSHIMD_FILL_THREADS", "0", 1);
  setenv("POOLSHIMD_METRICS_PORT", "70000", 1);
  setenv("POOLSHIMD_HUGE_PAGES", "sometimes", 1);
  setenv("POOLSHIMD_LOG_LEVEL", "chatty", 1);
  const command_line cl = parse({});
  EXPECT_TRUE(cl.error.empty()) << "a variable is never fatal";
  const server_options o = server_options_of(cl.options);
  EXPECT_EQ(o.region.total_bytes, std::size_t{4} << 30);
  EXPECT_EQ(o.region.fill_threads, 2u);
  EXPECT_EQ(o.metrics_port, 0);
  EXPECT_FALSE(o.region.huge_pages);
  EXPECT_EQ(cl.options.log_level, 2);
  const std::vector<std::string> want = {
      "poolshimd: POOLSHIMD_REGION=lots -> 4GiB",      "poolshimd: POOLSHIMD_HUGE_PAGES=sometimes -> 0",
      "poolshimd: POOLSHIMD_FILL_THREADS=0 -> 2",      "poolshimd: POOLSHIMD_METRICS_PORT=70000 -> 0",
      "poolshimd: POOLSHIMD_LOG_LEVEL=chatty -> info",
  };
  EXPECT_EQ(g_issues, want);
}

TEST_F(DaemonOptions, ABadFlagIsAnErrorThatSaysWhy) {
  command_line cl = parse({"--region", "lots"});
  EXPECT_EQ(cl.error, "bad value 'lots' for --region (want a size: bytes with an optional k, m, g or t suffix)");
  cl = parse({"--fill-threads", "65"});
  EXPECT_EQ(cl.error, "bad value '65' for --fill-threads (want a whole number from 1 to 64)");
  cl = parse({"--metrics-port", "65536"});
  EXPECT_EQ(cl.error, "bad value '65536' for --metrics-port (want a whole number from 0 to 65535)");
  cl = parse({"--log-level", "loud"});
  EXPECT_NE(cl.error.find("for --log-level (want trace, debug"), std::string::npos) << cl.error;
  cl = parse({"--slab"});
  EXPECT_EQ(cl.error, "--slab needs a value");
  cl = parse({"--regions", "1G"});
  EXPECT_EQ(cl.error, "unknown option '--regions'");
  cl = parse({"--fill_threads", "2"});
  EXPECT_EQ(cl.error, "unknown option '--fill_threads'") << "flags spell '_' as '-'";
  cl = parse({"--help", "--bogus"});
  EXPECT_TRUE(cl.help);
  EXPECT_TRUE(cl.error.empty()) << "nothing after --help is looked at";
}

TEST_F(DaemonOptions, VersionStopsParsingAndMetricsAddressDefaultsToLoopback) {
  command_line cl = parse({"--version", "--bogus"});
  EXPECT_TRUE(cl.version);
  EXPECT_TRUE(cl.error.empty()) << "nothing after --version is looked at";
  EXPECT_EQ(server_options_of(parse({}).options).metrics_address, "127.0.0.1") << "node-local unless asked";
  setenv("POOLSHIMD_METRICS_ADDRESS", "0.0.0.0", 1);
  EXPECT_EQ(server_options_of(parse({}).options).metrics_address, "0.0.0.0");
  cl = parse({"--metrics-address", "10.1.2.3"});
  ASSERT_TRUE(cl.error.empty()) << cl.error;
  EXPECT_EQ(server_options_of(cl.options).metrics_address, "10.1.2.3") << "a flag wins";
}

TEST_F(DaemonOptions, HelpListsEveryRowOfBothTables) {
  const std::string help = help_text();
  for (const opt::row& r : daemon_options::rows) {
    std::string flag = std::string("--") + r.field;
    for (char& ch : flag)
      if (ch == '_') ch = '-';
    EXPECT_NE(help.find("\n  " + flag), std::string::npos) << flag;
    EXPECT_NE(help.find(std::string("[") + r.env), std::string::npos) << r.env;
  }
  for (const opt::row& r : config::rows)
    EXPECT_NE(help.find(std::string("\n  ") + r.env + "="), std::string::npos) << r.env;
  EXPECT_NE(help.find("--region SIZE  [POOLSHIMD_REGION]  default 4GiB"), std::string::npos) << help;
  EXPECT_NE(help.find("--fill-threads N  [POOLSHIMD_FILL_THREADS]  default 2 (1 to 64)"), std::string::npos);
  EXPECT_NE(help.find("--huge-pages  [POOLSHIMD_HUGE_PAGES=0|1]  default 0"), std::string::npos);
  EXPECT_NE(help.find("--log-level LEVEL  [POOLSHIMD_LOG_LEVEL]  default info"), std::string::npos);
  EXPECT_NE(help.find("--status"), std::string::npos);
  EXPECT_NE(help.find("--version"), std::string::npos);
  EXPECT_NE(help.find("POOLSHIM_STATS=off|native|python  default off"), std::string::npos);
}

}  // namespace
}  // namespace poolshim::daemon

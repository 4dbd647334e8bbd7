// The module list (shim/stats/module_list.h) of this very process: this test binary is listed
// with its path, its address range and the build-id readelf reports; listing again adds nothing;
// a full list stops at its capacity.
#include "stats/module_list.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "stats/file_layout.h"  // k_modules: as many as the recorder lists

namespace poolshim::stats {
namespace {

[[gnu::noinline]] int a_function_here() { return 42; }

struct list_in_memory {
  explicit list_in_memory(std::uint32_t capacity) : modules(capacity), list(modules.data(), capacity, &count) {}
  std::vector<poolshim_stats_module> modules;
  std::uint32_t count = 0;
  module_list list;
};

std::string self_path() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string{};
}

// "Build ID: <hex>" from readelf -n, or "" when readelf is missing or finds none.
std::string readelf_build_id(const std::string& path) {
  const std::string cmd = "readelf -n '" + path + "' 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return {};
  std::string id;
  char line[512];
  while (std::fgets(line, sizeof line, p) != nullptr) {
    const char* at = std::strstr(line, "Build ID: ");
    if (at == nullptr) continue;
    at += std::strlen("Build ID: ");
    while (*at != '\0' && *at != '\n' && *at != ' ') id += *at++;
  }
  pclose(p);
  return id;
}

std::string hex(const std::uint8_t* bytes, std::uint32_t n) {
  std::string out;
  char b[3];
  for (std::uint32_t i = 0; i < n; ++i) {
    std::snprintf(b, sizeof b, "%02x", bytes[i]);
    out += b;
  }
  return out;
}

TEST(ModuleList, ListsThisBinaryWithTheBuildIdReadelfReports) {
  list_in_memory m(k_modules);
  const auto pc = reinterpret_cast<std::uintptr_t>(&a_function_here);
  EXPECT_FALSE(m.list.knows(pc)) << "nothing listed yet";
  m.list.refresh();
  ASSERT_GT(m.list.size(), 1u) << "this binary and at least libc";
  const poolshim_stats_module* mod = m.list.find(pc);
  ASSERT_NE(mod, nullptr);
  EXPECT_TRUE(m.list.knows(pc));
  EXPECT_EQ(std::string(mod->path), self_path());
  EXPECT_LE(mod->start, pc);
  EXPECT_GT(mod->end, pc);
  ASSERT_GT(mod->build_id_size, 0u) << "the toolchain links with --build-id";
  const std::string expected = readelf_build_id(self_path());
  if (expected.empty()) GTEST_SKIP() << "readelf not found: the build-id is not compared";
  EXPECT_EQ(hex(mod->build_id, mod->build_id_size), expected);
}

TEST(ModuleList, ListingAgainAddsNothingAndAFullListStops) {
  list_in_memory m(k_modules);
  m.list.refresh();
  const std::uint32_t n = m.list.size();
  m.list.refresh();
  EXPECT_EQ(m.list.size(), n);
  // Data of libc's (stdout's FILE), in a module after the program.
  const auto in_libc = reinterpret_cast<std::uintptr_t>(stdout);
  ASSERT_TRUE(m.list.knows(in_libc));
  list_in_memory one(1);
  one.list.refresh();
  EXPECT_EQ(one.list.size(), 1u);
  EXPECT_EQ(std::string(one.modules[0].path), self_path()) << "the program comes first";
  EXPECT_FALSE(one.list.knows(in_libc)) << "libc did not fit";
}

TEST(ModuleList, AnAddressInNoModuleIsUnknown) {
  list_in_memory m(k_modules);
  m.list.refresh();
  EXPECT_FALSE(m.list.knows(0x10));
  EXPECT_EQ(m.list.find(0x10), nullptr);
}

}  // namespace
}  // namespace poolshim::stats

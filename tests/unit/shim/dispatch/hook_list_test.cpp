// The hook list (shim/intercept/hook_list.h) against the two sources of truth about a driver
// name's ABI variants: the toolkit's cudaTypedefs.h (PFN_<name>_v<version>[_ptsz|_ptds], the old
// ones inside #if defined(__CUDA_API_VERSION_INTERNAL)) and the exports of its stub libcuda.so.
// Every variant of every hooked base name must have a row, with the version cudaTypedefs.h gives
// it; otherwise a caller asking cuGetProcAddress for that version gets the driver's pointer
// unhooked (issue #12).
#include "intercept/hook_list.h"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include "poolshim/poolshim.h"

namespace poolshim::intercept {
namespace {

std::string read_all(const char* path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::set<std::string> base_names() {
  std::set<std::string> names;
  for (const hook_info& h : k_hooks) names.insert(h.base_name);
  return names;
}

// (version, per-thread) of each variant, as a comparable text.
std::string variant(int version, bool per_thread) {
  return std::to_string(version) + (per_thread ? " per-thread" : "");
}

TEST(HookList, EveryVariantInCudaTypedefsHasARowWithItsVersion) {
  const std::string typedefs = read_all(POOLSHIM_TEST_CUDA_TYPEDEFS);
  ASSERT_FALSE(typedefs.empty()) << "cannot read " << POOLSHIM_TEST_CUDA_TYPEDEFS;
  for (const std::string& base : base_names()) {
    std::set<std::string> declared;
    const std::regex pfn("typedef CUresult \\(CUDAAPI \\*PFN_" + base + "_v([0-9]+)(_ptsz|_ptds)?\\)");
    for (auto it = std::sregex_iterator(typedefs.begin(), typedefs.end(), pfn); it != std::sregex_iterator(); ++it)
      declared.insert(variant(std::stoi((*it)[1].str()), (*it)[2].matched));
    std::set<std::string> listed;
    for (const hook_info& h : k_hooks)
      if (base == h.base_name) listed.insert(variant(h.version, h.per_thread));
    EXPECT_FALSE(declared.empty()) << base << ": no PFN_" << base << "_v* in cudaTypedefs.h";
    EXPECT_EQ(listed, declared) << base << ": the hook rows' (version, per-thread) are not cudaTypedefs.h's";
  }
}

TEST(HookList, EveryVariantTheStubDriverExportsHasARow) {
  void* stub = dlopen(POOLSHIM_TEST_STUB_LIBCUDA, RTLD_LAZY | RTLD_LOCAL);
  ASSERT_NE(stub, nullptr) << dlerror();
  std::set<std::string> exports_listed;
  for (const hook_info& h : k_hooks) {
    EXPECT_NE(dlsym(stub, h.export_name), nullptr) << h.export_name << " is not an export of the driver";
    exports_listed.insert(h.export_name);
  }
  // Every export spelt <base>[_vN][_ptsz|_ptds] of a hooked base name is a row.
  for (const std::string& base : base_names()) {
    for (int n = 1; n <= 9; ++n) {
      for (const char* suffix : {"", "_ptsz", "_ptds"}) {
        const std::string name = base + (n == 1 ? std::string() : "_v" + std::to_string(n)) + suffix;
        if (dlsym(stub, name.c_str()) != nullptr) {
          EXPECT_TRUE(exports_listed.count(name)) << name << " has no row";
        }
      }
    }
  }
  dlclose(stub);
}

TEST(HookList, RowsAreUniqueAndFitTheCountersAndMasks) {
  std::set<std::string> exports;
  std::set<std::pair<std::string, std::string>> variants;
  for (const hook_info& h : k_hooks) {
    EXPECT_TRUE(exports.insert(h.export_name).second) << h.export_name << " twice";
    EXPECT_TRUE(variants.insert({h.base_name, variant(h.version, h.per_thread)}).second)
        << h.base_name << " " << variant(h.version, h.per_thread) << " twice";
  }
  EXPECT_LE(k_hook_count, std::size_t{POOLSHIM_MAX_HOOKS});
  EXPECT_LE(k_hook_count, std::size_t{64});  // proc_address.cpp's one-bit-per-row mask
}

TEST(HookList, LookupsByExportAndBaseName) {
  for (std::size_t i = 0; i < k_hook_count; ++i) {
    EXPECT_EQ(find_hook_by_export(k_hooks[i].export_name), static_cast<int>(i));
    EXPECT_TRUE(is_hooked_base_name(k_hooks[i].base_name));
  }
  // The old variants (issue #12) are rows of their own, named by their export.
  for (const char* old_export :
       {"cuMemAlloc", "cuMemAllocPitch", "cuMemFree", "cuMemAllocHost", "cuMemHostGetDevicePointer", "cuMemGetInfo",
        "cuStreamDestroy", "cuCtxCreate", "cuCtxDestroy", "cuDevicePrimaryCtxRelease", "cuDevicePrimaryCtxReset",
        "cuIpcOpenMemHandle", "cuStreamBeginCapture", "cuStreamBeginCapture_ptsz"})
    EXPECT_GE(find_hook_by_export(old_export), 0) << old_export;
  EXPECT_EQ(find_hook_by_export("cuMemcpy"), -1);
  EXPECT_FALSE(is_hooked_base_name("cuMemcpy"));
}

}  // namespace
}  // namespace poolshim::intercept

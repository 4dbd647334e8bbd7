// lookup_replay: replays the cuGetProcAddress_v2 lookups NVIDIA's cudart 13.0 makes
// (tests/sim/fixtures/cudart-13.0-lookups.tsv) against whatever libcuda.so.1 the loader finds, the
// way cudart reaches it: dlopen("libcuda.so.1"), dlsym(h, "cuGetProcAddress_v2") (under
// LD_PRELOAD=libpoolshim.so that dlsym answers the shim's wrapper, exactly as cudart gets it),
// cuInit(0), the primary context of device 0 made current, then every row of the fixture. Linked
// against nothing CUDA: the same binary records the real driver's answers on a GPU machine
// (scripts/gpu-check.sh) and the simulator's here.
//
// usage: lookup_replay FIXTURE.tsv [--call] [--out FILE]
// Prints (to FILE, else stdout), tab-separated:
//   row  order symbol cudaVersion flags CUresult status object export
//        object/export: the pointer's dladdr file basename and symbol name ("name+0xoff" when the
//        pointer is not the symbol's address, "?" when dladdr knows nothing), "-" for NULL
//   hook index export             the shim's hook rows (poolshim_hook_name), when it is loaded
//   call order symbol export CUresult sim=<+n|n/a> shim=<+n|n/a> ok|FAIL: why
//        --call: each distinct pointer in libpoolshim.so is called once with harmless arguments
//        (null or invalid ones: the driver still enters the export and returns an error, or
//        cuMemFree(0)-like no-ops); sim is how often the simulator's export of that name was
//        entered (poolshim_sim_calls, absent on a real driver: n/a), shim how often the shim
//        counted the call under that export's hook row; both must be +1
//   counters lookups=.. lookups_wrapped=.. lookups_unknown=..   (the shim's, when it is loaded)
//   sim_calls present|absent
// lookup_replay.py runs it without and with the shim and compares.
#define __CUDA_API_VERSION_INTERNAL 1  // NOLINT(readability-identifier-naming): every ABI's PFN type
#include <cuda.h>
#include <cudaTypedefs.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "poolshim/poolshim.h"

namespace {

struct row {
  std::string order, symbol;
  int version = 0;
  unsigned long long flags = 0;
};

std::FILE* g_out = stdout;

std::vector<row> read_fixture(const char* path) {
  std::vector<row> rows;
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "lookup_replay: cannot read %s\n", path);
    std::exit(2);
  }
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    row r;
    std::string version, flags;
    if (!std::getline(fields, r.order, '\t') || !std::getline(fields, r.symbol, '\t') ||
        !std::getline(fields, version, '\t') || !std::getline(fields, flags, '\t')) {
      std::fprintf(stderr, "lookup_replay: bad fixture line: %s\n", line.c_str());
      std::exit(2);
    }
    r.version = std::atoi(version.c_str());
    r.flags = std::strtoull(flags.c_str(), nullptr, 10);
    rows.push_back(r);
  }
  return rows;
}

std::string basename_of(const char* path) {
  if (path == nullptr) return "?";
  const char* slash = std::strrchr(path, '/');
  return slash ? slash + 1 : path;
}

// The pointer's object and symbol, by dladdr.
void describe(void* p, std::string* object, std::string* name) {
  if (p == nullptr) {
    *object = *name = "-";
    return;
  }
  Dl_info info{};
  if (dladdr(p, &info) == 0) {
    *object = *name = "?";
    return;
  }
  *object = basename_of(info.dli_fname);
  if (info.dli_sname == nullptr) {
    *name = "?";
  } else if (info.dli_saddr != p) {
    char off[32];
    std::snprintf(off, sizeof off, "+%#lx",
                  static_cast<unsigned long>(static_cast<char*>(p) - static_cast<char*>(info.dli_saddr)));
    *name = std::string(info.dli_sname) + off;
  } else {
    *name = info.dli_sname;
  }
}

template <class F>
F as(void* p) {
  return reinterpret_cast<F>(p);
}

// One harmless call per export the shim wraps, by export name: arguments the driver refuses
// (NULL out-pointers, an invalid device, the legacy stream for a capture) or that do nothing
// (cuMemFree(0)), so that the same calls are safe against a real driver. A hook added to the
// shim without an entry here is reported as a failure of the replay.
struct context {
  CUdevice dev;
};

using caller = std::function<CUresult(void*, const context&)>;

const std::map<std::string, caller>& harmless_calls() {
  static const std::map<std::string, caller> calls = {
      {"cuMemAlloc", [](void* f, const context&) { return as<PFN_cuMemAlloc_v2000>(f)(nullptr, 0); }},
      {"cuMemAlloc_v2", [](void* f, const context&) { return as<PFN_cuMemAlloc_v3020>(f)(nullptr, 0); }},
      {"cuMemAllocPitch",
       [](void* f, const context&) { return as<PFN_cuMemAllocPitch_v2000>(f)(nullptr, nullptr, 0, 0, 4); }},
      {"cuMemAllocPitch_v2",
       [](void* f, const context&) { return as<PFN_cuMemAllocPitch_v3020>(f)(nullptr, nullptr, 0, 0, 4); }},
      {"cuMemFree", [](void* f, const context&) { return as<PFN_cuMemFree_v2000>(f)(0); }},
      {"cuMemFree_v2", [](void* f, const context&) { return as<PFN_cuMemFree_v3020>(f)(0); }},
      {"cuMemAllocHost", [](void* f, const context&) { return as<PFN_cuMemAllocHost_v2000>(f)(nullptr, 0); }},
      {"cuMemAllocHost_v2", [](void* f, const context&) { return as<PFN_cuMemAllocHost_v3020>(f)(nullptr, 0); }},
      {"cuMemHostAlloc", [](void* f, const context&) { return as<PFN_cuMemHostAlloc_v2020>(f)(nullptr, 0, 0); }},
      {"cuMemFreeHost", [](void* f, const context&) { return as<PFN_cuMemFreeHost_v2000>(f)(nullptr); }},
      {"cuMemHostGetDevicePointer",
       [](void* f, const context&) { return as<PFN_cuMemHostGetDevicePointer_v2020>(f)(nullptr, nullptr, 0); }},
      {"cuMemHostGetDevicePointer_v2",
       [](void* f, const context&) { return as<PFN_cuMemHostGetDevicePointer_v3020>(f)(nullptr, nullptr, 0); }},
      {"cuMemHostGetFlags",
       [](void* f, const context&) { return as<PFN_cuMemHostGetFlags_v2030>(f)(nullptr, nullptr); }},
      {"cuMemGetInfo",
       [](void* f, const context&) {
         unsigned free = 0, total = 0;
         return as<PFN_cuMemGetInfo_v2000>(f)(&free, &total);
       }},
      {"cuMemGetInfo_v2",
       [](void* f, const context&) {
         size_t free = 0, total = 0;
         return as<PFN_cuMemGetInfo_v3020>(f)(&free, &total);
       }},
      {"cuMemAllocManaged",
       [](void* f, const context&) { return as<PFN_cuMemAllocManaged_v6000>(f)(nullptr, 0, CU_MEM_ATTACH_GLOBAL); }},
      {"cuMemAllocAsync",
       [](void* f, const context&) { return as<PFN_cuMemAllocAsync_v11020>(f)(nullptr, 0, nullptr); }},
      {"cuMemAllocAsync_ptsz",
       [](void* f, const context&) { return as<PFN_cuMemAllocAsync_v11020_ptsz>(f)(nullptr, 0, nullptr); }},
      {"cuMemFreeAsync", [](void* f, const context&) { return as<PFN_cuMemFreeAsync_v11020>(f)(0, nullptr); }},
      {"cuMemFreeAsync_ptsz",
       [](void* f, const context&) { return as<PFN_cuMemFreeAsync_v11020_ptsz>(f)(0, nullptr); }},
      {"cuMemCreate", [](void* f, const context&) { return as<PFN_cuMemCreate_v10020>(f)(nullptr, 0, nullptr, 0); }},
      {"cuMemRelease", [](void* f, const context&) { return as<PFN_cuMemRelease_v10020>(f)(0); }},
      {"cuIpcGetMemHandle", [](void* f, const context&) { return as<PFN_cuIpcGetMemHandle_v4010>(f)(nullptr, 0); }},
      {"cuIpcOpenMemHandle",
       [](void* f, const context&) { return as<PFN_cuIpcOpenMemHandle_v4010>(f)(nullptr, CUipcMemHandle{}, 0); }},
      {"cuIpcOpenMemHandle_v2",
       [](void* f, const context&) { return as<PFN_cuIpcOpenMemHandle_v11000>(f)(nullptr, CUipcMemHandle{}, 0); }},
      {"cuIpcCloseMemHandle", [](void* f, const context&) { return as<PFN_cuIpcCloseMemHandle_v4010>(f)(0); }},
      {"cuStreamCreate", [](void* f, const context&) { return as<PFN_cuStreamCreate_v2000>(f)(nullptr, 0); }},
      {"cuStreamCreateWithPriority",
       [](void* f, const context&) { return as<PFN_cuStreamCreateWithPriority_v5050>(f)(nullptr, 0, 0); }},
      // A stream of our own to destroy (created before the counts are taken).
      {"cuStreamDestroy", [](void* f, const context&) { return as<PFN_cuStreamDestroy_v2000>(f)(nullptr); }},
      {"cuStreamDestroy_v2", [](void* f, const context&) { return as<PFN_cuStreamDestroy_v4000>(f)(nullptr); }},
      {"cuCtxCreate", [](void* f, const context& c) { return as<PFN_cuCtxCreate_v2000>(f)(nullptr, 0, c.dev); }},
      {"cuCtxCreate_v2", [](void* f, const context& c) { return as<PFN_cuCtxCreate_v3020>(f)(nullptr, 0, c.dev); }},
      {"cuCtxCreate_v3",
       [](void* f, const context& c) { return as<PFN_cuCtxCreate_v11040>(f)(nullptr, nullptr, 0, 0, c.dev); }},
      {"cuCtxCreate_v4",
       [](void* f, const context& c) { return as<PFN_cuCtxCreate_v12050>(f)(nullptr, nullptr, 0, c.dev); }},
      {"cuCtxDestroy", [](void* f, const context&) { return as<PFN_cuCtxDestroy_v2000>(f)(nullptr); }},
      {"cuCtxDestroy_v2", [](void* f, const context&) { return as<PFN_cuCtxDestroy_v4000>(f)(nullptr); }},
      {"cuDevicePrimaryCtxRetain",
       [](void* f, const context& c) { return as<PFN_cuDevicePrimaryCtxRetain_v7000>(f)(nullptr, c.dev); }},
      {"cuDevicePrimaryCtxRelease",
       [](void* f, const context&) { return as<PFN_cuDevicePrimaryCtxRelease_v7000>(f)(-1); }},
      {"cuDevicePrimaryCtxRelease_v2",
       [](void* f, const context&) { return as<PFN_cuDevicePrimaryCtxRelease_v11000>(f)(-1); }},
      {"cuDevicePrimaryCtxReset", [](void* f, const context&) { return as<PFN_cuDevicePrimaryCtxReset_v7000>(f)(-1); }},
      {"cuDevicePrimaryCtxReset_v2",
       [](void* f, const context&) { return as<PFN_cuDevicePrimaryCtxReset_v11000>(f)(-1); }},
      {"cuStreamBeginCapture",
       [](void* f, const context&) { return as<PFN_cuStreamBeginCapture_v10000>(f)(CU_STREAM_LEGACY); }},
      {"cuStreamBeginCapture_ptsz",
       [](void* f, const context&) { return as<PFN_cuStreamBeginCapture_v10000_ptsz>(f)(CU_STREAM_LEGACY); }},
      {"cuStreamBeginCapture_v2",
       [](void* f, const context&) {
         return as<PFN_cuStreamBeginCapture_v10010>(f)(CU_STREAM_LEGACY, CU_STREAM_CAPTURE_MODE_GLOBAL);
       }},
      {"cuStreamBeginCapture_v2_ptsz",
       [](void* f, const context&) {
         return as<PFN_cuStreamBeginCapture_v10010_ptsz>(f)(CU_STREAM_LEGACY, CU_STREAM_CAPTURE_MODE_GLOBAL);
       }},
      {"cuStreamEndCapture",
       [](void* f, const context&) {
         CUgraph g = nullptr;
         return as<PFN_cuStreamEndCapture_v10000>(f)(CU_STREAM_LEGACY, &g);
       }},
      {"cuStreamEndCapture_ptsz",
       [](void* f, const context&) {
         CUgraph g = nullptr;
         return as<PFN_cuStreamEndCapture_v10000_ptsz>(f)(CU_STREAM_LEGACY, &g);
       }},
      {"cuGetProcAddress",
       [](void* f, const context&) {
         void* p = nullptr;
         return as<PFN_cuGetProcAddress_v11030>(f)("cuInit", &p, 2000, 0);
       }},
      {"cuGetProcAddress_v2",
       [](void* f, const context&) {
         void* p = nullptr;
         CUdriverProcAddressQueryResult st{};
         return as<PFN_cuGetProcAddress_v12000>(f)("cuInit", &p, 2000, 0, &st);
       }},
  };
  return calls;
}

PFN_cuGetProcAddress_v12000 g_gpa = nullptr;

void* lookup(const char* symbol, int version, unsigned long long flags) {
  void* p = nullptr;
  CUdriverProcAddressQueryResult st{};
  if (g_gpa(symbol, &p, version, flags, &st) != CUDA_SUCCESS || st != CU_GET_PROC_ADDRESS_SUCCESS) return nullptr;
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  const char* fixture = nullptr;
  const char* out_path = nullptr;
  bool call = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--call") == 0) {
      call = true;
    } else if (std::strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
      out_path = argv[++i];
    } else if (argv[i][0] != '-' && fixture == nullptr) {
      fixture = argv[i];
    } else {
      std::fprintf(stderr, "usage: lookup_replay FIXTURE.tsv [--call] [--out FILE]\n");
      return 2;
    }
  }
  if (fixture == nullptr) {
    std::fprintf(stderr, "usage: lookup_replay FIXTURE.tsv [--call] [--out FILE]\n");
    return 2;
  }
  std::vector<row> rows = read_fixture(fixture);
  if (out_path != nullptr && (g_out = std::fopen(out_path, "w")) == nullptr) {
    std::fprintf(stderr, "lookup_replay: cannot write %s\n", out_path);
    return 2;
  }

  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    std::fprintf(stderr, "lookup_replay: cannot load libcuda.so.1: %s\n", dlerror());
    return 2;
  }
  g_gpa = reinterpret_cast<PFN_cuGetProcAddress_v12000>(dlsym(lib, "cuGetProcAddress_v2"));
  if (g_gpa == nullptr) {
    std::fprintf(stderr, "lookup_replay: libcuda.so.1 has no cuGetProcAddress_v2\n");
    return 2;
  }
  auto sim_calls = reinterpret_cast<unsigned long long (*)(const char*)>(dlsym(lib, "poolshim_sim_calls"));
  auto hook_name = reinterpret_cast<poolshim_hook_name_fn>(dlsym(RTLD_DEFAULT, "poolshim_hook_name"));
  auto get_counters = reinterpret_cast<poolshim_get_counters_fn>(dlsym(RTLD_DEFAULT, "poolshim_get_counters"));

  // What cudart does first: cuInit, then the primary context of the device made current.
  CUdevice dev = 0;
  CUcontext ctx = nullptr;
  auto init = as<PFN_cuInit_v2000>(lookup("cuInit", 2000, 0));
  auto device_get = as<PFN_cuDeviceGet_v2000>(lookup("cuDeviceGet", 2000, 0));
  auto retain = as<PFN_cuDevicePrimaryCtxRetain_v7000>(lookup("cuDevicePrimaryCtxRetain", 7000, 0));
  auto set_current = as<PFN_cuCtxSetCurrent_v4000>(lookup("cuCtxSetCurrent", 4000, 0));
  CUresult r = CUDA_ERROR_NOT_FOUND;
  if (init == nullptr || device_get == nullptr || retain == nullptr || set_current == nullptr ||
      (r = init(0)) != CUDA_SUCCESS || (r = device_get(&dev, 0)) != CUDA_SUCCESS ||
      (r = retain(&ctx, dev)) != CUDA_SUCCESS || (r = set_current(ctx)) != CUDA_SUCCESS) {
    std::fprintf(stderr, "lookup_replay: no current context on device 0 (CUresult %d)\n", static_cast<int>(r));
    return 2;
  }

  poolshim_counters before{};
  if (get_counters != nullptr) get_counters(&before, sizeof before);

  std::vector<void*> answers;
  for (const row& rw : rows) {
    const std::string symbol = rw.symbol == "(empty)" ? std::string() : rw.symbol;
    void* p = nullptr;
    CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    CUresult res = g_gpa(symbol.c_str(), &p, rw.version, rw.flags, &st);
    if (res != CUDA_SUCCESS) p = nullptr;
    answers.push_back(p);
    std::string object, name;
    describe(p, &object, &name);
    std::fprintf(g_out, "row\t%s\t%s\t%d\t%llu\t%d\t%d\t%s\t%s\n", rw.order.c_str(), rw.symbol.c_str(), rw.version,
                 rw.flags, static_cast<int>(res), static_cast<int>(st), object.c_str(), name.c_str());
  }

  poolshim_counters after{};
  if (get_counters != nullptr) get_counters(&after, sizeof after);

  std::map<std::string, unsigned> hook_rows;
  if (hook_name != nullptr) {
    for (unsigned i = 0; i < POOLSHIM_MAX_HOOKS; ++i) {
      const char* n = hook_name(i);
      if (n == nullptr) break;
      hook_rows[n] = i;
      std::fprintf(g_out, "hook\t%u\t%s\n", i, n);
    }
  }

  if (call) {
    const context c{dev};
    std::set<void*> called;
    auto create_stream = as<PFN_cuStreamCreate_v2000>(lookup("cuStreamCreate", 2000, 0));
    for (std::size_t i = 0; i < rows.size(); ++i) {
      void* p = answers[i];
      if (p == nullptr || !called.insert(p).second) continue;
      std::string object, name;
      describe(p, &object, &name);
      if (object != "libpoolshim.so") continue;  // not a wrapper: nothing of the shim's to call
      auto it = harmless_calls().find(name);
      if (it == harmless_calls().end()) {
        std::fprintf(g_out, "call\t%s\t%s\t%s\t-\tsim=n/a\tshim=n/a\tFAIL: no harmless call known for %s\n",
                     rows[i].order.c_str(), rows[i].symbol.c_str(), name.c_str(), name.c_str());
        continue;
      }
      // cuStreamDestroy gets a stream of its own, created before the counts are taken.
      CUstream own = nullptr;
      const bool destroys_stream = name == "cuStreamDestroy" || name == "cuStreamDestroy_v2";
      if (destroys_stream && create_stream != nullptr) (void)create_stream(&own, CU_STREAM_NON_BLOCKING);
      const unsigned long long sim_before = sim_calls ? sim_calls(name.c_str()) : 0;
      poolshim_counters shim_before{};
      if (get_counters != nullptr) get_counters(&shim_before, sizeof shim_before);
      CUresult res = destroys_stream && own != nullptr
                         ? (name == "cuStreamDestroy" ? as<PFN_cuStreamDestroy_v2000>(p)(own)
                                                      : as<PFN_cuStreamDestroy_v4000>(p)(own))
                         : it->second(p, c);
      const unsigned long long sim_after = sim_calls ? sim_calls(name.c_str()) : 0;
      poolshim_counters shim_after{};
      if (get_counters != nullptr) get_counters(&shim_after, sizeof shim_after);
      std::string verdict = "ok";
      char sim_text[32] = "sim=n/a", shim_text[32] = "shim=n/a";
      if (sim_calls != nullptr) {
        std::snprintf(sim_text, sizeof sim_text, "sim=+%llu", sim_after - sim_before);
        if (sim_after - sim_before != 1) verdict = "FAIL: the driver's " + name + " was not entered exactly once";
      }
      auto hook = hook_rows.find(name);
      if (hook == hook_rows.end() || get_counters == nullptr) {
        verdict = "FAIL: the shim has no hook row named " + name;
      } else {
        const unsigned long long d = shim_after.hook_calls[hook->second] - shim_before.hook_calls[hook->second];
        std::snprintf(shim_text, sizeof shim_text, "shim=+%llu", d);
        if (d != 1 && verdict == "ok") verdict = "FAIL: the shim did not count the call once under " + name;
      }
      std::fprintf(g_out, "call\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", rows[i].order.c_str(), rows[i].symbol.c_str(),
                   name.c_str(), static_cast<int>(res), sim_text, shim_text, verdict.c_str());
      // A capture that began after all (a driver that allows it on the legacy stream) is ended.
      if (res == CUDA_SUCCESS && name.rfind("cuStreamBeginCapture", 0) == 0) {
        const bool pt = name.find("_ptsz") != std::string::npos;
        if (auto end = as<PFN_cuStreamEndCapture_v10000>(lookup("cuStreamEndCapture", 10000, pt ? 2 : 0))) {
          CUgraph g = nullptr;
          (void)end(CU_STREAM_LEGACY, &g);
        }
      }
    }
  }

  if (get_counters != nullptr) {
    std::fprintf(g_out, "counters\tlookups=%llu\tlookups_wrapped=%llu\tlookups_unknown=%llu\n",
                 static_cast<unsigned long long>(after.lookups - before.lookups),
                 static_cast<unsigned long long>(after.lookups_wrapped - before.lookups_wrapped),
                 static_cast<unsigned long long>(after.lookups_unknown - before.lookups_unknown));
  }
  std::fprintf(g_out, "sim_calls\t%s\n", sim_calls ? "present" : "absent");

  if (auto release = as<PFN_cuDevicePrimaryCtxRelease_v11000>(lookup("cuDevicePrimaryCtxRelease", 11000, 0))) {
    (void)set_current(nullptr);
    (void)release(dev);
  }
  if (g_out != stdout) std::fclose(g_out);
  return 0;
}

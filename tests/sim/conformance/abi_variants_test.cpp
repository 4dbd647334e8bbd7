// Driver ABI variants: cuGetProcAddress_v2 answers an old cudaVersion with the old variant's own
// export (cuMemAlloc@2000 is the export "cuMemAlloc", @3020 "cuMemAlloc_v2"), the per-thread flag
// picks the _ptds/_ptsz export from the version that introduced it, and each old variant behaves
// as its ABI says. What the old ABIs do on a real driver is unverified (tests/sim/README.md,
// "Driver entry points"): on a GPU these tests are the check. Call counts use the simulator's test
// hook poolshim_sim_calls, so those tests skip where it is absent (a real libcuda.so.1).
#include <cudaTypedefs.h>
#include <dlfcn.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <thread>

#include "conformance.h"

namespace conformance {
namespace {

// The old ABIs' prototypes (cudaTypedefs.h declares them only for __CUDA_API_VERSION_INTERNAL).
using mem_alloc_v1_fn = CUresult (*)(unsigned int* dptr, unsigned int bytesize);
using device_total_mem_v1_fn = CUresult (*)(unsigned int* bytes, CUdevice dev);
using mem_get_info_v1_fn = CUresult (*)(unsigned int* free, unsigned int* total);
using begin_capture_v1_fn = CUresult (*)(CUstream s);
using capture_info_v1_fn = CUresult (*)(CUstream s, CUstreamCaptureStatus* status, cuuint64_t* id);
using capture_info_v2_fn = CUresult (*)(CUstream s, CUstreamCaptureStatus* status, cuuint64_t* id, CUgraph* graph,
                                        const CUgraphNode** deps, size_t* ndeps);
using primary_release_v1_fn = CUresult (*)(CUdevice dev);
using sim_calls_fn = unsigned long long (*)(const char* export_name);

// The driver library cudart loaded (the simulator here, libcuda.so.1 on a GPU machine).
void* libcuda() {
  static void* lib = [] {
    (void)cudaFree(nullptr);  // cudart loads the driver at its first call
    return dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  }();
  return lib;
}
void* export_named(const char* name) { return libcuda() ? dlsym(libcuda(), name) : nullptr; }

// cuGetProcAddress_v2 of the driver itself (not through cudart), so that the exact cudaVersion
// and flags reach the driver.
void* proc(const char* symbol, int version, cuuint64_t flags = CU_GET_PROC_ADDRESS_DEFAULT,
           CUdriverProcAddressQueryResult* status_out = nullptr) {
  auto get = reinterpret_cast<PFN_cuGetProcAddress_v12000>(export_named("cuGetProcAddress_v2"));
  EXPECT_NE(nullptr, get);
  if (get == nullptr) return nullptr;
  void* fn = nullptr;
  CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
  EXPECT_EQ(CUDA_SUCCESS, get(symbol, &fn, version, flags, &status)) << symbol << "@" << version;
  if (status_out) *status_out = status;
  return fn;
}

sim_calls_fn sim_calls() { return reinterpret_cast<sim_calls_fn>(export_named("poolshim_sim_calls")); }
#define POOLSHIM_SKIP_WITHOUT_CALL_COUNTS()                                                        \
  do {                                                                                             \
    if (sim_calls() == nullptr) GTEST_SKIP() << "no poolshim_sim_calls: not the simulated driver"; \
  } while (0)

struct variant {
  const char* symbol;
  int version;
  cuuint64_t flags;
  const char* export_name;
};

TEST(DriverEntryPoints, EachVersionGetsItsOwnVariantsExport) {
  ASSERT_NE(nullptr, libcuda());
  const variant cases[] = {
      {"cuMemAlloc", 2000, 0, "cuMemAlloc"},
      {"cuMemAlloc", 3010, 0, "cuMemAlloc"},
      {"cuMemAlloc", 3020, 0, "cuMemAlloc_v2"},
      {"cuMemAlloc", 13000, 0, "cuMemAlloc_v2"},
      {"cuMemFree", 2000, 0, "cuMemFree"},
      {"cuMemFree", 3020, 0, "cuMemFree_v2"},
      {"cuMemGetInfo", 2000, 0, "cuMemGetInfo"},
      {"cuMemGetInfo", 3020, 0, "cuMemGetInfo_v2"},
      {"cuDeviceTotalMem", 2000, 0, "cuDeviceTotalMem"},
      {"cuDeviceTotalMem", 3020, 0, "cuDeviceTotalMem_v2"},
      {"cuCtxDestroy", 2000, 0, "cuCtxDestroy"},
      {"cuCtxDestroy", 4000, 0, "cuCtxDestroy_v2"},
      {"cuMemcpyHtoD", 2000, 0, "cuMemcpyHtoD"},
      {"cuMemcpyHtoD", 3020, 0, "cuMemcpyHtoD_v2"},
      {"cuMemcpyDtoDAsync", 3000, 0, "cuMemcpyDtoDAsync"},
      {"cuMemcpyDtoDAsync", 3020, 0, "cuMemcpyDtoDAsync_v2"},
      {"cuDevicePrimaryCtxRelease", 7000, 0, "cuDevicePrimaryCtxRelease"},
      {"cuDevicePrimaryCtxRelease", 11000, 0, "cuDevicePrimaryCtxRelease_v2"},
      {"cuIpcOpenMemHandle", 4010, 0, "cuIpcOpenMemHandle"},
      {"cuIpcOpenMemHandle", 11000, 0, "cuIpcOpenMemHandle_v2"},
      {"cuStreamBeginCapture", 10000, 0, "cuStreamBeginCapture"},
      {"cuStreamBeginCapture", 10010, 0, "cuStreamBeginCapture_v2"},
      {"cuStreamGetCaptureInfo", 10010, 0, "cuStreamGetCaptureInfo"},
      {"cuStreamGetCaptureInfo", 11030, 0, "cuStreamGetCaptureInfo_v2"},
      {"cuStreamGetCaptureInfo", 12030, 0, "cuStreamGetCaptureInfo_v3"},
      {"cuEventElapsedTime", 2000, 0, "cuEventElapsedTime"},
      {"cuEventElapsedTime", 12080, 0, "cuEventElapsedTime_v2"},
      {"cuStreamWriteValue64", 9000, 0, "cuStreamWriteValue64"},
      {"cuStreamWriteValue64", 11070, 0, "cuStreamWriteValue64_v2"},
      // LEGACY_STREAM (1) picks the legacy variants like DEFAULT.
      {"cuMemcpyHtoD", 13000, 1, "cuMemcpyHtoD_v2"},
      {"cuStreamSynchronize", 13000, 1, "cuStreamSynchronize"},
  };
  for (const variant& v : cases) {
    SCOPED_TRACE(::testing::Message() << v.symbol << "@" << v.version << " flags " << v.flags);
    void* want = export_named(v.export_name);
    ASSERT_NE(nullptr, want) << "the driver exports " << v.export_name;
    CUdriverProcAddressQueryResult status{};
    EXPECT_EQ(want, proc(v.symbol, v.version, v.flags, &status)) << "expected the export " << v.export_name;
    EXPECT_EQ(CU_GET_PROC_ADDRESS_SUCCESS, status);
  }
  // The variants are distinct functions.
  EXPECT_NE(export_named("cuMemAlloc"), export_named("cuMemAlloc_v2"));
  EXPECT_NE(export_named("cuEventElapsedTime"), export_named("cuEventElapsedTime_v2"));
  EXPECT_NE(export_named("cuStreamBeginCapture"), export_named("cuStreamBeginCapture_ptsz"));
}

TEST(DriverEntryPoints, PerThreadFlagTakesThePerThreadExportFromItsOwnVersion) {
  ASSERT_NE(nullptr, libcuda());
  constexpr cuuint64_t pt = CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
  const variant cases[] = {
      // cuMemcpyHtoD_v2_ptds is PFN_cuMemcpyHtoD_v7000_ptds: NVIDIA's cudart asks @7000 flags 2.
      {"cuMemcpyHtoD", 7000, pt, "cuMemcpyHtoD_v2_ptds"},
      {"cuMemcpyHtoD", 13000, pt, "cuMemcpyHtoD_v2_ptds"},
      // Below the per-thread variant's version the newest legacy variant answers (UNV).
      {"cuMemcpyHtoD", 6050, pt, "cuMemcpyHtoD_v2"},
      {"cuMemcpyHtoD", 2000, pt, "cuMemcpyHtoD"},
      {"cuStreamSynchronize", 7000, pt, "cuStreamSynchronize_ptsz"},
      {"cuStreamSynchronize", 2000, pt, "cuStreamSynchronize"},
      {"cuMemcpyAsync", 4000, pt, "cuMemcpyAsync"},
      {"cuMemcpyAsync", 7000, pt, "cuMemcpyAsync_ptsz"},
      // Several per-thread variants: the newest not above the version.
      {"cuStreamBeginCapture", 10000, pt, "cuStreamBeginCapture_ptsz"},
      {"cuStreamBeginCapture", 10010, pt, "cuStreamBeginCapture_v2_ptsz"},
      {"cuStreamGetCaptureInfo", 10010, pt, "cuStreamGetCaptureInfo_ptsz"},
      {"cuStreamGetCaptureInfo", 11030, pt, "cuStreamGetCaptureInfo_v2_ptsz"},
      {"cuStreamGetCaptureInfo", 13000, pt, "cuStreamGetCaptureInfo_v3_ptsz"},
      {"cuMemAllocAsync", 11020, pt, "cuMemAllocAsync_ptsz"},
      // No per-thread variant at all: the legacy one.
      {"cuMemAlloc", 13000, pt, "cuMemAlloc_v2"},
  };
  for (const variant& v : cases) {
    SCOPED_TRACE(::testing::Message() << v.symbol << "@" << v.version << " flags " << v.flags);
    void* want = export_named(v.export_name);
    ASSERT_NE(nullptr, want) << "the driver exports " << v.export_name;
    EXPECT_EQ(want, proc(v.symbol, v.version, v.flags)) << "expected the export " << v.export_name;
  }
}

TEST(DriverEntryPoints, OldVersionsOfNewerSymbolsAreStillNotSufficient) {
  ASSERT_NE(nullptr, libcuda());
  CUdriverProcAddressQueryResult status{};
  EXPECT_EQ(nullptr, proc("cuStreamBeginCapture", 9020, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, &status));
  EXPECT_EQ(CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT, status);
  EXPECT_EQ(nullptr, proc("cuLibraryLoadData", 11080, CU_GET_PROC_ADDRESS_DEFAULT, &status));
  EXPECT_EQ(CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT, status);
}

// Finds the full address of a v1 allocation from its low 32 bits: device allocations of one
// context lie close together, so it is in the 4 GiB window of a fresh _v2 allocation or next to it.
CUdeviceptr widen(unsigned int low, std::size_t size) {
  auto alloc = reinterpret_cast<PFN_cuMemAlloc_v3020>(proc("cuMemAlloc", 3020));
  auto free_ = reinterpret_cast<PFN_cuMemFree_v3020>(proc("cuMemFree", 3020));
  auto range = reinterpret_cast<PFN_cuMemGetAddressRange_v3020>(proc("cuMemGetAddressRange", 3020));
  if (!alloc || !free_ || !range) return 0;
  CUdeviceptr probe = 0;
  if (alloc(&probe, 4096) != CUDA_SUCCESS) return 0;
  const CUdeviceptr window = probe & ~CUdeviceptr{0xffffffffu};
  (void)free_(probe);
  for (CUdeviceptr w : {window, window - (CUdeviceptr{1} << 32), window + (CUdeviceptr{1} << 32)}) {
    CUdeviceptr base = 0;
    std::size_t n = 0;
    if (range(&base, &n, w | low) == CUDA_SUCCESS && base == (w | low) && n == size) return base;
  }
  return 0;
}

TEST(DriverEntryPoints, MemAllocV1ReturnsTheLowHalfOfTheAllocation) {
  init_device0();
  auto alloc_v1 = reinterpret_cast<mem_alloc_v1_fn>(proc("cuMemAlloc", 2000));
  auto free_v2 = reinterpret_cast<PFN_cuMemFree_v3020>(proc("cuMemFree", 3020));
  ASSERT_NE(nullptr, alloc_v1);
  ASSERT_NE(nullptr, free_v2);
  constexpr unsigned int size = 3 * 4096 + 8;
  unsigned int low = 0;
  ASSERT_EQ(CUDA_SUCCESS, alloc_v1(&low, size));
  EXPECT_NE(0u, low);
  // The allocation was made in full; the caller got its low 32 bits (UNV; CUDA.jl #5).
  const CUdeviceptr full = widen(low, size);
  ASSERT_NE(0u, full) << "no live allocation of " << size << " bytes ends in 0x" << std::hex << low;
  EXPECT_EQ(low, static_cast<unsigned int>(full & 0xffffffffu));
  EXPECT_EQ(CUDA_SUCCESS, free_v2(full));
  unsigned int none = 0;
  EXPECT_EQ(CUDA_ERROR_INVALID_VALUE, alloc_v1(&none, 0));  // as v2: size 0 is an error
}

TEST(DriverEntryPoints, SizesFromV1QueriesAreClampedTo32Bits) {
  init_device0();
  auto total_v1 = reinterpret_cast<device_total_mem_v1_fn>(proc("cuDeviceTotalMem", 2000));
  auto total_v2 = reinterpret_cast<PFN_cuDeviceTotalMem_v3020>(proc("cuDeviceTotalMem", 3020));
  auto info_v1 = reinterpret_cast<mem_get_info_v1_fn>(proc("cuMemGetInfo", 2000));
  auto info_v2 = reinterpret_cast<PFN_cuMemGetInfo_v3020>(proc("cuMemGetInfo", 3020));
  ASSERT_TRUE(total_v1 && total_v2 && info_v1 && info_v2);
  std::size_t total = 0;
  ASSERT_EQ(CUDA_SUCCESS, total_v2(&total, 0));
  unsigned int total32 = 0;
  ASSERT_EQ(CUDA_SUCCESS, total_v1(&total32, 0));
  // BOINC #1773: cuDeviceTotalMem v1 reports at most 4 GiB (UNV).
  EXPECT_EQ(total > UINT_MAX ? UINT_MAX : total, total32);
  std::size_t free_bytes = 0;
  ASSERT_EQ(CUDA_SUCCESS, info_v2(&free_bytes, &total));
  unsigned int free32 = 0;
  ASSERT_EQ(CUDA_SUCCESS, info_v1(&free32, &total32));
  EXPECT_EQ(total > UINT_MAX ? UINT_MAX : total, total32);
  // Free is racy and, under an allocator, may count its idle memory in v2 only: within the total.
  EXPECT_LE(free32, total32);
}

TEST(DriverEntryPoints, BeginCaptureV1CapturesInGlobalMode) {
  init_device0();
  auto begin_v1 = reinterpret_cast<begin_capture_v1_fn>(proc("cuStreamBeginCapture", 10000));
  auto info_v1 = reinterpret_cast<capture_info_v1_fn>(proc("cuStreamGetCaptureInfo", 10010));
  auto info_v2 = reinterpret_cast<capture_info_v2_fn>(proc("cuStreamGetCaptureInfo", 11030));
  auto end = reinterpret_cast<PFN_cuStreamEndCapture_v10000>(proc("cuStreamEndCapture", 10000));
  ASSERT_TRUE(begin_v1 && info_v1 && info_v2 && end);
  auto s = make_stream(cudaStreamNonBlocking);
  ASSERT_EQ(CUDA_SUCCESS, begin_v1(s.get()));
  CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
  cuuint64_t id = 0;
  ASSERT_EQ(CUDA_SUCCESS, info_v1(s.get(), &st, &id));
  EXPECT_EQ(CU_STREAM_CAPTURE_STATUS_ACTIVE, st);
  EXPECT_NE(0u, id);
  // v2 (11030): v3 without the edge data.
  CUstreamCaptureStatus st2 = CU_STREAM_CAPTURE_STATUS_NONE;
  cuuint64_t id2 = 0;
  CUgraph graph = nullptr;
  const CUgraphNode* deps = nullptr;
  std::size_t ndeps = 99;
  ASSERT_EQ(CUDA_SUCCESS, info_v2(s.get(), &st2, &id2, &graph, &deps, &ndeps));
  EXPECT_EQ(CU_STREAM_CAPTURE_STATUS_ACTIVE, st2);
  EXPECT_EQ(id, id2);
  EXPECT_NE(nullptr, graph);
  EXPECT_EQ(0u, ndeps);  // nothing captured yet
  // Global mode: another thread (itself in the default Global mode) may not allocate, and doing
  // so invalidates the capture (CUDA_FACTS §4). A ThreadLocal capture would allow it.
  cudaError_t other = cudaSuccess;
  std::thread t([&] {
    (void)cudaSetDevice(0);
    void* p = nullptr;
    other = cudaMalloc(&p, 256);
    if (other == cudaSuccess) cudaFree(p);
    (void)cudaGetLastError();
  });
  t.join();
  EXPECT_EQ(cudaErrorStreamCaptureUnsupported, other);
  ASSERT_EQ(CUDA_SUCCESS, info_v1(s.get(), &st, &id));
  EXPECT_EQ(CU_STREAM_CAPTURE_STATUS_INVALIDATED, st);
  CUgraph out = nullptr;
  EXPECT_EQ(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, end(s.get(), &out));
  EXPECT_EQ(nullptr, out);
  ASSERT_EQ(CUDA_SUCCESS, info_v1(s.get(), &st, &id));
  EXPECT_EQ(CU_STREAM_CAPTURE_STATUS_NONE, st);
}

TEST(DriverEntryPoints, PrimaryCtxReleaseV1ReleasesARetain) {
  init_device0();
  const CUdevice dev = device_count() > 1 ? 1 : 0;  // device 1: the runtime may not hold it yet
  auto retain = reinterpret_cast<PFN_cuDevicePrimaryCtxRetain_v7000>(proc("cuDevicePrimaryCtxRetain", 7000));
  auto release_v1 = reinterpret_cast<primary_release_v1_fn>(proc("cuDevicePrimaryCtxRelease", 7000));
  auto get_state = reinterpret_cast<PFN_cuDevicePrimaryCtxGetState_v7000>(proc("cuDevicePrimaryCtxGetState", 7000));
  ASSERT_TRUE(retain && release_v1 && get_state);
  unsigned flags = 0;
  int active_before = -1;
  ASSERT_EQ(CUDA_SUCCESS, get_state(dev, &flags, &active_before));
  CUcontext ctx = nullptr;
  ASSERT_EQ(CUDA_SUCCESS, retain(&ctx, dev));
  EXPECT_NE(nullptr, ctx);
  int active = -1;
  ASSERT_EQ(CUDA_SUCCESS, get_state(dev, &flags, &active));
  EXPECT_EQ(1, active);
  ASSERT_EQ(CUDA_SUCCESS, release_v1(dev));
  ASSERT_EQ(CUDA_SUCCESS, get_state(dev, &flags, &active));
  EXPECT_EQ(active_before, active) << "the v7000 release undoes exactly one retain";
}

TEST(DriverEntryPoints, CallCountsNameTheVariantThatRan) {
  POOLSHIM_SKIP_WITHOUT_CALL_COUNTS();
  init_device0();
  sim_calls_fn calls = sim_calls();
  auto sync_legacy = reinterpret_cast<PFN_cuStreamSynchronize_v2000>(proc("cuStreamSynchronize", 13000));
  auto sync_pt = reinterpret_cast<PFN_cuStreamSynchronize_v7000_ptsz>(
      proc("cuStreamSynchronize", 7000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM));
  auto total_v1 = reinterpret_cast<device_total_mem_v1_fn>(proc("cuDeviceTotalMem", 2000));
  auto total_v2 = reinterpret_cast<PFN_cuDeviceTotalMem_v3020>(proc("cuDeviceTotalMem", 3020));
  ASSERT_TRUE(sync_legacy && sync_pt && total_v1 && total_v2);

  const unsigned long long legacy_before = calls("cuStreamSynchronize");
  const unsigned long long pt_before = calls("cuStreamSynchronize_ptsz");
  EXPECT_EQ(CUDA_SUCCESS, sync_pt(nullptr));  // this thread's per-thread stream
  EXPECT_EQ(pt_before + 1, calls("cuStreamSynchronize_ptsz"));
  EXPECT_EQ(legacy_before, calls("cuStreamSynchronize")) << "the _ptsz export must not count as the legacy one";
  EXPECT_EQ(CUDA_SUCCESS, sync_legacy(nullptr));
  EXPECT_EQ(legacy_before + 1, calls("cuStreamSynchronize"));

  const unsigned long long v1_before = calls("cuDeviceTotalMem"), v2_before = calls("cuDeviceTotalMem_v2");
  unsigned int total32 = 0;
  ASSERT_EQ(CUDA_SUCCESS, total_v1(&total32, 0));
  EXPECT_EQ(v1_before + 1, calls("cuDeviceTotalMem"));
  EXPECT_EQ(v2_before, calls("cuDeviceTotalMem_v2")) << "the v1 export must not count as v2";
  std::size_t total = 0;
  ASSERT_EQ(CUDA_SUCCESS, total_v2(&total, 0));
  EXPECT_EQ(v1_before + 1, calls("cuDeviceTotalMem"));
  EXPECT_EQ(v2_before + 1, calls("cuDeviceTotalMem_v2"));

  EXPECT_EQ(0u, calls("cuNoSuchExportPoolshim"));
  EXPECT_EQ(0u, calls(nullptr));
}

// The same for allocations; an allocator preloaded in front of the driver (the shim's
// sim_conformance_under_shim_* runs) may serve them from its pool without reaching the driver.
TEST(DriverEntryPoints, CallCountsOfAllocationsNameTheVariantThatRan) {
  POOLSHIM_SKIP_WITHOUT_CALL_COUNTS();
  if (const char* preload = std::getenv("LD_PRELOAD"); preload != nullptr && *preload != '\0')
    GTEST_SKIP() << "LD_PRELOAD is set: an interposer may pool allocations";
  init_device0();
  sim_calls_fn calls = sim_calls();
  auto alloc_v1 = reinterpret_cast<mem_alloc_v1_fn>(proc("cuMemAlloc", 2000));
  auto alloc_v2 = reinterpret_cast<PFN_cuMemAlloc_v3020>(proc("cuMemAlloc", 3020));
  auto free_v2 = reinterpret_cast<PFN_cuMemFree_v3020>(proc("cuMemFree", 3020));
  ASSERT_TRUE(alloc_v1 && alloc_v2 && free_v2);
  const unsigned long long v1_before = calls("cuMemAlloc"), v2_before = calls("cuMemAlloc_v2");
  unsigned int low = 0;
  ASSERT_EQ(CUDA_SUCCESS, alloc_v1(&low, 4096));
  EXPECT_EQ(v1_before + 1, calls("cuMemAlloc"));
  EXPECT_EQ(v2_before, calls("cuMemAlloc_v2")) << "the v1 export must not count as v2";
  CUdeviceptr d = 0;
  ASSERT_EQ(CUDA_SUCCESS, alloc_v2(&d, 4096));
  EXPECT_EQ(v1_before + 1, calls("cuMemAlloc"));
  EXPECT_EQ(v2_before + 1, calls("cuMemAlloc_v2"));
  EXPECT_EQ(CUDA_SUCCESS, free_v2(d));
  if (CUdeviceptr full = widen(low, 4096); full != 0) {
    EXPECT_EQ(CUDA_SUCCESS, free_v2(full));
  }
}

TEST(DriverEntryPoints, EventElapsedTimeV1IsItsOwnExportWithTheSameResult) {
  init_device0();
  auto elapsed_v1 = reinterpret_cast<PFN_cuEventElapsedTime_v2000>(proc("cuEventElapsedTime", 2000));
  auto elapsed_v2 = reinterpret_cast<PFN_cuEventElapsedTime_v12080>(proc("cuEventElapsedTime", 12080));
  ASSERT_TRUE(elapsed_v1 && elapsed_v2);
  EXPECT_NE(reinterpret_cast<void*>(elapsed_v1), reinterpret_cast<void*>(elapsed_v2));
  auto s = make_stream();
  auto a = make_event();
  auto b = make_event();
  ASSERT_EQ(cudaSuccess, cudaEventRecord(a.get(), s.get()));
  ASSERT_EQ(cudaSuccess, cudaEventRecord(b.get(), s.get()));
  ASSERT_EQ(cudaSuccess, cudaEventSynchronize(b.get()));
  float ms1 = -1, ms2 = -1;
  ASSERT_EQ(CUDA_SUCCESS, elapsed_v1(&ms1, a.get(), b.get()));
  ASSERT_EQ(CUDA_SUCCESS, elapsed_v2(&ms2, a.get(), b.get()));
  EXPECT_EQ(ms1, ms2);
  EXPECT_GE(ms1, 0.0f);
}

// cudart loads its fat binary with cuLibraryLoadData@12000 and unloads it at exit; the simulator
// keeps the handles (no code). A real driver would reject these bytes as an image.
TEST(DriverEntryPoints, LibraryLoadDataAndUnloadKeepHandles) {
  POOLSHIM_SKIP_UNLESS_SIMULATOR("the simulator accepts any bytes as a library image");
  init_device0();
  auto load = reinterpret_cast<PFN_cuLibraryLoadData_v12000>(proc("cuLibraryLoadData", 12000));
  auto unload = reinterpret_cast<PFN_cuLibraryUnload_v12000>(proc("cuLibraryUnload", 12000));
  ASSERT_TRUE(load && unload);
  static const unsigned char image[64] = {0x7f, 'E', 'L', 'F'};
  CUlibrary a = nullptr, b = nullptr;
  ASSERT_EQ(CUDA_SUCCESS, load(&a, image, nullptr, nullptr, 0, nullptr, nullptr, 0));
  ASSERT_EQ(CUDA_SUCCESS, load(&b, image, nullptr, nullptr, 0, nullptr, nullptr, 0));
  EXPECT_NE(nullptr, a);
  EXPECT_NE(a, b) << "one handle per load";
  EXPECT_EQ(CUDA_ERROR_INVALID_VALUE, load(nullptr, image, nullptr, nullptr, 0, nullptr, nullptr, 0));
  EXPECT_EQ(CUDA_SUCCESS, unload(a));
  EXPECT_EQ(CUDA_ERROR_INVALID_HANDLE, unload(a)) << "already unloaded";
  EXPECT_EQ(CUDA_ERROR_INVALID_VALUE, unload(nullptr));
  EXPECT_EQ(CUDA_SUCCESS, unload(b));
}

}  // namespace
}  // namespace conformance

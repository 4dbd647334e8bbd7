// The real segment sources (shim/source) on the simulated driver: the conformance suite for
// cuda_segment_resource, a local host_slab_resource, daemon_fallback_adaptor with no daemon and the
// statistics' observed_segment_adaptor over the driver source, then what only a real source can
// show: its memory is what the driver says (device memory of its context, pinned slabs), the
// device's limit gives out_of_memory, a dead context is a source error that frees nothing else. The
// ctest entries give each device 256 MiB (POOLSHIM_SIM_DEVICE_MEMORY).
#include <cuda.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "source/cuda_segment_resource.h"
#include "source/daemon_client.h"
#include "source/daemon_fallback_adaptor.h"
#include "source/host_slab_resource.h"
#include "source/observed_segment_adaptor.h"
#include "support/segment_resource_suite.h"

namespace poolshim {
namespace {

using pool::segment;
using pool::status;
using pool::suite::kMiB;

// Device 0's primary context, retained once for the whole process (nullptr if the driver fails).
CUcontext primary_context() {
  static const CUcontext ctx = [] {
    CUdevice dev = 0;
    CUcontext c = nullptr;
    if (cuInit(0) != CUDA_SUCCESS || cuDeviceGet(&dev, 0) != CUDA_SUCCESS ||
        cuDevicePrimaryCtxRetain(&c, dev) != CUDA_SUCCESS)
      return CUcontext{nullptr};
    return c;
  }();
  return ctx;
}

// cuMemGetInfo_v2 of device 0, asked in its primary context whatever is current here.
struct device_memory {
  std::size_t free = 0, total = 0;
};
device_memory device0_memory() {
  device_memory m;
  if (cuCtxPushCurrent(primary_context()) != CUDA_SUCCESS) return m;
  if (cuMemGetInfo(&m.free, &m.total) != CUDA_SUCCESS) m = {};
  CUcontext popped = nullptr;
  (void)cuCtxPopCurrent(&popped);
  return m;
}

int open_fds() {
  int n = 0;
  for (int fd = 0; fd < 4096; ++fd) n += fcntl(fd, F_GETFD) != -1 ? 1 : 0;
  return n;
}

// ---- the conformance suite's cases ----

constexpr const char* k_no_injection =
    "the simulator's failures are fixed at start (POOLSHIM_SIM_FAIL_ALLOC_AT); "
    "see SourcesUnderInjectedDriverFailures, its own ctest entry";

// Device sources leave device 0 as they found it: every segment went back to the driver.
struct device_case_base {
  ~device_case_base() {
    const device_memory m = device0_memory();
    EXPECT_EQ(m.free, m.total) << "device memory left allocated after the test";
  }
  std::size_t limit() const { return device0_memory().total; }
  const char* no_limit_reason() const { return ""; }
  bool fail_next_allocation() { return false; }
  const char* no_injection_reason() const { return k_no_injection; }
};

// What the driver promises for cuMemAlloc_v2 is 256 B (CUDA_FACTS: 512 B observed); 2 MiB for large
// allocations is not a promise (see LargeDriverSegmentsAre2MiBAligned below).
constexpr std::size_t k_driver_alignment = 512;

struct cuda_case : device_case_base {
  static constexpr const char* name = "cuda";
  static constexpr std::size_t granule = 1;
  static constexpr std::size_t large_alignment = k_driver_alignment;
  bool ready() const { return primary_context() != nullptr && limit() != 0; }
  pool::segment_resource& resource() { return resource_; }
  cuda_segment_resource resource_{primary_context()};
};

CUuuid uuid_of_device0() {
  CUuuid u{};
  (void)cuDeviceGetUuid_v2(&u, 0);
  return u;
}

// POOLSHIM_SOCKET names no daemon (poolshim_add_sim_test): every segment comes from the upstream.
struct daemon_fallback_case : device_case_base {
  static constexpr const char* name = "daemon_fallback_without_daemon";
  static constexpr std::size_t granule = 1;
  static constexpr std::size_t large_alignment = k_driver_alignment;  // the upstream's
  bool ready() const { return primary_context() != nullptr && limit() != 0; }
  pool::segment_resource& resource() { return resource_; }
  cuda_segment_resource upstream_{primary_context()};
  daemon_fallback_adaptor resource_{primary_context(), 0, uuid_of_device0(), upstream_};
};

struct host_slab_case {
  static constexpr const char* name = "host_slab_local";
  static constexpr std::size_t granule = std::size_t{2} << 20;  // whole 2 MiB-aligned slabs
  static constexpr std::size_t large_alignment = std::size_t{2} << 20;
  bool ready() const { return primary_context() != nullptr; }
  pool::segment_resource& resource() { return resource_; }
  std::size_t limit() const { return 0; }
  const char* no_limit_reason() const {
    return "the simulator sets no limit on pinned memory; a slab fails only when the host refuses memory";
  }
  bool fail_next_allocation() { return false; }
  const char* no_injection_reason() const { return "cuMemHostRegister has no fault injection in the simulator"; }
  host_slab_resource resource_{primary_context(), 2, /*use_daemon=*/false};
};

// What the statistics' listener heard (observed_segment_adaptor): segments taken and given back.
struct heard {
  std::atomic<int> taken{0}, given{0};
  std::atomic<std::size_t> bytes_taken{0}, bytes_given{0};
  std::atomic<int> last_device{-1};
};
heard g_heard;
void hear(int device, std::uintptr_t base, std::size_t bytes, bool taken) noexcept {
  (void)base;
  (taken ? g_heard.taken : g_heard.given).fetch_add(1);
  (taken ? g_heard.bytes_taken : g_heard.bytes_given).fetch_add(bytes);
  g_heard.last_device.store(device);
}

// The driver's source under the listener: conforms like its upstream, and every segment the suite
// took was heard of once taken and once given back, with its size.
struct observed_case : device_case_base {
  static constexpr const char* name = "observed_over_cuda";
  static constexpr std::size_t granule = 1;
  static constexpr std::size_t large_alignment = k_driver_alignment;
  observed_case() { g_heard.taken = g_heard.given = 0, g_heard.bytes_taken = g_heard.bytes_given = 0; }
  ~observed_case() {
    EXPECT_EQ(g_heard.taken.load(), g_heard.given.load()) << "segments heard taken but not given back";
    EXPECT_EQ(g_heard.bytes_taken.load(), g_heard.bytes_given.load());
  }
  bool ready() const { return primary_context() != nullptr && limit() != 0; }
  pool::segment_resource& resource() { return resource_; }
  cuda_segment_resource upstream_{primary_context()};
  observed_segment_adaptor resource_{upstream_, 0, &hear};
};

using real_sources = ::testing::Types<cuda_case, host_slab_case, daemon_fallback_case, observed_case>;

}  // namespace
}  // namespace poolshim

namespace poolshim::pool::suite {
INSTANTIATE_TYPED_TEST_SUITE_P(Simulator, SegmentResource, ::poolshim::real_sources, case_names);
}  // namespace poolshim::pool::suite

namespace poolshim {
namespace {

// ---- what only the real sources can show ----

class SourceOnSimulator : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_ = primary_context();
    ASSERT_NE(ctx_, nullptr);
    ASSERT_EQ(cuCtxSetCurrent(ctx_), CUDA_SUCCESS);
  }
  void TearDown() override {
    const device_memory m = device0_memory();
    EXPECT_EQ(m.free, m.total) << "device memory left allocated after the test";
  }
  template <class T>
  static T attribute(CUpointer_attribute a, std::uintptr_t p, CUresult* r = nullptr) {
    T v{};
    const CUresult got = cuPointerGetAttribute(&v, a, static_cast<CUdeviceptr>(p));
    if (r != nullptr) *r = got;
    return v;
  }
  CUcontext ctx_ = nullptr;
};

using CudaSegmentResource = SourceOnSimulator;
using HostSlabResource = SourceOnSimulator;
using DaemonFallbackAdaptor = SourceOnSimulator;
using ObservedSegmentAdaptor = SourceOnSimulator;

TEST_F(ObservedSegmentAdaptor, HearsEachSegmentTakenAndGivenBackWithItsDeviceAndSize) {
  g_heard.taken = g_heard.given = 0, g_heard.bytes_taken = g_heard.bytes_given = 0;
  cuda_segment_resource upstream(ctx_);
  observed_segment_adaptor r(upstream, 3, &hear);
  segment a, b;
  ASSERT_EQ(r.allocate(2 * kMiB, &a), status::ok);
  ASSERT_EQ(r.allocate(kMiB + 512, &b), status::ok);
  EXPECT_EQ(g_heard.taken.load(), 2);
  EXPECT_EQ(g_heard.bytes_taken.load(), a.size + b.size);
  EXPECT_EQ(g_heard.last_device.load(), 3) << "the device the router named, not the driver's guess";
  segment none;
  EXPECT_EQ(r.allocate(std::size_t{1} << 40, &none), status::out_of_memory);
  EXPECT_EQ(g_heard.taken.load(), 2) << "a failed allocation was heard as a segment";
  r.deallocate(a);
  r.deallocate(b);
  EXPECT_EQ(g_heard.given.load(), 2);
  EXPECT_EQ(g_heard.bytes_given.load(), a.size + b.size);
  EXPECT_STREQ(r.name(), upstream.name());
}

TEST_F(CudaSegmentResource, SegmentIsOneDriverAllocationOfDeviceMemoryInItsContext) {
  cuda_segment_resource r(ctx_);
  segment s;
  ASSERT_EQ(r.allocate(kMiB + 512, &s), status::ok);
  CUresult res = CUDA_ERROR_UNKNOWN;
  EXPECT_EQ(attribute<unsigned>(CU_POINTER_ATTRIBUTE_MEMORY_TYPE, s.base, &res), unsigned{CU_MEMORYTYPE_DEVICE});
  EXPECT_EQ(res, CUDA_SUCCESS);
  EXPECT_EQ(attribute<CUcontext>(CU_POINTER_ATTRIBUTE_CONTEXT, s.base), ctx_);
  EXPECT_EQ(attribute<int>(CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, s.base), 0);
  EXPECT_EQ(attribute<int>(CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE, s.base), 1);
  CUdeviceptr base = 0;
  std::size_t size = 0;
  ASSERT_EQ(cuMemGetAddressRange(&base, &size, static_cast<CUdeviceptr>(s.base + 4096)), CUDA_SUCCESS);
  EXPECT_EQ(base, static_cast<CUdeviceptr>(s.base));
  EXPECT_EQ(size, kMiB + 512);
  EXPECT_EQ(s.cookie, 0u);
  r.deallocate(s);
  EXPECT_EQ(cuMemGetAddressRange(&base, &size, static_cast<CUdeviceptr>(s.base)), CUDA_ERROR_NOT_FOUND)
      << "deallocate did not free the driver allocation";
}

TEST_F(CudaSegmentResource, BytesCopiedIntoASegmentComeBackAndItEndsWhereItsSizeSays) {
  cuda_segment_resource r(ctx_);
  segment s;
  ASSERT_EQ(r.allocate(2 * kMiB, &s), status::ok);
  std::vector<unsigned char> out(2 * kMiB), back(2 * kMiB, 0);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<unsigned char>(i * 7 + 3);
  ASSERT_EQ(cuMemcpyHtoD(static_cast<CUdeviceptr>(s.base), out.data(), out.size()), CUDA_SUCCESS);
  ASSERT_EQ(cuMemcpyDtoH(back.data(), static_cast<CUdeviceptr>(s.base), back.size()), CUDA_SUCCESS);
  EXPECT_EQ(out, back);
  EXPECT_EQ(cuMemcpyHtoD(static_cast<CUdeviceptr>(s.base + s.size - 4), out.data(), 8), CUDA_ERROR_INVALID_VALUE)
      << "a copy past the segment's end was accepted";
  r.deallocate(s);
}

TEST_F(CudaSegmentResource, AllocatesAndFreesInItsOwnContextWhateverIsCurrent) {
  int devices = 0;
  ASSERT_EQ(cuDeviceGetCount(&devices), CUDA_SUCCESS);
  ASSERT_GE(devices, 2) << "POOLSHIM_SIM_DEVICES must be at least 2";
  CUdevice dev1 = 0;
  ASSERT_EQ(cuDeviceGet(&dev1, 1), CUDA_SUCCESS);
  CUcontext other = nullptr;
  ASSERT_EQ(cuCtxCreate(&other, nullptr, 0, dev1), CUDA_SUCCESS);  // current from here
  cuda_segment_resource r(ctx_);
  const std::size_t free_before = device0_memory().free;
  segment s;
  ASSERT_EQ(r.allocate(4 * kMiB, &s), status::ok);
  CUcontext cur = nullptr;
  ASSERT_EQ(cuCtxGetCurrent(&cur), CUDA_SUCCESS);
  EXPECT_EQ(cur, other) << "the caller's context was not restored";
  EXPECT_EQ(attribute<int>(CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, s.base), 0);
  EXPECT_EQ(attribute<CUcontext>(CU_POINTER_ATTRIBUTE_CONTEXT, s.base), ctx_);
  EXPECT_EQ(device0_memory().free, free_before - 4 * kMiB);
  // A thread with no context at all frees it, and is left with none.
  std::thread([&] {
    r.deallocate(s);
    CUcontext none = reinterpret_cast<CUcontext>(1);
    EXPECT_EQ(cuCtxGetCurrent(&none), CUDA_SUCCESS);
    EXPECT_EQ(none, nullptr);
  }).join();
  EXPECT_EQ(device0_memory().free, free_before);
  EXPECT_EQ(cuCtxDestroy(other), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSetCurrent(ctx_), CUDA_SUCCESS);
}

TEST_F(CudaSegmentResource, DeviceMemoryLimitGivesOutOfMemoryAndTheSourceStaysUsable) {
  cuda_segment_resource r(ctx_);
  const std::size_t total = device0_memory().total;
  ASSERT_EQ(total, 256 * kMiB) << "the ctest entry sets POOLSHIM_SIM_DEVICE_MEMORY=256M";
  segment big;
  ASSERT_EQ(r.allocate(total - 2 * kMiB, &big), status::ok);
  segment s{7, 8, 9};
  EXPECT_EQ(r.allocate(4 * kMiB, &s), status::out_of_memory);
  EXPECT_EQ(r.last_error(), CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(s.base, 7u);
  ASSERT_EQ(r.allocate(2 * kMiB, &s), status::ok) << "what is left is still handed out";
  r.deallocate(s);
  r.deallocate(big);
  ASSERT_EQ(r.allocate(total, &big), status::ok) << "the whole device once everything went back";
  r.deallocate(big);
}

TEST_F(CudaSegmentResource, DestroyedContextIsASourceErrorAndItsStaleSegmentFreesNothingElse) {
  CUdevice dev0 = 0;
  ASSERT_EQ(cuDeviceGet(&dev0, 0), CUDA_SUCCESS);
  CUcontext doomed = nullptr;
  ASSERT_EQ(cuCtxCreate(&doomed, nullptr, 0, dev0), CUDA_SUCCESS);
  CUcontext popped = nullptr;
  ASSERT_EQ(cuCtxPopCurrent(&popped), CUDA_SUCCESS);
  cuda_segment_resource dead_source(doomed);
  segment stale;
  ASSERT_EQ(dead_source.allocate(2 * kMiB, &stale), status::ok);
  ASSERT_EQ(cuCtxDestroy(doomed), CUDA_SUCCESS);  // takes the segment's memory with it
  segment s{7, 8, 9};
  EXPECT_EQ(dead_source.allocate(2 * kMiB, &s), status::source_error);
  EXPECT_EQ(dead_source.last_error(), CUDA_ERROR_INVALID_CONTEXT);
  EXPECT_EQ(s.base, 7u);
  // The same addresses now belong to a live allocation; the stale segment's free must not touch it.
  cuda_segment_resource live_source(ctx_);
  segment live;
  ASSERT_EQ(live_source.allocate(2 * kMiB, &live), status::ok);
  EXPECT_EQ(live.base, stale.base) << "precondition: the simulator hands out the freed range again (first fit)";
  const std::size_t free_before = device0_memory().free;
  dead_source.deallocate(stale);
  CUresult res = CUDA_ERROR_UNKNOWN;
  EXPECT_EQ(attribute<unsigned>(CU_POINTER_ATTRIBUTE_MEMORY_TYPE, live.base, &res), unsigned{CU_MEMORYTYPE_DEVICE});
  EXPECT_EQ(res, CUDA_SUCCESS) << "the stale free released live memory";
  EXPECT_EQ(device0_memory().free, free_before);
  live_source.deallocate(live);
}

// Two sources that fail at once both record their driver error. The pools call their source from
// many threads without a lock (device_pool.cpp: "the source is never called with it held"), and the
// device router reads last_error() after a source_error: with a plain CUresult this was a data race
// that TSan reported (the TSan pass runs this test).
TEST_F(CudaSegmentResource, ConcurrentFailuresRecordTheLastErrorWithoutADataRace) {
  cuda_segment_resource r(ctx_);
  segment all;
  ASSERT_EQ(r.allocate(device0_memory().total, &all), status::ok);
  constexpr int kThreads = 4;
  std::atomic<int> waiting{kThreads};
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      waiting.fetch_sub(1);
      while (waiting.load() != 0) std::this_thread::yield();  // all fail at once
      for (int i = 0; i < 500; ++i) {
        segment s;
        if (r.allocate(2 * kMiB, &s) != status::out_of_memory || r.last_error() != CUDA_ERROR_OUT_OF_MEMORY)
          wrong.fetch_add(1);
      }
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  r.deallocate(all);
}

TEST_F(HostSlabResource, SlabIsPinnedHostMemoryOfItsContextThatCopiesReach) {
  host_slab_resource r(ctx_, 2, /*use_daemon=*/false);
  segment s;
  ASSERT_EQ(r.allocate(kMiB, &s), status::ok);
  ASSERT_EQ(s.size, 2 * kMiB);
  CUresult res = CUDA_ERROR_UNKNOWN;
  EXPECT_EQ(attribute<unsigned>(CU_POINTER_ATTRIBUTE_MEMORY_TYPE, s.base, &res), unsigned{CU_MEMORYTYPE_HOST});
  EXPECT_EQ(res, CUDA_SUCCESS) << "the slab is not registered with the driver";
  EXPECT_EQ(attribute<CUcontext>(CU_POINTER_ATTRIBUTE_CONTEXT, s.base + s.size - 1), ctx_);
  CUdeviceptr mapped = 0;
  EXPECT_EQ(cuMemHostGetDevicePointer(&mapped, reinterpret_cast<void*>(s.base + 4096), 0), CUDA_SUCCESS);
  EXPECT_NE(mapped, 0u);
  // Host writes reach the device and come back through the driver's copies.
  auto* host = reinterpret_cast<unsigned char*>(s.base);
  for (std::size_t i = 0; i < s.size; ++i) host[i] = static_cast<unsigned char>(i * 13 + 1);
  CUdeviceptr dev = 0;
  ASSERT_EQ(cuMemAlloc(&dev, s.size), CUDA_SUCCESS);
  ASSERT_EQ(cuMemcpyHtoD(dev, host, s.size), CUDA_SUCCESS);
  std::vector<unsigned char> back(s.size, 0);
  ASSERT_EQ(cuMemcpyDtoH(back.data(), dev, s.size), CUDA_SUCCESS);
  EXPECT_EQ(std::memcmp(back.data(), host, s.size), 0);
  EXPECT_EQ(cuMemFree(dev), CUDA_SUCCESS);
  r.deallocate(s);
  EXPECT_EQ(attribute<unsigned>(CU_POINTER_ATTRIBUTE_MEMORY_TYPE, s.base, &res), 0u);
  EXPECT_EQ(res, CUDA_ERROR_INVALID_VALUE) << "deallocate left the slab registered";
}

TEST_F(HostSlabResource, LocalSlabIsACloseOnExecMemfdClosedOnDeallocate) {
  host_slab_resource r(ctx_, 2, /*use_daemon=*/false);
  segment s;
  ASSERT_EQ(r.allocate(3 * kMiB, &s), status::ok);
  EXPECT_EQ(s.cookie >> 32, 0u) << "a local slab carries no daemon lease";
  const int fd = static_cast<int>(s.cookie & 0xffffffffu);
  char link[256] = {};
  ASSERT_GT(readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), link, sizeof link - 1), 0);
  EXPECT_EQ(std::string(link).rfind("/memfd:poolshim-pinned", 0), 0u) << link;
  EXPECT_EQ(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  struct stat st {};
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(static_cast<std::size_t>(st.st_size), s.size);
  EXPECT_EQ(s.size, 4 * kMiB);
  r.deallocate(s);
  const std::string after =
      readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), link, sizeof link - 1) > 0 ? link : "";
  EXPECT_EQ(after.rfind("/memfd:poolshim-pinned", 0), std::string::npos) << "the memfd stayed open";
}

TEST_F(HostSlabResource, RegistrationRefusedIsASourceErrorThatLeavesNoDescriptorBehind) {
  CUdevice dev0 = 0;
  ASSERT_EQ(cuDeviceGet(&dev0, 0), CUDA_SUCCESS);
  CUcontext doomed = nullptr;
  ASSERT_EQ(cuCtxCreate(&doomed, nullptr, 0, dev0), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxDestroy(doomed), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSetCurrent(ctx_), CUDA_SUCCESS);
  host_slab_resource r(doomed, 2, /*use_daemon=*/false);
  const int fds_before = open_fds();
  segment s{7, 8, 9};
  EXPECT_EQ(r.allocate(kMiB, &s), status::source_error);
  EXPECT_EQ(r.last_error(), CUDA_ERROR_INVALID_CONTEXT);
  EXPECT_EQ(s.base, 7u);
  EXPECT_EQ(open_fds(), fds_before) << "the slab's memfd leaked";
}

TEST(PretouchParallel, FaultsInEveryPageIncludingAShortLastShare) {
  const std::size_t bytes = 40 * kMiB + 3 * 4096;  // a 32 MiB share and a short one
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  std::vector<unsigned char> resident(bytes / 4096);
  ASSERT_EQ(mincore(p, bytes, resident.data()), 0);
  EXPECT_EQ(resident.front() & 1, 0) << "the mapping was resident before the touch";
  pretouch_parallel(p, bytes, 4);
  ASSERT_EQ(mincore(p, bytes, resident.data()), 0);
  std::size_t missing = 0;
  for (unsigned char r : resident) missing += (r & 1) == 0 ? 1 : 0;
  EXPECT_EQ(missing, 0u);
  munmap(p, bytes);
}

TEST_F(DaemonFallbackAdaptor, WithoutADaemonSegmentsAreTheUpstreamsDriverAllocations) {
  cuda_segment_resource upstream(ctx_);
  daemon_fallback_adaptor r(ctx_, 0, uuid_of_device0(), upstream);
  const daemon_client::figures before = daemon_client::get_figures();
  segment s;
  ASSERT_EQ(r.allocate(3 * kMiB + 512, &s), status::ok);
  EXPECT_EQ(s.size, 3 * kMiB + 512) << "a daemon lease would have been rounded to 2 MiB";
  EXPECT_EQ(s.cookie, 0u) << "not the upstream's segment";
  EXPECT_EQ(attribute<int>(CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE, s.base), 1) << "VMM memory";
  CUdeviceptr base = 0;
  std::size_t size = 0;
  ASSERT_EQ(cuMemGetAddressRange(&base, &size, static_cast<CUdeviceptr>(s.base)), CUDA_SUCCESS);
  EXPECT_EQ(base, static_cast<CUdeviceptr>(s.base));
  EXPECT_EQ(size, 3 * kMiB + 512);
  const daemon_client::figures after = daemon_client::get_figures();
  EXPECT_EQ(after.device_leases, before.device_leases);
  EXPECT_EQ(after.connects, 0u);
  r.deallocate(s);  // back to the upstream: TearDown finds the device empty
}

// Its own ctest entry, POOLSHIM_SIM_FAIL_ALLOC_AT=1,3: the process's 1st and 3rd device
// allocations fail. One test, so that the order of the allocations is this test's own.
TEST(SourcesUnderInjectedDriverFailures, AFailedDriverAllocationIsOutOfMemoryOnceAndTheNextSucceeds) {
  const CUcontext ctx = primary_context();
  ASSERT_NE(ctx, nullptr);
  cuda_segment_resource cuda(ctx);
  segment s{7, 8, 9};
  EXPECT_EQ(cuda.allocate(2 * kMiB, &s), status::out_of_memory);  // the 1st
  EXPECT_EQ(cuda.last_error(), CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(s.base, 7u);
  ASSERT_EQ(cuda.allocate(2 * kMiB, &s), status::ok);  // the 2nd
  cuda.deallocate(s);
  daemon_fallback_adaptor fallback(ctx, 0, uuid_of_device0(), cuda);
  EXPECT_EQ(fallback.allocate(2 * kMiB, &s), status::out_of_memory);  // the 3rd, through the upstream
  ASSERT_EQ(fallback.allocate(2 * kMiB, &s), status::ok);             // the 4th
  fallback.deallocate(s);
  const device_memory m = device0_memory();
  EXPECT_EQ(m.free, m.total);
}

}  // namespace
}  // namespace poolshim

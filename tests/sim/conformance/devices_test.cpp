// Devices: enumeration, selection, properties, peer access and peer copies; and driver entry
// points fetched through cudaGetDriverEntryPointByVersion (found, unknown, too old, too new,
// per-thread variants), which is how every library under the runtime reaches the driver.
#include <cudaTypedefs.h>

#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

#include "conformance.h"

namespace conformance {
namespace {

TEST(Devices, AtLeastOneDeviceIsPresent) {
  int count = 0;
  ASSERT_EQ(cudaSuccess, cudaGetDeviceCount(&count));
  EXPECT_GE(count, 1);
  if (on_simulator() && std::getenv("POOLSHIM_SIM_DEVICES") == nullptr) {
    EXPECT_EQ(2, count) << "the simulator's default is two devices";
  }
}

TEST(Devices, SetDeviceOutOfRangeIsInvalidDeviceAndKeepsTheCurrentDevice) {
  ASSERT_EQ(cudaSuccess, cudaSetDevice(0));
  clear_last_error();
  const int count = device_count();
  EXPECT_EQ(cudaErrorInvalidDevice, cudaSetDevice(count));
  EXPECT_EQ(cudaErrorInvalidDevice, cudaGetLastError());
  EXPECT_EQ(cudaErrorInvalidDevice, cudaSetDevice(-1));
  clear_last_error();
  int current = -1;
  ASSERT_EQ(cudaSuccess, cudaGetDevice(&current));
  EXPECT_EQ(0, current);
  cudaDeviceProp prop{};
  EXPECT_EQ(cudaErrorInvalidDevice, cudaGetDeviceProperties(&prop, count));
  clear_last_error();
}

TEST(Devices, PropertiesDescribeEachDeviceDistinctly) {
  const int count = device_count();
  ASSERT_GE(count, 1);
  std::set<std::string> uuids;
  for (int dev = 0; dev < count; ++dev) {
    cudaDeviceProp prop{};
    ASSERT_EQ(cudaSuccess, cudaGetDeviceProperties(&prop, dev));
    EXPECT_GT(std::strlen(prop.name), 0u) << "device " << dev;
    EXPECT_GT(prop.totalGlobalMem, 0u) << "device " << dev;
    EXPECT_EQ(1, prop.unifiedAddressing) << "device " << dev;
    uuids.insert(std::string(prop.uuid.bytes, sizeof prop.uuid.bytes));
  }
  EXPECT_EQ(static_cast<std::size_t>(count), uuids.size()) << "device UUIDs must be distinct";
}

TEST(Devices, MemGetInfoTotalIsTheDevicesTotalMemory) {
  for (int dev = 0; dev < device_count(); ++dev) {
    ASSERT_EQ(cudaSuccess, cudaSetDevice(dev));
    cudaDeviceProp prop{};
    ASSERT_EQ(cudaSuccess, cudaGetDeviceProperties(&prop, dev));
    std::size_t free_bytes = 0, total = 0;
    ASSERT_EQ(cudaSuccess, cudaMemGetInfo(&free_bytes, &total));
    EXPECT_EQ(prop.totalGlobalMem, total) << "device " << dev;
    EXPECT_LE(free_bytes, total);
  }
  ASSERT_EQ(cudaSuccess, cudaSetDevice(0));
}

TEST(Devices, AllocationsFollowTheCurrentDevice) {
  if (device_count() < 2) GTEST_SKIP() << "needs two devices";
  for (int dev : {1, 0}) {
    ASSERT_EQ(cudaSuccess, cudaSetDevice(dev));
    auto d = device_alloc(4096);
    cudaPointerAttributes a{};
    ASSERT_EQ(cudaSuccess, cudaPointerGetAttributes(&a, d.get()));
    EXPECT_EQ(dev, a.device);
  }
}

class PeerAccess : public ::testing::Test {
 protected:
  void SetUp() override {
    if (device_count() < 2) GTEST_SKIP() << "needs two devices";
    int can = 0;
    ASSERT_EQ(cudaSuccess, cudaDeviceCanAccessPeer(&can, 0, 1));
    if (!can) GTEST_SKIP() << "device 0 cannot access device 1";
    ASSERT_EQ(cudaSuccess, cudaSetDevice(0));
    clear_last_error();
  }
  void TearDown() override {
    cudaSetDevice(0);
    cudaDeviceDisablePeerAccess(1);
    clear_last_error();
  }
};

TEST_F(PeerAccess, EnablingTwiceIsPeerAccessAlreadyEnabled) {
  ASSERT_EQ(cudaSuccess, cudaDeviceEnablePeerAccess(1, 0));
  EXPECT_EQ(cudaErrorPeerAccessAlreadyEnabled, cudaDeviceEnablePeerAccess(1, 0));
  EXPECT_EQ(cudaErrorPeerAccessAlreadyEnabled, cudaGetLastError());
  EXPECT_EQ(cudaSuccess, cudaDeviceDisablePeerAccess(1));
}

TEST_F(PeerAccess, DisablingWithoutEnablingIsPeerAccessNotEnabled) {
  EXPECT_EQ(cudaErrorPeerAccessNotEnabled, cudaDeviceDisablePeerAccess(1));
  ASSERT_EQ(cudaSuccess, cudaDeviceEnablePeerAccess(1, 0));
  EXPECT_EQ(cudaSuccess, cudaDeviceDisablePeerAccess(1));
  EXPECT_EQ(cudaErrorPeerAccessNotEnabled, cudaDeviceDisablePeerAccess(1));
}

TEST_F(PeerAccess, NonZeroFlagsAreInvalidValue) {
  EXPECT_EQ(cudaErrorInvalidValue, cudaDeviceEnablePeerAccess(1, 1));  // "must be set to 0"
}

TEST_F(PeerAccess, MemcpyPeerCopiesBetweenDevices) {
  constexpr std::size_t n = 1 << 20;
  auto on0 = device_alloc(n);
  fill_device(on0.get(), 0x3e, n);
  ASSERT_EQ(cudaSuccess, cudaSetDevice(1));
  auto on1 = device_alloc(n);
  fill_device(on1.get(), 0x00, n);
  ASSERT_EQ(cudaSuccess, cudaMemcpyPeer(on1.get(), 1, on0.get(), 0, n));
  EXPECT_TRUE(device_bytes_are(on1.get(), 0x3e, n));
  fill_device(on1.get(), 0x4f, n / 2);
  ASSERT_EQ(cudaSuccess, cudaSetDevice(0));
  ASSERT_EQ(cudaSuccess, cudaMemcpyPeer(on0.get(), 0, on1.get(), 1, n));
  auto* base = static_cast<unsigned char*>(on0.get());
  EXPECT_TRUE(device_bytes_are(base, 0x4f, n / 2));
  EXPECT_TRUE(device_bytes_are(base + n / 2, 0x3e, n / 2));
  ASSERT_EQ(cudaSuccess, cudaSetDevice(1));
  on1.reset();
  ASSERT_EQ(cudaSuccess, cudaSetDevice(0));
}

// ---- driver entry points ------------------------------------------------------------------------

TEST(DriverEntryPoints, MemAllocIsFoundAndAllocatesDeviceMemory) {
  init_device0();
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult status = cudaDriverEntryPointSymbolNotFound;
  ASSERT_EQ(cudaSuccess, cudaGetDriverEntryPointByVersion("cuMemAlloc", &fn, 13000, cudaEnableDefault, &status));
  EXPECT_EQ(cudaDriverEntryPointSuccess, status);
  ASSERT_NE(nullptr, fn);
  auto mem_alloc = reinterpret_cast<PFN_cuMemAlloc_v3020>(fn);
  auto mem_free = driver_fn<PFN_cuMemFree_v3020>("cuMemFree");
  ASSERT_NE(nullptr, mem_free);
  CUdeviceptr d = 0;
  ASSERT_EQ(CUDA_SUCCESS, mem_alloc(&d, 1 << 20));
  ASSERT_NE(0u, d);
  void* p = reinterpret_cast<void*>(d);
  cudaPointerAttributes a{};
  ASSERT_EQ(cudaSuccess, cudaPointerGetAttributes(&a, p));
  EXPECT_EQ(cudaMemoryTypeDevice, a.type);
  fill_device(p, 0x2d, 1 << 20);  // runtime calls work on driver allocations
  EXPECT_TRUE(device_bytes_are(p, 0x2d, 1 << 20));
  EXPECT_EQ(CUDA_SUCCESS, mem_free(d));
  // Size 0 is an error for the driver, unlike cudaMalloc (cuda.h, cuMemAlloc).
  CUdeviceptr z = 0;
  EXPECT_EQ(CUDA_ERROR_INVALID_VALUE, mem_alloc(&z, 0));
}

TEST(DriverEntryPoints, UnknownSymbolIsSuccessWithNullAndSymbolNotFound) {
  void* fn = reinterpret_cast<void*>(0x1);
  cudaDriverEntryPointQueryResult status = cudaDriverEntryPointSuccess;
  EXPECT_EQ(cudaSuccess,
            cudaGetDriverEntryPointByVersion("cuNoSuchFunctionPoolshim", &fn, 13000, cudaEnableDefault, &status));
  EXPECT_EQ(nullptr, fn);
  EXPECT_EQ(cudaDriverEntryPointSymbolNotFound, status);
}

TEST(DriverEntryPoints, VersionBelowTheSymbolsIntroductionIsVersionNotSufficient) {
  void* fn = reinterpret_cast<void*>(0x1);
  cudaDriverEntryPointQueryResult status = cudaDriverEntryPointSuccess;
  // cuMemCreate appeared in CUDA 10.2.
  EXPECT_EQ(cudaSuccess, cudaGetDriverEntryPointByVersion("cuMemCreate", &fn, 10000, cudaEnableDefault, &status));
  EXPECT_EQ(nullptr, fn);
  EXPECT_EQ(cudaDriverEntryPointVersionNotSufficent, status);
  fn = nullptr;
  EXPECT_EQ(cudaSuccess, cudaGetDriverEntryPointByVersion("cuMemCreate", &fn, 10020, cudaEnableDefault, &status));
  EXPECT_NE(nullptr, fn);
  EXPECT_EQ(cudaDriverEntryPointSuccess, status);
}

TEST(DriverEntryPoints, VersionAboveTheDriverIsInvalidValue) {
  int driver = 0;
  ASSERT_EQ(cudaSuccess, cudaDriverGetVersion(&driver));
  ASSERT_GT(driver, 0);
  clear_last_error();
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult status{};
  // "If the specified CUDA version is greater than the driver version, the API will return
  // cudaErrorInvalidValue."
  EXPECT_EQ(cudaErrorInvalidValue,
            cudaGetDriverEntryPointByVersion("cuMemAlloc", &fn, static_cast<unsigned>(driver) + 1000, cudaEnableDefault,
                                             &status));
  clear_last_error();
}

TEST(DriverEntryPoints, PerThreadFlagSelectsThePerThreadVariantOnlyWhereOneExists) {
  void* legacy = nullptr;
  void* per_thread = nullptr;
  ASSERT_EQ(cudaSuccess,
            cudaGetDriverEntryPointByVersion("cuMemcpyAsync", &legacy, 13000, cudaEnableLegacyStream, nullptr));
  ASSERT_EQ(cudaSuccess, cudaGetDriverEntryPointByVersion("cuMemcpyAsync", &per_thread, 13000,
                                                          cudaEnablePerThreadDefaultStream, nullptr));
  ASSERT_NE(nullptr, legacy);
  ASSERT_NE(nullptr, per_thread);
  EXPECT_NE(legacy, per_thread) << "cuMemcpyAsync has a _ptsz variant";
  // "If a per-thread version is not found, the API will return the legacy version."
  void* alloc_legacy = nullptr;
  void* alloc_pt = nullptr;
  ASSERT_EQ(cudaSuccess,
            cudaGetDriverEntryPointByVersion("cuMemAlloc", &alloc_legacy, 13000, cudaEnableLegacyStream, nullptr));
  ASSERT_EQ(cudaSuccess, cudaGetDriverEntryPointByVersion("cuMemAlloc", &alloc_pt, 13000,
                                                          cudaEnablePerThreadDefaultStream, nullptr));
  EXPECT_NE(nullptr, alloc_legacy);
  EXPECT_EQ(alloc_legacy, alloc_pt);
}

TEST(DriverEntryPoints, DriverGetProcAddressAgreesWithTheRuntimeLookup) {
  init_device0();
  auto get_proc = driver_fn<PFN_cuGetProcAddress_v12000>("cuGetProcAddress");
  ASSERT_NE(nullptr, get_proc);
  for (const char* name : {"cuMemAlloc", "cuMemFree", "cuMemCreate", "cuIpcGetMemHandle"}) {
    void* from_driver = nullptr;
    CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    ASSERT_EQ(CUDA_SUCCESS, get_proc(name, &from_driver, 13000, CU_GET_PROC_ADDRESS_DEFAULT, &status)) << name;
    EXPECT_EQ(CU_GET_PROC_ADDRESS_SUCCESS, status) << name;
    void* from_runtime = nullptr;
    ASSERT_EQ(cudaSuccess, cudaGetDriverEntryPointByVersion(name, &from_runtime, 13000, cudaEnableDefault, nullptr));
    EXPECT_EQ(from_driver, from_runtime) << name;
  }
  void* none = reinterpret_cast<void*>(0x1);
  CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SUCCESS;
  EXPECT_EQ(CUDA_SUCCESS, get_proc("cuNoSuchFunctionPoolshim", &none, 13000, CU_GET_PROC_ADDRESS_DEFAULT, &status));
  EXPECT_EQ(nullptr, none);
  EXPECT_EQ(CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND, status);
}

TEST(DriverEntryPoints, AddressRangeOfAnInteriorPointerIsItsWholeAllocation) {
  init_device0();
  auto range = driver_fn<PFN_cuMemGetAddressRange_v3020>("cuMemGetAddressRange");
  ASSERT_NE(nullptr, range);
  constexpr std::size_t n = 3 * 4096 + 100;
  auto d = device_alloc(n);
  const auto start = reinterpret_cast<CUdeviceptr>(d.get());
  CUdeviceptr base = 0;
  std::size_t size = 0;
  ASSERT_EQ(CUDA_SUCCESS, range(&base, &size, start + 5000));
  EXPECT_EQ(start, base);
  EXPECT_GE(size, n);
  // Either output may be NULL.
  base = 0;
  ASSERT_EQ(CUDA_SUCCESS, range(&base, nullptr, start + n - 1));
  EXPECT_EQ(start, base);
  size = 0;
  ASSERT_EQ(CUDA_SUCCESS, range(nullptr, &size, start));
  EXPECT_GE(size, n);
}

TEST(DriverEntryPoints, PointerAttributeOfPlainHostMemoryIsInvalidValue) {
  init_device0();
  auto get_attr = driver_fn<PFN_cuPointerGetAttribute_v4000>("cuPointerGetAttribute");
  ASSERT_NE(nullptr, get_attr);
  int on_stack = 0;
  unsigned type = 0;
  // Unlike cudaPointerGetAttributes, the driver's singular query fails on non-CUDA memory.
  EXPECT_EQ(CUDA_ERROR_INVALID_VALUE,
            get_attr(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, reinterpret_cast<CUdeviceptr>(&on_stack)));
  auto d = device_alloc(4096);
  ASSERT_EQ(CUDA_SUCCESS, get_attr(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, reinterpret_cast<CUdeviceptr>(d.get())));
  EXPECT_EQ(static_cast<unsigned>(CU_MEMORYTYPE_DEVICE), type);
  int ipc_capable = 0;  // "a boolean": the driver may write one byte only
  ASSERT_EQ(CUDA_SUCCESS, get_attr(&ipc_capable, CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE,
                                   reinterpret_cast<CUdeviceptr>(d.get())));
  EXPECT_EQ(1, ipc_capable);
}

}  // namespace
}  // namespace conformance

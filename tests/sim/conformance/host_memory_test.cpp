// Pinned host memory (cudaMallocHost, cudaHostAlloc flags, mapped device pointers, cudaHostGetFlags,
// cudaHostRegister/Unregister, cudaFreeHost) and cudaPointerGetAttributes for every kind of memory.
#include <cstdlib>
#include <vector>

#include "conformance.h"

namespace conformance {
namespace {

constexpr std::size_t page = 4096;

TEST(PinnedHost, MallocHostMemoryIsHostAccessibleAndUsableByCopies) {
  constexpr std::size_t n = std::size_t{64} << 10;
  auto h = pinned_alloc(n);
  ASSERT_NE(nullptr, h.get());
  for (std::size_t i = 0; i < n; ++i) h.get()[i] = static_cast<unsigned char>(i);
  auto d = device_alloc(n);
  ASSERT_EQ(cudaSuccess, cudaMemcpy(d.get(), h.get(), n, cudaMemcpyHostToDevice));
  std::vector<unsigned char> back(n);
  ASSERT_EQ(cudaSuccess, cudaMemcpy(back.data(), d.get(), n, cudaMemcpyDeviceToHost));
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(static_cast<unsigned char>(i), back[i]) << i;
}

TEST(PinnedHost, HostGetFlagsReportsTheFlagsOfHostAlloc) {
  for (unsigned flags :
       {cudaHostAllocPortable, cudaHostAllocMapped, cudaHostAllocWriteCombined,
        cudaHostAllocPortable | cudaHostAllocMapped, cudaHostAllocMapped | cudaHostAllocWriteCombined}) {
    void* h = nullptr;
    ASSERT_EQ(cudaSuccess, cudaHostAlloc(&h, 3 * page, flags)) << "flags " << flags;
    pinned_ptr owner(static_cast<unsigned char*>(h));
    unsigned got = 0;
    ASSERT_EQ(cudaSuccess, cudaHostGetFlags(&got, h));
    // Under UVA the driver may add Mapped; every requested flag must be reported.
    EXPECT_EQ(flags, got & flags) << "requested " << flags << ", got " << got;
    // "fails if the input pointer does not reside in an address range allocated by
    // cudaHostAlloc": an interior pointer resides in it.
    unsigned got_inner = 0;
    ASSERT_EQ(cudaSuccess, cudaHostGetFlags(&got_inner, static_cast<char*>(h) + page + 5));
    EXPECT_EQ(got, got_inner);
  }
}

TEST(PinnedHost, HostGetFlagsOfPageableMemoryIsInvalidValue) {
  clear_last_error();
  std::vector<char> pageable(page);
  unsigned got = 0;
  EXPECT_EQ(cudaErrorInvalidValue, cudaHostGetFlags(&got, pageable.data()));
  clear_last_error();
}

TEST(PinnedHost, MappedMemoryHasADevicePointerThatCopiesCanUse) {
  constexpr std::size_t n = 2 * page;
  void* h = nullptr;
  ASSERT_EQ(cudaSuccess, cudaHostAlloc(&h, n, cudaHostAllocMapped));
  pinned_ptr owner(static_cast<unsigned char*>(h));
  void* d = nullptr;
  ASSERT_EQ(cudaSuccess, cudaHostGetDevicePointer(&d, h, 0));
  ASSERT_NE(nullptr, d);
  // Under UVA (every 64-bit process) cudaHostAlloc memory has one address everywhere.
  EXPECT_EQ(h, d);
  std::memset(h, 0x77, n);
  auto dev = device_alloc(n);
  ASSERT_EQ(cudaSuccess, cudaMemcpy(dev.get(), d, n, cudaMemcpyDefault));
  EXPECT_TRUE(device_bytes_are(dev.get(), 0x77, n));
}

TEST(PinnedHost, HostGetDevicePointerWithNonZeroFlagsIsInvalidValue) {
  clear_last_error();
  void* h = nullptr;
  ASSERT_EQ(cudaSuccess, cudaHostAlloc(&h, page, cudaHostAllocMapped));
  pinned_ptr owner(static_cast<unsigned char*>(h));
  void* d = nullptr;
  EXPECT_EQ(cudaErrorInvalidValue, cudaHostGetDevicePointer(&d, h, 1));  // "must be 0"
  clear_last_error();
}

TEST(PinnedHost, HostGetDevicePointerOfPageableMemoryIsInvalidValue) {
  clear_last_error();
  std::vector<char> pageable(page);
  void* d = nullptr;
  EXPECT_EQ(cudaErrorInvalidValue, cudaHostGetDevicePointer(&d, pageable.data(), 0));
  clear_last_error();
}

TEST(PinnedHost, FreeHostOfMemoryItDidNotAllocateIsInvalidValue) {
  clear_last_error();
  void* plain = std::malloc(page);
  ASSERT_NE(nullptr, plain);
  // The documented error of cudaFreeHost (CUDA_FACTS §2); a GPU run verifies the exact code.
  EXPECT_EQ(cudaErrorInvalidValue, cudaFreeHost(plain));
  std::free(plain);
  void* d = nullptr;
  ASSERT_EQ(cudaSuccess, cudaMalloc(&d, page));
  device_ptr owner(d);
  EXPECT_EQ(cudaErrorInvalidValue, cudaFreeHost(d));
  clear_last_error();
  fill_device(d, 3, page);  // still allocated
  EXPECT_TRUE(device_bytes_are(d, 3, page));
}

TEST(PinnedHost, FreedPinnedMemoryIsNoLongerPinned) {
  void* h = nullptr;
  ASSERT_EQ(cudaSuccess, cudaMallocHost(&h, page));
  cudaPointerAttributes a{};
  ASSERT_EQ(cudaSuccess, cudaPointerGetAttributes(&a, h));
  EXPECT_EQ(cudaMemoryTypeHost, a.type);
  ASSERT_EQ(cudaSuccess, cudaFreeHost(h));
  clear_last_error();
  unsigned flags = 0;
  EXPECT_EQ(cudaErrorInvalidValue, cudaHostGetFlags(&flags, h));
  // A second cudaFreeHost is a double free: InvalidValue (UNV; a GPU run verifies).
  EXPECT_EQ(cudaErrorInvalidValue, cudaFreeHost(h));
  clear_last_error();
}

class HostRegister : public ::testing::Test {
 protected:
  void SetUp() override {
    mem_ = std::aligned_alloc(page, 4 * page);
    ASSERT_NE(nullptr, mem_);
    std::memset(mem_, 0, 4 * page);
  }
  void TearDown() override {
    cudaHostUnregister(mem_);
    clear_last_error();
    std::free(mem_);
  }
  void* mem_ = nullptr;
};

TEST_F(HostRegister, RegisteringTwiceIsHostMemoryAlreadyRegistered) {
  clear_last_error();
  ASSERT_EQ(cudaSuccess, cudaHostRegister(mem_, 4 * page, cudaHostRegisterDefault));
  EXPECT_EQ(cudaErrorHostMemoryAlreadyRegistered, cudaHostRegister(mem_, 4 * page, cudaHostRegisterDefault));
  EXPECT_EQ(cudaErrorHostMemoryAlreadyRegistered, cudaGetLastError());
  EXPECT_EQ(cudaSuccess, cudaGetLastError());
}

TEST_F(HostRegister, UnregisterNeedsTheBaseAddress) {
  clear_last_error();
  ASSERT_EQ(cudaSuccess, cudaHostRegister(mem_, 4 * page, cudaHostRegisterDefault));
  EXPECT_EQ(cudaErrorHostMemoryNotRegistered, cudaHostUnregister(static_cast<char*>(mem_) + page));
  clear_last_error();
  // The failed call left the registration alone.
  cudaPointerAttributes a{};
  ASSERT_EQ(cudaSuccess, cudaPointerGetAttributes(&a, mem_));
  EXPECT_EQ(cudaMemoryTypeHost, a.type);
  EXPECT_EQ(cudaSuccess, cudaHostUnregister(mem_));
  EXPECT_EQ(cudaErrorHostMemoryNotRegistered, cudaHostUnregister(mem_));
  clear_last_error();
}

TEST_F(HostRegister, RegisteredMemoryIsUsableByAsyncCopiesAndKeepsItsContents) {
  std::memset(mem_, 0x19, 4 * page);
  ASSERT_EQ(cudaSuccess, cudaHostRegister(mem_, 4 * page, cudaHostRegisterDefault));
  EXPECT_TRUE(all_bytes_are(mem_, 0x19, 4 * page)) << "registration changed the contents";
  auto d = device_alloc(4 * page);
  auto s = make_stream(cudaStreamNonBlocking);
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(d.get(), mem_, 4 * page, cudaMemcpyHostToDevice, s.get()));
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(d.get(), 0x2a, page, s.get()));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(mem_, d.get(), 4 * page, cudaMemcpyDeviceToHost, s.get()));
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(s.get()));
  auto* b = static_cast<unsigned char*>(mem_);
  EXPECT_TRUE(all_bytes_are(b, 0x2a, page));
  EXPECT_TRUE(all_bytes_are(b + page, 0x19, 3 * page));
}

TEST_F(HostRegister, MappedRegistrationHasADevicePointer) {
  ASSERT_EQ(cudaSuccess, cudaHostRegister(mem_, 4 * page, cudaHostRegisterMapped));
  void* d = nullptr;
  ASSERT_EQ(cudaSuccess, cudaHostGetDevicePointer(&d, mem_, 0));
  EXPECT_NE(nullptr, d);
  std::memset(mem_, 0x61, 4 * page);
  auto dev = device_alloc(4 * page);
  ASSERT_EQ(cudaSuccess, cudaMemcpy(dev.get(), d, 4 * page, cudaMemcpyDefault));
  EXPECT_TRUE(device_bytes_are(dev.get(), 0x61, 4 * page));
}

// ---- cudaPointerGetAttributes -------------------------------------------------------------------

TEST(PointerAttributes, DeviceMemoryIsDeviceTypeOnItsDevice) {
  ASSERT_EQ(cudaSuccess, cudaSetDevice(0));
  auto d = device_alloc(8192);
  cudaPointerAttributes a{};
  ASSERT_EQ(cudaSuccess, cudaPointerGetAttributes(&a, d.get()));
  EXPECT_EQ(cudaMemoryTypeDevice, a.type);
  EXPECT_EQ(0, a.device);
  EXPECT_EQ(d.get(), a.devicePointer);
  EXPECT_EQ(nullptr, a.hostPointer);
  // An interior pointer is described by the allocation that holds it.
  cudaPointerAttributes inner{};
  ASSERT_EQ(cudaSuccess, cudaPointerGetAttributes(&inner, bytes(d) + 4000));
  EXPECT_EQ(cudaMemoryTypeDevice, inner.type);
  EXPECT_EQ(bytes(d) + 4000, inner.devicePointer);
}

TEST(PointerAttributes, DeviceMemoryOfSecondDeviceNamesThatDevice) {
  if (device_count() < 2) GTEST_SKIP() << "needs two devices";
  ASSERT_EQ(cudaSuccess, cudaSetDevice(1));
  auto d = device_alloc(4096);
  ASSERT_EQ(cudaSuccess, cudaSetDevice(0));
  cudaPointerAttributes a{};
  ASSERT_EQ(cudaSuccess, cudaPointerGetAttributes(&a, d.get()));
  EXPECT_EQ(cudaMemoryTypeDevice, a.type);
  EXPECT_EQ(1, a.device);
  ASSERT_EQ(cudaSuccess, cudaSetDevice(1));
  d.reset();
  ASSERT_EQ(cudaSuccess, cudaSetDevice(0));
}

TEST(PointerAttributes, PinnedMemoryIsHostTypeWithBothPointers) {
  ASSERT_EQ(cudaSuccess, cudaSetDevice(0));
  auto h = pinned_alloc(page);
  cudaPointerAttributes a{};
  ASSERT_EQ(cudaSuccess, cudaPointerGetAttributes(&a, h.get()));
  EXPECT_EQ(cudaMemoryTypeHost, a.type);
  EXPECT_EQ(0, a.device);
  EXPECT_EQ(h.get(), a.hostPointer);
  EXPECT_EQ(h.get(), a.devicePointer);  // UVA: one address
}

TEST_F(HostRegister, RegisteredMemoryIsHostType) {
  ASSERT_EQ(cudaSuccess, cudaSetDevice(0));
  ASSERT_EQ(cudaSuccess, cudaHostRegister(mem_, 4 * page, cudaHostRegisterDefault));
  cudaPointerAttributes a{};
  ASSERT_EQ(cudaSuccess, cudaPointerGetAttributes(&a, static_cast<char*>(mem_) + 100));
  EXPECT_EQ(cudaMemoryTypeHost, a.type);
  EXPECT_EQ(0, a.device);
  EXPECT_EQ(static_cast<char*>(mem_) + 100, a.hostPointer);
  ASSERT_EQ(cudaSuccess, cudaHostUnregister(mem_));
  cudaPointerAttributes after{};
  ASSERT_EQ(cudaSuccess, cudaPointerGetAttributes(&after, mem_));
  EXPECT_EQ(cudaMemoryTypeUnregistered, after.type);
}

TEST(PointerAttributes, ManagedMemoryIsManagedType) {
  void* m = nullptr;
  ASSERT_EQ(cudaSuccess, cudaMallocManaged(&m, page, cudaMemAttachGlobal));
  device_ptr owner(m);
  cudaPointerAttributes a{};
  ASSERT_EQ(cudaSuccess, cudaPointerGetAttributes(&a, m));
  EXPECT_EQ(cudaMemoryTypeManaged, a.type);
  EXPECT_EQ(m, a.devicePointer);
  EXPECT_EQ(m, a.hostPointer);
}

TEST(PointerAttributes, PlainHostMemoryIsUnregisteredWithoutAnError) {
  clear_last_error();
  std::vector<char> heap(100);
  int on_stack = 0;
  for (const void* p : {static_cast<const void*>(heap.data()), static_cast<const void*>(&on_stack)}) {
    cudaPointerAttributes a{};
    a.type = cudaMemoryTypeDevice;
    // Since CUDA 11 this is a success with type Unregistered (cuda_runtime_api.h).
    ASSERT_EQ(cudaSuccess, cudaPointerGetAttributes(&a, p));
    EXPECT_EQ(cudaMemoryTypeUnregistered, a.type);
  }
  EXPECT_EQ(cudaSuccess, cudaGetLastError());
}

TEST(PointerAttributes, FreedDeviceMemoryIsNoLongerDeviceType) {
  void* d = nullptr;
  ASSERT_EQ(cudaSuccess, cudaMalloc(&d, page));
  ASSERT_EQ(cudaSuccess, cudaFree(d));
  cudaPointerAttributes a{};
  cudaError_t e = cudaPointerGetAttributes(&a, d);
  // Either answer is allowed for an address nobody owns, but never "device memory".
  if (e == cudaSuccess) {
    EXPECT_NE(cudaMemoryTypeDevice, a.type);
  }
  clear_last_error();
}

}  // namespace
}  // namespace conformance

// Device memory: cudaMalloc/cudaFree contracts (alignment, size 0, errors, OOM and the last-error
// state), cudaMemGetInfo, pitch, managed and stream-ordered allocations, the synchronising
// cudaFree, and (simulator only) that device memory is not host memory.
#include <cudaTypedefs.h>

#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

#include "conformance.h"

namespace conformance {
namespace {

using namespace std::chrono_literals;
constexpr std::size_t MiB = std::size_t{1} << 20;

TEST(Memory, MallocReturnsPointersAlignedToAtLeast256Bytes) {
  // "at least 256 bytes" is the Programming Guide's figure for cudaMalloc.
  for (std::size_t size :
       {std::size_t{1}, std::size_t{3}, std::size_t{255}, std::size_t{257}, std::size_t{4097}, MiB + 1}) {
    std::vector<device_ptr> held;
    for (int i = 0; i < 4; ++i) {
      held.push_back(device_alloc(size));
      ASSERT_NE(nullptr, held.back().get());
      EXPECT_EQ(0u, reinterpret_cast<std::uintptr_t>(held.back().get()) % 256)
          << "size " << size << " gave " << held.back().get();
    }
  }
}

TEST(Memory, AllocationsDoNotOverlap) {
  std::vector<device_ptr> held;
  for (int i = 0; i < 16; ++i) {
    held.push_back(device_alloc(1000));
    ASSERT_NE(nullptr, held.back().get());
    fill_device(held.back().get(), static_cast<unsigned char>(i + 1), 1000);
  }
  for (int i = 0; i < 16; ++i) {
    EXPECT_TRUE(device_bytes_are(held[i].get(), static_cast<unsigned char>(i + 1), 1000)) << "allocation " << i;
  }
}

TEST(Memory, MallocOfZeroBytesSucceedsAndReturnsNull) {
  clear_last_error();
  void* p = reinterpret_cast<void*>(0xdeadbeef);
  EXPECT_EQ(cudaSuccess, cudaMalloc(&p, 0));
  // Reports differ on whether *p is set to NULL or left alone (CUDA_FACTS §1, UNV); the
  // simulator writes NULL, and a GPU run verifies that real CUDA does too.
  EXPECT_EQ(nullptr, p);
  EXPECT_EQ(cudaSuccess, cudaGetLastError());
  if (p != reinterpret_cast<void*>(0xdeadbeef)) {
    EXPECT_EQ(cudaSuccess, cudaFree(p));
  }
}

TEST(Memory, MallocWithNullOutArgumentIsInvalidValue) {
  clear_last_error();
  EXPECT_EQ(cudaErrorInvalidValue, cudaMalloc(nullptr, 1024));
  EXPECT_EQ(cudaErrorInvalidValue, cudaGetLastError());
  EXPECT_EQ(cudaSuccess, cudaGetLastError());
}

TEST(Memory, AllocationLargerThanTotalMemoryFailsOnceAndContextStaysUsable) {
  std::size_t free_bytes = 0, total = 0;
  ASSERT_EQ(cudaSuccess, cudaMemGetInfo(&free_bytes, &total));
  ASSERT_GT(total, 0u);
  clear_last_error();
  void* p = nullptr;
  EXPECT_EQ(cudaErrorMemoryAllocation, cudaMalloc(&p, total + total / 2));
  // The runtime records the error as the last error once; reading it resets it: OOM is not sticky.
  EXPECT_EQ(cudaErrorMemoryAllocation, cudaPeekAtLastError());
  EXPECT_EQ(cudaErrorMemoryAllocation, cudaGetLastError());
  EXPECT_EQ(cudaSuccess, cudaGetLastError());
  // The context is still usable (CUDA_FACTS §1: non-sticky errors leave it usable, UNV).
  auto q = device_alloc(4096);
  ASSERT_NE(nullptr, q.get());
  fill_device(q.get(), 0x6b, 4096);
  EXPECT_TRUE(device_bytes_are(q.get(), 0x6b, 4096));
  EXPECT_EQ(cudaSuccess, cudaDeviceSynchronize());
}

TEST(Memory, FreeOfNullSucceeds) {
  clear_last_error();
  EXPECT_EQ(cudaSuccess, cudaFree(nullptr));
  EXPECT_EQ(cudaSuccess, cudaGetLastError());
}

TEST(Memory, DoubleFreeIsInvalidValue) {
  clear_last_error();
  void* p = nullptr;
  ASSERT_EQ(cudaSuccess, cudaMalloc(&p, 4096));
  ASSERT_EQ(cudaSuccess, cudaFree(p));
  // The only error cudaFree documents for a pointer it does not own is InvalidValue.
  EXPECT_EQ(cudaErrorInvalidValue, cudaFree(p));
  EXPECT_EQ(cudaErrorInvalidValue, cudaGetLastError());
  EXPECT_EQ(cudaSuccess, cudaGetLastError());
}

TEST(Memory, FreeOfInteriorPointerIsInvalidValueAndKeepsTheAllocation) {
  clear_last_error();
  void* p = nullptr;
  ASSERT_EQ(cudaSuccess, cudaMalloc(&p, 8192));
  fill_device(p, 0x42, 8192);
  // UNV (CUDA_FACTS §2): a GPU run verifies that real cudaFree rejects an interior pointer.
  EXPECT_EQ(cudaErrorInvalidValue, cudaFree(static_cast<char*>(p) + 512));
  clear_last_error();
  EXPECT_TRUE(device_bytes_are(p, 0x42, 8192));
  EXPECT_EQ(cudaSuccess, cudaFree(p));
}

TEST(Memory, FreeOfHostPointersIsInvalidValue) {
  clear_last_error();
  void* plain = std::malloc(4096);
  ASSERT_NE(nullptr, plain);
  EXPECT_EQ(cudaErrorInvalidValue, cudaFree(plain));
  std::free(plain);
  int on_stack = 0;
  EXPECT_EQ(cudaErrorInvalidValue, cudaFree(&on_stack));
  // Pinned memory belongs to cudaFreeHost; cudaFree of it is InvalidValue (UNV, CUDA_FACTS §2; a
  // GPU run verifies), and it must stay allocated.
  void* pinned = nullptr;
  ASSERT_EQ(cudaSuccess, cudaMallocHost(&pinned, 4096));
  EXPECT_EQ(cudaErrorInvalidValue, cudaFree(pinned));
  static_cast<unsigned char*>(pinned)[4095] = 1;
  EXPECT_EQ(cudaSuccess, cudaFreeHost(pinned));
  clear_last_error();
}

TEST(Memory, MemGetInfoFreeDropsAfterLargeAllocationAndRecoversAfterFree) {
  constexpr std::size_t big = 256 * MiB;
  constexpr std::size_t slack = 64 * MiB;  // free is an OS view, rounded and racy (CUDA_FACTS §7)
  std::size_t free0 = 0, total = 0, free1 = 0, free2 = 0, total2 = 0;
  ASSERT_EQ(cudaSuccess, cudaMemGetInfo(&free0, &total));
  ASSERT_LE(free0, total);
  ASSERT_GT(free0, big + slack) << "device too small for this test";
  void* p = nullptr;
  ASSERT_EQ(cudaSuccess, cudaMalloc(&p, big));
  ASSERT_EQ(cudaSuccess, cudaMemGetInfo(&free1, &total2));
  EXPECT_EQ(total, total2);
  EXPECT_LE(free1, free0 - (big - slack));
  ASSERT_EQ(cudaSuccess, cudaFree(p));
  ASSERT_EQ(cudaSuccess, cudaMemGetInfo(&free2, &total2));
  EXPECT_GE(free2, free1 + (big - slack));
  EXPECT_LE(free2, total);
}

TEST(Memory, MallocPitchGivesAlignedRowsThatHoldTheWidth) {
  constexpr std::size_t width = 1000, height = 7;
  void* p = nullptr;
  std::size_t pitch = 0;
  ASSERT_EQ(cudaSuccess, cudaMallocPitch(&p, &pitch, width, height));
  device_ptr owner(p);
  EXPECT_GE(pitch, width);
  EXPECT_EQ(0u, reinterpret_cast<std::uintptr_t>(p) % 256);
  EXPECT_EQ(0u, pitch % 32) << "pitch " << pitch;
  // The allocation holds all rows (its range, asked of the driver, starts at p).
  auto range = driver_fn<PFN_cuMemGetAddressRange_v3020>("cuMemGetAddressRange");
  ASSERT_NE(nullptr, range);
  CUdeviceptr base = 0;
  std::size_t size = 0;
  ASSERT_EQ(CUDA_SUCCESS, range(&base, &size, reinterpret_cast<CUdeviceptr>(p)));
  EXPECT_EQ(reinterpret_cast<CUdeviceptr>(p), base);
  EXPECT_GE(size, pitch * (height - 1) + width);
  // Every row fits: a copy of `width` bytes at each row's start stays inside the allocation (the
  // simulator rejects a copy that leaves it), and rows do not overlap. Row by row with cudaMemcpy;
  // the 2D calls have their own test below.
  std::vector<unsigned char> row(width);
  for (std::size_t r = 0; r < height; ++r) {
    std::memset(row.data(), static_cast<int>(r + 1), width);
    ASSERT_EQ(cudaSuccess, cudaMemcpy(static_cast<char*>(p) + r * pitch, row.data(), width, cudaMemcpyHostToDevice))
        << "row " << r;
  }
  for (std::size_t r = 0; r < height; ++r) {
    EXPECT_TRUE(device_bytes_are(static_cast<char*>(p) + r * pitch, static_cast<unsigned char>(r + 1), width))
        << "row " << r;
  }
}

TEST(Memory, ManagedMemoryIsAccessibleFromHostAndDevice) {
  constexpr std::size_t n = std::size_t{64} << 10;
  void* m = nullptr;
  ASSERT_EQ(cudaSuccess, cudaMallocManaged(&m, n, cudaMemAttachGlobal));
  device_ptr owner(m);
  auto* b = static_cast<unsigned char*>(m);
  for (std::size_t i = 0; i < n; ++i) b[i] = 0x11;
  auto d = device_alloc(n);
  ASSERT_EQ(cudaSuccess, cudaMemcpy(d.get(), m, n, cudaMemcpyDefault));
  EXPECT_TRUE(device_bytes_are(d.get(), 0x11, n));
  ASSERT_EQ(cudaSuccess, cudaMemset(m, 0x22, n));
  ASSERT_EQ(cudaSuccess, cudaDeviceSynchronize());
  EXPECT_TRUE(all_bytes_are(m, 0x22, n));
}

TEST(Memory, MallocAsyncAndFreeAsyncAreStreamOrdered) {
  constexpr std::size_t n = std::size_t{256} << 10;
  auto s = make_stream(cudaStreamNonBlocking);
  auto out = pinned_alloc(n);
  ASSERT_NE(nullptr, out.get());
  std::memset(out.get(), 0, n);
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(s.get()));
  void* p = nullptr;
  // All four calls return while the stream is held: none of them waits for the stream.
  ASSERT_EQ(cudaSuccess, cudaMallocAsync(&p, n, s.get()));
  ASSERT_NE(nullptr, p);
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(p, 0x3c, n, s.get()));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(out.get(), p, n, cudaMemcpyDeviceToHost, s.get()));
  ASSERT_EQ(cudaSuccess, cudaFreeAsync(p, s.get()));
  EXPECT_TRUE(stays_not_ready(s.get(), 50ms));
  EXPECT_TRUE(all_bytes_are(out.get(), 0, n)) << "stream work ran before the gate opened";
  g.open();
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(s.get()));
  EXPECT_FALSE(g.timed_out());
  EXPECT_TRUE(all_bytes_are(out.get(), 0x3c, n));
}

// cudaFree "may perform implicit synchronization"; in practice it waits for the whole device.
// This is the reported behaviour (CUDA_FACTS §2, UNV) that poolshim's default free mode keeps; a
// GPU run confirms it.
TEST(Memory, FreeReturnsOnlyAfterOtherStreamsHaveDrained) {
  auto s = make_stream(cudaStreamNonBlocking);
  auto unrelated = device_alloc(MiB);
  auto target = device_alloc(4096);
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(s.get()));
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(target.get(), 1, 4096, s.get()));
  ASSERT_TRUE(g.wait_entered());
  std::jthread opener([&] {
    std::this_thread::sleep_for(150ms);
    g.open();
  });
  EXPECT_EQ(cudaSuccess, cudaFree(unrelated.release()));
  EXPECT_EQ(cudaSuccess, cudaStreamQuery(s.get())) << "cudaFree returned before the stream drained";
  EXPECT_TRUE(g.finished());
}

// The same synchronisation covers a stream destroyed with work still pending: that work still
// runs (cudaStreamDestroy) and is part of what the device must finish before memory is released.
TEST(Memory, FreeAlsoWaitsForWorkOfADestroyedStream) {
  auto unrelated = device_alloc(MiB);
  auto src = device_alloc(4096);
  fill_device(src.get(), 0x4a, 4096);
  auto out = pinned_alloc(4096);
  std::memset(out.get(), 0, 4096);
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaSuccess, cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(s));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(out.get(), src.get(), 4096, cudaMemcpyDeviceToHost, s));
  ASSERT_EQ(cudaSuccess, cudaStreamDestroy(s));
  ASSERT_TRUE(g.wait_entered());
  std::jthread opener([&] {
    std::this_thread::sleep_for(150ms);
    g.open();
  });
  EXPECT_EQ(cudaSuccess, cudaFree(unrelated.release()));
  EXPECT_TRUE(g.finished()) << "cudaFree returned before the destroyed stream drained";
  EXPECT_TRUE(all_bytes_are(out.get(), 0x4a, 4096));
  opener.join();
  if (::testing::Test::HasFailure()) {
    // The work may still be pending: keep its buffers alive rather than free them under it.
    (void)out.release();
    (void)src.release();
  }
}

// Simulator only: on a GPU a host access to cudaMalloc memory is undefined (usually SIGSEGV), so
// there is nothing to assert there. The simulator must fault as a GPU would, so that a shim
// which touches device memory from the host is caught in CI.
TEST(DeviceMemory, HostDereferenceOfDevicePointerFaults) {
  POOLSHIM_SKIP_UNLESS_SIMULATOR("a host dereference of device memory is undefined on a GPU");
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // re-executes the binary: no fork after init
  auto p = device_alloc(4096);
  ASSERT_NE(nullptr, p.get());
  fill_device(p.get(), 0x5a, 4096);
  EXPECT_DEATH(
      {
        volatile unsigned char c = *static_cast<volatile unsigned char*>(p.get());
        (void)c;
      },
      "");
  EXPECT_DEATH({ *static_cast<volatile unsigned char*>(p.get()) = 1; }, "");
}

// cudaMemcpy2D moves `height` rows of `width` bytes between pitched layouts and leaves the bytes
// between rows alone; cudaMemset2D fills only the rows' first `width` bytes.
TEST(Memory, Memcpy2DAndMemset2DTouchOnlyTheRows) {
  constexpr std::size_t width = 300, height = 5;
  void* p = nullptr;
  std::size_t pitch = 0;
  ASSERT_EQ(cudaSuccess, cudaMallocPitch(&p, &pitch, width, height));
  device_ptr owner(p);
  ASSERT_GT(pitch, width) << "the test needs padding between rows";
  ASSERT_EQ(cudaSuccess, cudaMemset(p, 0xee, pitch * height));
  constexpr std::size_t host_pitch = 400;
  std::vector<unsigned char> src(host_pitch * height, 0);
  for (std::size_t r = 0; r < height; ++r) std::memset(src.data() + r * host_pitch, static_cast<int>(r + 1), width);
  ASSERT_EQ(cudaSuccess, cudaMemcpy2D(p, pitch, src.data(), host_pitch, width, height, cudaMemcpyHostToDevice));
  std::vector<unsigned char> all(pitch * height);
  ASSERT_EQ(cudaSuccess, cudaMemcpy(all.data(), p, all.size(), cudaMemcpyDeviceToHost));
  for (std::size_t r = 0; r < height; ++r) {
    EXPECT_TRUE(all_bytes_are(all.data() + r * pitch, static_cast<unsigned char>(r + 1), width)) << "row " << r;
    EXPECT_TRUE(all_bytes_are(all.data() + r * pitch + width, 0xee, pitch - width)) << "padding of row " << r;
  }
  ASSERT_EQ(cudaSuccess, cudaMemset2D(p, pitch, 0x11, width / 2, height));
  std::vector<unsigned char> back(host_pitch * height, 0);
  ASSERT_EQ(cudaSuccess, cudaMemcpy2D(back.data(), host_pitch, p, pitch, width, height, cudaMemcpyDeviceToHost));
  for (std::size_t r = 0; r < height; ++r) {
    EXPECT_TRUE(all_bytes_are(back.data() + r * host_pitch, 0x11, width / 2)) << "row " << r;
    EXPECT_TRUE(
        all_bytes_are(back.data() + r * host_pitch + width / 2, static_cast<unsigned char>(r + 1), width - width / 2))
        << "row " << r;
  }
  // A pitch narrower than the width is refused.
  EXPECT_EQ(cudaErrorInvalidPitchValue,
            cudaMemcpy2D(p, width - 1, src.data(), host_pitch, width, height, cudaMemcpyHostToDevice));
  clear_last_error();
}

}  // namespace
}  // namespace conformance

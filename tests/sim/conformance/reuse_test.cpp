// Too-early reuse: a caching allocator that hands a freed block to a new user while a stream may
// still read it corrupts that read. These tests prove the simulator shows the corruption (so the
// pool's stream-safety tests can fail) and that a fence — an event recorded after the last use and
// waited for before reuse — prevents it. The reader is held by a gate, so the interleaving is
// deterministic: the writer runs to completion before the reader's copy starts.
#include <thread>
#include <vector>

#include "conformance.h"

namespace conformance {
namespace reuse_test {  // named, not anonymous: a unity build puts several test files in one unit

using namespace std::chrono_literals;
constexpr std::size_t n = std::size_t{256} << 10;
constexpr unsigned char reader_bytes = 0xaa, writer_bytes = 0x55;

// How a cache makes the next user of a block wait for the block's previous users.
enum class fence_mode { none, stream_wait, host_wait };

// A deliberately small caching allocator: deallocate() keeps the block, allocate() returns the
// most recently freed block of the same size at once. With fence_mode::none it ignores streams
// entirely, which is the bug poolshim's pool must not have.
class caching_allocator {
 public:
  explicit caching_allocator(fence_mode mode) : mode_(mode) {}
  caching_allocator(const caching_allocator&) = delete;
  caching_allocator& operator=(const caching_allocator&) = delete;
  ~caching_allocator() {
    for (auto& b : free_) {
      if (b.fence != nullptr) cudaEventDestroy(b.fence);
      cudaFree(b.ptr);
    }
  }

  // A block for work on `user`.
  void* allocate(std::size_t size, cudaStream_t user) {
    for (auto it = free_.rbegin(); it != free_.rend(); ++it) {
      if (it->size != size) continue;
      block b = *it;
      free_.erase(std::next(it).base());
      if (b.fence != nullptr) {
        if (mode_ == fence_mode::stream_wait) {
          EXPECT_EQ(cudaSuccess, cudaStreamWaitEvent(user, b.fence, 0));
        }
        if (mode_ == fence_mode::host_wait) {
          EXPECT_EQ(cudaSuccess, cudaEventSynchronize(b.fence));
        }
        cudaEventDestroy(b.fence);
      }
      return b.ptr;
    }
    void* p = nullptr;
    EXPECT_EQ(cudaSuccess, cudaMalloc(&p, size));
    return p;
  }
  // Returns a block whose last use was enqueued on `last_user`.
  void deallocate(void* p, std::size_t size, cudaStream_t last_user) {
    block b{p, size, nullptr};
    if (mode_ != fence_mode::none) {
      EXPECT_EQ(cudaSuccess, cudaEventCreateWithFlags(&b.fence, cudaEventDisableTiming));
      EXPECT_EQ(cudaSuccess, cudaEventRecord(b.fence, last_user));
    }
    free_.push_back(b);
  }

 private:
  struct block {
    void* ptr;
    std::size_t size;
    cudaEvent_t fence;
  };
  fence_mode mode_;
  std::vector<block> free_;
};

// The scenario shared by the tests: B holds the reader's bytes; a held stream S1 copies B to `out`;
// the cache frees B and hands it to a writer on S2, which overwrites it.
struct reuse_scenario {
  explicit reuse_scenario(fence_mode mode) : cache(mode) {
    reader = make_stream(cudaStreamNonBlocking);
    writer = make_stream(cudaStreamNonBlocking);
    out = pinned_alloc(n);
    std::memset(out.get(), 0, n);
    b = cache.allocate(n, reader.get());
    fill_device(b, reader_bytes, n);
  }
  caching_allocator cache;
  stream_ptr reader, writer;
  pinned_ptr out;
  void* b = nullptr;
};

TEST(TooEarlyReuse, NaiveCacheLetsAWriterCorruptAPendingRead) {
  reuse_scenario sc(fence_mode::none);
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(sc.reader.get()));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(sc.out.get(), sc.b, n, cudaMemcpyDeviceToHost, sc.reader.get()));
  sc.cache.deallocate(sc.b, n, sc.reader.get());  // the host is done with B; S1 is not
  void* w = sc.cache.allocate(n, sc.writer.get());
  ASSERT_EQ(sc.b, w) << "the cache must reuse the block for this scenario";
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(w, writer_bytes, n, sc.writer.get()));
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(sc.writer.get()));  // S2 does not wait for S1
  EXPECT_FALSE(g.finished());
  g.open();
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(sc.reader.get()));
  // Expected corruption: the read returns the writer's bytes. If this fails, the simulator cannot
  // catch a pool that reuses memory too early.
  EXPECT_TRUE(all_bytes_are(sc.out.get(), writer_bytes, n));
  sc.cache.deallocate(w, n, sc.writer.get());
}

TEST(TooEarlyReuse, StreamWaitOnAFenceEventPreventsTheCorruption) {
  reuse_scenario sc(fence_mode::stream_wait);
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(sc.reader.get()));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(sc.out.get(), sc.b, n, cudaMemcpyDeviceToHost, sc.reader.get()));
  sc.cache.deallocate(sc.b, n, sc.reader.get());    // records the fence after the read
  void* w = sc.cache.allocate(n, sc.writer.get());  // S2 waits for the fence
  ASSERT_EQ(sc.b, w);
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(w, writer_bytes, n, sc.writer.get()));
  EXPECT_TRUE(stays_not_ready(sc.writer.get())) << "the writer did not wait for the fence";
  g.open();
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(sc.writer.get()));
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(sc.reader.get()));
  EXPECT_TRUE(all_bytes_are(sc.out.get(), reader_bytes, n));
  EXPECT_TRUE(device_bytes_are(w, writer_bytes, n));
  sc.cache.deallocate(w, n, sc.writer.get());
}

TEST(TooEarlyReuse, HostWaitOnAFenceEventPreventsTheCorruption) {
  reuse_scenario sc(fence_mode::host_wait);
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(sc.reader.get()));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(sc.out.get(), sc.b, n, cudaMemcpyDeviceToHost, sc.reader.get()));
  sc.cache.deallocate(sc.b, n, sc.reader.get());
  ASSERT_TRUE(g.wait_entered());
  std::jthread opener([&] {
    std::this_thread::sleep_for(100ms);
    g.open();
  });
  void* w = sc.cache.allocate(n, sc.writer.get());  // blocks in cudaEventSynchronize
  EXPECT_TRUE(g.finished()) << "the host wait returned before the reader's fence passed";
  ASSERT_EQ(sc.b, w);
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(w, writer_bytes, n, sc.writer.get()));
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(sc.writer.get()));
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(sc.reader.get()));
  EXPECT_TRUE(all_bytes_are(sc.out.get(), reader_bytes, n));
  sc.cache.deallocate(w, n, sc.writer.get());
}

// Without a pool, cudaFree + cudaMalloc is safe because cudaFree waits for the device (reported
// behaviour, CUDA_FACTS §2, UNV; a GPU run confirms). poolshim's default free mode relies on it.
TEST(TooEarlyReuse, FreeThenMallocCannotCorruptAPendingRead) {
  auto reader = make_stream(cudaStreamNonBlocking), writer = make_stream(cudaStreamNonBlocking);
  auto out = pinned_alloc(n);
  std::memset(out.get(), 0, n);
  void* b = nullptr;
  ASSERT_EQ(cudaSuccess, cudaMalloc(&b, n));
  fill_device(b, reader_bytes, n);
  gate g;
  ASSERT_EQ(cudaSuccess, g.block(reader.get()));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(out.get(), b, n, cudaMemcpyDeviceToHost, reader.get()));
  ASSERT_TRUE(g.wait_entered());
  std::jthread opener([&] {
    std::this_thread::sleep_for(100ms);
    g.open();
  });
  ASSERT_EQ(cudaSuccess, cudaFree(b));
  void* w = nullptr;
  ASSERT_EQ(cudaSuccess, cudaMalloc(&w, n));
  device_ptr owner(w);
  ASSERT_EQ(cudaSuccess, cudaMemsetAsync(w, writer_bytes, n, writer.get()));
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(writer.get()));
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(reader.get()));
  EXPECT_TRUE(all_bytes_are(out.get(), reader_bytes, n));
}

}  // namespace reuse_test
}  // namespace conformance

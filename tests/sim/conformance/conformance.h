// Shared helpers of the simulator conformance suite: RAII owners for CUDA objects, a gate that
// holds a stream in a host function until the test opens it, simulator detection and typed
// lookups of driver entry points. Only the CUDA runtime API (and driver entry points obtained
// through it) is used, so every test runs unchanged on real CUDA.
#pragma once

#include <cuda.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <memory>
#include <mutex>
#include <ostream>
#include <sstream>
#include <string>
#include <thread>

// gtest finds these by argument-dependent lookup (both enums live in the global namespace), so a
// failed EXPECT_EQ shows "cudaErrorInvalidValue (1)" instead of a bare number.
inline const char* conformance_error_name(int e) {
  switch (e) {
    case 0:
      return "success";
    case 1:
      return "InvalidValue";
    case 2:
      return "MemoryAllocation/OutOfMemory";
    case 101:
      return "InvalidDevice";
    case 201:
      return "DeviceUninitialized/InvalidContext";
    case 209:
      return "NoKernelImageForDevice";
    case 400:
      return "InvalidResourceHandle";
    case 500:
      return "NotFound";
    case 600:
      return "NotReady";
    case 700:
      return "IllegalAddress";
    case 704:
      return "PeerAccessAlreadyEnabled";
    case 705:
      return "PeerAccessNotEnabled";
    case 712:
      return "HostMemoryAlreadyRegistered";
    case 713:
      return "HostMemoryNotRegistered";
    case 801:
      return "NotSupported";
    case 900:
      return "StreamCaptureUnsupported";
    case 901:
      return "StreamCaptureInvalidated";
    case 906:
      return "StreamCaptureImplicit";
    default:
      return "?";
  }
}
inline void PrintTo(cudaError_t e, std::ostream* os) {
  *os << conformance_error_name(static_cast<int>(e)) << " (" << static_cast<int>(e) << ")";
}
inline void PrintTo(CUresult e, std::ostream* os) {
  *os << conformance_error_name(static_cast<int>(e)) << " (" << static_cast<int>(e) << ")";
}

namespace conformance {

// ---- owners -------------------------------------------------------------------------------------

struct device_free {
  void operator()(void* p) const noexcept { cudaFree(p); }
};
struct host_free {
  void operator()(void* p) const noexcept { cudaFreeHost(p); }
};
struct stream_destroy {
  void operator()(cudaStream_t s) const noexcept { cudaStreamDestroy(s); }
};
struct event_destroy {
  void operator()(cudaEvent_t e) const noexcept { cudaEventDestroy(e); }
};
using device_ptr = std::unique_ptr<void, device_free>;
using pinned_ptr = std::unique_ptr<unsigned char, host_free>;
using stream_ptr = std::unique_ptr<CUstream_st, stream_destroy>;
using event_ptr = std::unique_ptr<CUevent_st, event_destroy>;

inline device_ptr device_alloc(std::size_t bytes) {
  void* p = nullptr;
  EXPECT_EQ(cudaSuccess, cudaMalloc(&p, bytes));
  return device_ptr(p);
}
inline unsigned char* bytes(const device_ptr& p) { return static_cast<unsigned char*>(p.get()); }

// Pinned memory, so that async copies are really asynchronous (a pageable copy may synchronise
// with a stream that a gate holds, which would deadlock the test).
inline pinned_ptr pinned_alloc(std::size_t bytes) {
  void* p = nullptr;
  EXPECT_EQ(cudaSuccess, cudaMallocHost(&p, bytes));
  return pinned_ptr(static_cast<unsigned char*>(p));
}
inline stream_ptr make_stream(unsigned flags = cudaStreamDefault) {
  cudaStream_t s = nullptr;
  EXPECT_EQ(cudaSuccess, cudaStreamCreateWithFlags(&s, flags));
  return stream_ptr(s);
}
inline event_ptr make_event(unsigned flags = cudaEventDefault) {
  cudaEvent_t e = nullptr;
  EXPECT_EQ(cudaSuccess, cudaEventCreateWithFlags(&e, flags));
  return event_ptr(e);
}

// Synchronous fill and read-back of device memory through the legacy stream.
inline void fill_device(void* dst, unsigned char value, std::size_t n) {
  ASSERT_EQ(cudaSuccess, cudaMemset(dst, value, n));
  ASSERT_EQ(cudaSuccess, cudaDeviceSynchronize());
}
// True when all n bytes at p equal value; reports the first difference otherwise.
inline ::testing::AssertionResult all_bytes_are(const void* p, unsigned char value, std::size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    if (b[i] != value) {
      std::ostringstream why;
      why << "byte " << i << " of " << n << " is 0x" << std::hex << int(b[i]) << ", expected 0x" << int(value);
      return ::testing::AssertionFailure() << why.str();
    }
  }
  return ::testing::AssertionSuccess();
}
inline ::testing::AssertionResult device_bytes_are(const void* dev, unsigned char value, std::size_t n) {
  std::string host(n, '\0');
  cudaError_t e = cudaMemcpy(host.data(), dev, n, cudaMemcpyDeviceToHost);
  if (e != cudaSuccess) return ::testing::AssertionFailure() << "cudaMemcpy D2H returned " << e;
  return all_bytes_are(host.data(), value, n);
}

// Clears this thread's last error so that a test sees only the errors it causes.
inline void clear_last_error() { (void)cudaGetLastError(); }

// ---- the simulator ------------------------------------------------------------------------------

// The simulator names its devices "poolshim simulated ..."; real devices never do.
inline bool on_simulator() {
  static const bool sim = [] {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return false;
    return std::strstr(prop.name, "poolshim simulated") != nullptr;
  }();
  return sim;
}
#define POOLSHIM_SKIP_UNLESS_SIMULATOR(why)                                        \
  do {                                                                             \
    if (!::conformance::on_simulator()) GTEST_SKIP() << "simulator-only: " << why; \
  } while (0)

inline int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

// Makes device 0's primary context current on this thread, so driver entry points can be used.
inline void init_device0() {
  ASSERT_EQ(cudaSuccess, cudaSetDevice(0));
  ASSERT_EQ(cudaSuccess, cudaFree(nullptr));
}

// ---- gate: a host function that holds a stream ----------------------------------------------------

// Enqueue with block(s); everything after it on s (and on streams ordered after s) waits until
// open(). The host function gives up after a safety timeout, so that a broken ordering fails the
// test instead of hanging it. Declare a gate after the buffers and streams it guards: its
// destructor opens it, so an early ASSERT return releases the stream before cudaFree (which
// synchronises) runs. The state is shared with the host function, which may outlive the gate.
class gate {
 public:
  static constexpr std::chrono::seconds safety_timeout{10};

  gate() : state_(std::make_shared<state>()) {}
  gate(const gate&) = delete;
  gate& operator=(const gate&) = delete;
  ~gate() { open(); }

  cudaError_t block(cudaStream_t s) {
    auto* ref = new std::shared_ptr<state>(state_);
    cudaError_t e = cudaLaunchHostFunc(s, &gate::run, ref);
    if (e != cudaSuccess) delete ref;
    return e;
  }
  void open() {
    std::lock_guard<std::mutex> lock(state_->m);
    state_->open = true;
    state_->cv.notify_all();
  }
  // Whether the host function has started running (it holds the stream until open()).
  bool entered() const {
    std::lock_guard<std::mutex> lock(state_->m);
    return state_->entered;
  }
  // Blocks until the host function runs, so the test knows the stream has reached the gate.
  bool wait_entered(std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) const {
    std::unique_lock<std::mutex> lock(state_->m);
    return state_->cv.wait_for(lock, limit, [&] { return state_->entered; });
  }
  bool timed_out() const {
    std::lock_guard<std::mutex> lock(state_->m);
    return state_->timed_out;
  }
  bool finished() const {
    std::lock_guard<std::mutex> lock(state_->m);
    return state_->finished;
  }

 private:
  struct state {
    mutable std::mutex m;
    std::condition_variable cv;
    bool open = false, entered = false, timed_out = false, finished = false;
  };
  static void CUDART_CB run(void* user) {
    std::unique_ptr<std::shared_ptr<state>> ref(static_cast<std::shared_ptr<state>*>(user));
    state& s = **ref;
    std::unique_lock<std::mutex> lock(s.m);
    s.entered = true;
    s.cv.notify_all();
    if (!s.cv.wait_for(lock, safety_timeout, [&] { return s.open; })) s.timed_out = true;
    s.finished = true;
    s.cv.notify_all();
  }
  std::shared_ptr<state> state_;
};

// Polls cudaStreamQuery for `span`: succeeds only if the stream stays NotReady all the time.
inline ::testing::AssertionResult stays_not_ready(cudaStream_t s,
                                                  std::chrono::milliseconds span = std::chrono::milliseconds(100)) {
  const auto end = std::chrono::steady_clock::now() + span;
  do {
    cudaError_t e = cudaStreamQuery(s);
    if (e != cudaErrorNotReady) {
      return ::testing::AssertionFailure()
             << "cudaStreamQuery returned " << int(e) << " while the stream should still be waiting";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  } while (std::chrono::steady_clock::now() < end);
  return ::testing::AssertionSuccess();
}
// Polls until the stream is idle (cudaSuccess) or `limit` passes; returns the last query result.
inline cudaError_t wait_idle(cudaStream_t s, std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  cudaError_t e;
  while ((e = cudaStreamQuery(s)) == cudaErrorNotReady && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return e;
}

// ---- driver entry points --------------------------------------------------------------------------

// The driver function `name` for ABI `version`, fetched the way libraries do it under a runtime:
// through cudaGetDriverEntryPointByVersion (the test links no libcuda). nullptr if not found.
template <class Fn>
Fn driver_fn(const char* name, unsigned version = 13000) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult status = cudaDriverEntryPointSymbolNotFound;
  if (cudaGetDriverEntryPointByVersion(name, &fn, version, cudaEnableDefault, &status) != cudaSuccess ||
      status != cudaDriverEntryPointSuccess) {
    return nullptr;
  }
  return reinterpret_cast<Fn>(fn);
}

}  // namespace conformance

// What the router tests share: device 0's primary context (retained once, as cudart does on first
// use, and made current by each test), a gate that holds a stream until the test opens it (with a
// watchdog, so that a router that waits for the gated work fails the test instead of hanging it),
// and pointer-attribute and sentinel helpers.
#pragma once

#include <cuda.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

namespace poolshim::route_test {

// A CUresult none of the tested calls returns (a valid enumerator: UBSan checks enum loads): shows
// that a call which declined left *result alone.
inline constexpr CUresult k_untouched = CUDA_ERROR_UNKNOWN;

inline CUcontext primary_context() {
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

template <class T>
T attribute(CUpointer_attribute a, std::uintptr_t p, CUresult* result = nullptr) {
  T v{};
  const CUresult r = cuPointerGetAttribute(&v, a, static_cast<CUdeviceptr>(p));
  if (result != nullptr) *result = r;
  return v;
}

// A host function that blocks its stream until open() (or the watchdog, after `limit`).
class gate {
 public:
  explicit gate(std::chrono::milliseconds limit = std::chrono::seconds(10))
      : watchdog_([this, limit] {
          const auto end = std::chrono::steady_clock::now() + limit;
          while (!done_.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < end)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          open_.store(true, std::memory_order_release);
        }) {}
  // Opens the gate and waits for the held stream, so the host function never outlives the gate.
  ~gate() {
    done_.store(true, std::memory_order_release);
    watchdog_.join();
    if (held_) (void)cuStreamSynchronize(stream_);
  }
  gate(const gate&) = delete;
  gate& operator=(const gate&) = delete;

  CUresult hold(CUstream s) {
    const CUresult r = cuLaunchHostFunc(s, &gate::wait, this);
    held_ = r == CUDA_SUCCESS;
    stream_ = s;
    return r;
  }
  void open() { open_.store(true, std::memory_order_release); }
  bool is_open() const { return open_.load(std::memory_order_acquire); }

 private:
  static void CUDA_CB wait(void* self) {
    auto* g = static_cast<gate*>(self);
    while (!g->open_.load(std::memory_order_acquire)) std::this_thread::yield();
  }
  std::atomic<bool> open_{false};
  std::atomic<bool> done_{false};
  bool held_ = false;
  CUstream stream_ = nullptr;
  std::thread watchdog_;
};

// Opens a gate from another thread after `delay` and says whether it has: a call that returns
// while opened() is still false did not wait for the gated work.
class delayed_opener {
 public:
  explicit delayed_opener(gate& g, std::chrono::milliseconds delay = std::chrono::milliseconds(50))
      : thread_([this, &g, delay] {
          std::this_thread::sleep_for(delay);
          opened_.store(true, std::memory_order_release);
          g.open();
        }) {}
  ~delayed_opener() { thread_.join(); }
  delayed_opener(const delayed_opener&) = delete;
  delayed_opener& operator=(const delayed_opener&) = delete;

  bool opened() const { return opened_.load(std::memory_order_acquire); }

 private:
  std::atomic<bool> opened_{false};  // before thread_: the thread stores to it
  std::thread thread_;
};

// The same for anything a function opens.
class delayed_opener_fn {
 public:
  explicit delayed_opener_fn(void (*open)(), std::chrono::milliseconds delay = std::chrono::milliseconds(50))
      : thread_([this, open, delay] {
          std::this_thread::sleep_for(delay);
          opened_.store(true, std::memory_order_release);
          open();
        }) {}
  ~delayed_opener_fn() { thread_.join(); }
  delayed_opener_fn(const delayed_opener_fn&) = delete;
  delayed_opener_fn& operator=(const delayed_opener_fn&) = delete;

  bool opened() const { return opened_.load(std::memory_order_acquire); }

 private:
  std::atomic<bool> opened_{false};
  std::thread thread_;
};

}  // namespace poolshim::route_test

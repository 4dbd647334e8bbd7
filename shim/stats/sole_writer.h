// Counting without the lock prefix while one thread records alone. A locked read-modify-write
// costs about 8 ns here (it is a full barrier), and a cudaMalloc+cudaFree pair made eight of them on
// shared counters (live bytes per site, process and kind; the live table's claim and delete).
// Most programs allocate from one thread: the first thread to record becomes the sole writer and
// updates the shared counters with single unlocked instructions (xadd, cmpxchg: a signal handler
// on that thread cannot split one; other threads must not write meanwhile). The first event of
// any other thread revokes this for good: it publishes the revocation, makes every running thread
// of the process pass a full barrier (membarrier: the slow half of a Dekker pair whose fast half,
// on the sole writer's side, is a compiler barrier), waits for the sole writer to leave the
// update it may be in, and from then on every thread uses locked atomics. Without membarrier
// (kernels before 4.14, a seccomp filter), under TSan and off x86-64, counting is shared from the
// start.
#pragma once

#include <atomic>
#include <cstdint>

#include "stats/file_atomic.h"

namespace poolshim::stats {

// Read-modify-writes of shared counters that any number of threads update at once.
struct locked_ops {
  template <class T>
  static T fetch_add(T& c, T v) noexcept {
    return atomic_at(c).fetch_add(v, std::memory_order_relaxed);
  }
  template <class T>
  static bool compare_exchange(T& c, T& expected, T desired) noexcept {
    return atomic_at(c).compare_exchange_strong(expected, desired, std::memory_order_acq_rel);
  }
  template <class T>
  static T fetch_add(std::atomic<T>& c, T v) noexcept {
    return c.fetch_add(v, std::memory_order_relaxed);
  }
  template <class T>
  static bool compare_exchange(std::atomic<T>& c, T& expected, T desired) noexcept {
    return c.compare_exchange_strong(expected, desired, std::memory_order_acq_rel);
  }
};

#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
#define POOLSHIM_SOLE_WRITER 1
// The same for the sole writer: one instruction each, without the lock prefix. Other threads may
// read meanwhile (they see the old or the new value, as with relaxed atomics); x86 keeps stores in
// order, so a store after one of these still publishes it.
struct sole_ops {
  template <class T>
  static T fetch_add(T& c, T v) noexcept {
    static_assert(sizeof(T) == 8);
    asm volatile("xaddq %0, %1" : "+r"(v), "+m"(c));
    return v;
  }
  template <class T>
  static bool compare_exchange(T& c, T& expected, T desired) noexcept {
    static_assert(sizeof(T) == 8);
    bool same;
    asm volatile("cmpxchgq %3, %1" : "=@ccz"(same), "+m"(c), "+a"(expected) : "r"(desired) : "memory");
    return same;
  }
  template <class T>
  static T fetch_add(std::atomic<T>& c, T v) noexcept {
    static_assert(sizeof(std::atomic<T>) == sizeof(T));
    return fetch_add(*reinterpret_cast<T*>(&c), v);
  }
  template <class T>
  static bool compare_exchange(std::atomic<T>& c, T& expected, T desired) noexcept {
    return compare_exchange(*reinterpret_cast<T*>(&c), expected, desired);
  }
};
#else
#define POOLSHIM_SOLE_WRITER 0
using sole_ops = locked_ops;
#endif

// Its address tells threads apart (initial-exec: a fixed offset from the thread pointer).
[[gnu::tls_model("initial-exec")]] inline thread_local char tl_sole_token = 0;

class sole_writer {
 public:
  sole_writer() noexcept = default;
  sole_writer(const sole_writer&) = delete;
  sole_writer& operator=(const sole_writer&) = delete;

  // At the recorder's start (again in a fork child, whose registration did not follow): the first
  // thread to record may become the sole writer when the process could register for membarrier.
  void start() noexcept;

  // Before the calling thread updates shared counters: true when it may use sole_ops until
  // leave(true). Blocks only on a revocation: its first event in a process whose sole writer is
  // another thread waits for that one to leave its update (a few hundred nanoseconds, unless it
  // was preempted there).
  [[gnu::always_inline]] bool enter() noexcept {
    const void* const me = token();
    const void* const o = owner_.load(std::memory_order_relaxed);
    if (o == me) [[likely]] {
      // busy_ first, then the owner again: a revoker stores the owner first, then (after
      // membarrier) reads busy_, so one of the two sees the other's store. Only this thread writes
      // busy_; a signal handler's event in between adds and takes back one, so a plain load and
      // store are enough.
      atomic_at(busy_).store(busy_ + 1, std::memory_order_relaxed);
      std::atomic_signal_fence(std::memory_order_seq_cst);
      if (owner_.load(std::memory_order_relaxed) == me) return true;
      leave(true);
      return false;
    }
    return o != k_shared && enter_slow();
  }
  void leave(bool sole) noexcept {
    if (!sole) return;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    atomic_at(busy_).store(busy_ - 1, std::memory_order_release);
  }

  // Whether every thread counts with locked ops now, for good (or until the next start).
  bool shared() const noexcept { return owner_.load(std::memory_order_acquire) == k_shared; }

 private:
  static const void* token() noexcept { return &tl_sole_token; }
  // Claims the unowned writer, or revokes another thread's, or waits for a revocation under way.
  [[gnu::noinline]] bool enter_slow() noexcept;

  static inline const char k_shared_mark = 0, k_revoking_mark = 0;
  static constexpr const void* k_shared = &k_shared_mark;      // every thread uses locked ops
  static constexpr const void* k_revoking = &k_revoking_mark;  // on the way there
  std::atomic<const void*> owner_{k_shared};                   // null: the first thread to record takes it
  std::atomic<const void*> claimed_by_{nullptr};               // the sole writer, even once revoked
  std::uint32_t busy_ = 0;  // the sole writer is inside an update (more than 1: a signal handler's event)
};

// The scope of one event's updates of shared counters. Nothing inside one may block (allocate,
// take a lock, wait): a thread revoking the sole writer waits for the scope to end.
class sole_scope {
 public:
  explicit sole_scope(sole_writer& w) noexcept : w_(w), sole_(w.enter()) {}
  ~sole_scope() { w_.leave(sole_); }
  sole_scope(const sole_scope&) = delete;
  sole_scope& operator=(const sole_scope&) = delete;
  bool sole() const noexcept { return sole_; }

 private:
  sole_writer& w_;
  const bool sole_;
};

}  // namespace poolshim::stats

// The sole writer's slow side (sole_writer.h): registering for membarrier, claiming, revoking.
#include "stats/sole_writer.h"

#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if POOLSHIM_SOLE_WRITER
#include <linux/membarrier.h>
#endif

#include "base/log.h"

namespace poolshim::stats {
namespace {

#if POOLSHIM_SOLE_WRITER
bool membarrier(int cmd) noexcept { return syscall(__NR_membarrier, cmd, 0, 0) == 0; }
#endif

// How long a revocation waits for the sole writer to leave its update, at most: the update is a
// few hundred nanoseconds unless its thread was preempted there; a thread that died inside one
// (pthread_cancel at an unlucky instant) must not hang every other thread's first event.
constexpr long k_revoke_wait_ns = 1'000'000'000;

}  // namespace

void sole_writer::start() noexcept {
  atomic_at(busy_).store(0, std::memory_order_relaxed);
  claimed_by_.store(nullptr, std::memory_order_relaxed);
#if POOLSHIM_SOLE_WRITER
  // Registration belongs to the process image: a fork child registers again (its recorder starts again).
  if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED)) {
    owner_.store(nullptr, std::memory_order_release);
    return;
  }
#endif
  owner_.store(k_shared, std::memory_order_release);
}

bool sole_writer::enter_slow() noexcept {
  const void* const me = token();
  for (;;) {
    const void* o = owner_.load(std::memory_order_acquire);
    if (o == k_shared) return false;
    if (o == me) return enter();
    if (o == nullptr) {
      if (owner_.compare_exchange_strong(o, me, std::memory_order_acq_rel)) {
        claimed_by_.store(me, std::memory_order_relaxed);
        return enter();
      }
      continue;
    }
    // Another thread writes alone, or did until a revocation under way (whose revoker may be this
    // very thread, interrupted by a signal handler's event: so every thread waits for the sole
    // writer itself, never for the revoker). The sole writer's own event during a revocation
    // counts with locked ops at once: what it interrupted is on its own thread.
    if (o != k_revoking && !owner_.compare_exchange_strong(o, k_revoking, std::memory_order_acq_rel)) continue;
    if (claimed_by_.load(std::memory_order_relaxed) == me) return false;
#if POOLSHIM_SOLE_WRITER
    (void)membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
#endif
    bool waited_out = false;
    for (long spin = 0, slept_ns = 0; atomic_at(busy_).load(std::memory_order_acquire) != 0; ++spin) {
      if (spin < 64) {
        sched_yield();
        continue;
      }
      if (slept_ns >= k_revoke_wait_ns) {
        waited_out = true;
        break;
      }
      timespec ts{0, 100'000};
      nanosleep(&ts, nullptr);
      slept_ns += ts.tv_nsec;
    }
    if (waited_out)
      POOLSHIM_LOG_WARN_ONCE(
          "POOLSHIM_STATS: the thread that recorded alone did not leave its update within 1 s: other threads "
          "count from now on, and that update may be lost");
    owner_.store(k_shared, std::memory_order_release);
    return false;
  }
}

}  // namespace poolshim::stats

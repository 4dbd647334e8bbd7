// The idle trimmer's thread (idle_trimmer.h). It sleeps between rounds (all signals blocked, so the
// program's handlers run on its own threads), never holds a pool lock while it sleeps, and talks to
// the daemon only over a connection the program's own requests made (never connecting for itself).
#include "route/idle_trimmer.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <utility>

#include "base/log.h"
#include "base/process.h"
#include "route/device_router.h"
#include "route/host_router.h"
#include "source/daemon_client.h"

namespace poolshim::idle_trimmer {
namespace {

std::atomic<bool> g_started{false};
// Held by the thread through each round (never while it sleeps). A fork waits for the round to end
// (bounded), so that the child does not inherit a pool or cache lock the thread held; exit waits
// the same way and then keeps it, so that the thread is never inside a pool, the driver or the
// daemon client while the process tears them down. Bounded: another fork handler may hold a lock
// the round waits for (the daemon client's), and then the fork goes on as it would without this.
std::timed_mutex g_round;
// Whether this thread's fork took g_round: per thread, since two threads may fork at once (the
// second then waits out its bound and must not unlock what the first took).
[[gnu::tls_model("initial-exec")]] constinit thread_local bool tl_round_held_for_fork = false;
std::atomic<bool> g_stopped{false};
constexpr std::chrono::milliseconds k_fork_wait{500};
constexpr std::chrono::milliseconds k_exit_wait{2000};
constexpr std::uint64_t k_unconnected_nap_ms = 1000;  // how often a process without a daemon looks again

void nap_ms(std::uint64_t ms) noexcept {
  timespec t{static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1'000'000};
  while (nanosleep(&t, &t) != 0 && errno == EINTR) {
  }
}

// The daemon's part of a round: report, then give back what it asks. True when a daemon answered.
// A process with nothing idle has nothing to be asked for: it stays quiet (once it has said so), so
// that the daemon's idle-connection timeout still closes a connection that holds nothing.
bool report(std::size_t* released) noexcept {
  static bool said_idle = false;  // this thread only
  const std::size_t idle_device = device_router::reclaimable_bytes(), idle_pinned = host_router::idle_bytes();
  if (idle_device == 0 && idle_pinned == 0 && !said_idle) return daemon_client::get_figures().connects != 0;
  daemon_client::idle_request asked;
  if (!daemon_client::report_idle(idle_device, idle_pinned, &asked)) return false;
  said_idle = idle_device != 0 || idle_pinned != 0;
  if (asked.device != 0) {
    const std::size_t got = device_router::trim(asked.device, /*keep_preallocated=*/true);
    *released += got;
    POOLSHIM_LOG_DEBUG("poolshimd asked for {} idle device bytes: {} given back", asked.device, got);
  }
  if (asked.pinned != 0) *released += host_router::trim(asked.pinned);
  return true;
}

void* run(void*) noexcept {
  using clock = std::chrono::steady_clock;
  const config& cfg = base::current_config();
  const std::chrono::milliseconds release(cfg.idle_release_ms);
  const std::uint64_t report_ms = cfg.idle_report_ms;
  // The idle release samples k_idle_samples times per release time: an idle dip shorter than a
  // sample period may go unseen, and then a little memory that was needed briefly is released (and
  // taken again). Device memory goes back once idle through a whole release time (a sliding
  // window), pinned slabs once their pool served nothing through one (a fixed window).
  const std::uint64_t sample_ms = std::max<std::uint64_t>(cfg.idle_release_ms / device_router::k_idle_samples, 1);
  auto window_start = clock::now(), last_sample = window_start;
  for (;;) {
    std::unique_lock<std::timed_mutex> round(g_round);
    if (g_stopped.load(std::memory_order_acquire)) {
      round.unlock();
      for (;;) pause();  // the process is exiting: nothing more to do
    }
    std::size_t released = 0;
    const bool connected = report(&released);
    const auto now = clock::now();
    if (release.count() != 0 && now - last_sample >= std::chrono::milliseconds(sample_ms)) {
      const bool window_end = now - window_start >= release;
      released += device_router::idle_tick();
      released += host_router::idle_tick(window_end);
      if (window_end) window_start = now;
      last_sample = now;
    }
    if (released != 0) POOLSHIM_LOG_DEBUG("idle memory given back: {} bytes", released);
    round.unlock();
    std::uint64_t nap = release.count() != 0 ? sample_ms : k_unconnected_nap_ms;
    if (connected) nap = std::min(nap, report_ms);
    nap_ms(nap);
  }
  return nullptr;
}

}  // namespace

void start() noexcept {
  if (g_started.load(std::memory_order_relaxed) || g_started.exchange(true)) return;
  static std::atomic<bool> fork_handler{false};
  if (!fork_handler.exchange(true)) {  // threads do not survive fork: a child starts its own
    pthread_atfork([] { tl_round_held_for_fork = g_round.try_lock_for(k_fork_wait); },
                   [] {
                     if (std::exchange(tl_round_held_for_fork, false)) g_round.unlock();
                   },
                   [] {
                     // The child's only thread is the one that forked: it unlocks what it took, or, when the
                     // wait ran out, starts the lock afresh (the parent's trimmer held it; it has no thread here).
                     if (std::exchange(tl_round_held_for_fork, false))
                       g_round.unlock();
                     else
                       new (&g_round) std::timed_mutex;
                     g_started.store(false, std::memory_order_relaxed);
                   });
    std::atexit([] {
      (void)g_round.try_lock_for(k_exit_wait);  // kept: no round starts after this
      g_stopped.store(true, std::memory_order_release);
    });
  }
  const config& cfg = base::current_config();
  const bool daemon = cfg.use_daemon || cfg.device_source == segment_source::daemon;
  if (cfg.idle_release_ms == 0 && !daemon) return;
  sigset_t all, old;
  sigfillset(&all);
  if (pthread_sigmask(SIG_SETMASK, &all, &old) != 0) return;
  pthread_attr_t attr;
  bool ok = false;
  if (pthread_attr_init(&attr) == 0) {
    (void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    (void)pthread_attr_setstacksize(&attr, std::size_t{256} << 10);
    pthread_t t;
    ok = pthread_create(&t, &attr, run, nullptr) == 0;
    if (ok) (void)pthread_setname_np(t, "poolshim-idle");
    pthread_attr_destroy(&attr);
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (!ok) POOLSHIM_LOG_DEBUG("no idle-release thread: idle memory stays until asked for or trimmed");
}

}  // namespace poolshim::idle_trimmer

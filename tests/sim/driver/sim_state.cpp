// Simulated CUDA driver: configuration from POOLSHIM_SIM_* variables, the state singleton, the
// checks every entry point makes first, and fork handling (a child of an initialised parent
// cannot use CUDA, as with the real driver).
#include "sim_state.h"

#include <pthread.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sim {
namespace {

size_t parse_size(const char* s, size_t fallback) {
  char* end = nullptr;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (end == s) return fallback;
  switch (*end) {
    case 'k':
    case 'K':
      v <<= 10;
      ++end;
      break;
    case 'm':
    case 'M':
      v <<= 20;
      ++end;
      break;
    case 'g':
    case 'G':
      v <<= 30;
      ++end;
      break;
    default:
      break;
  }
  if (*end == 'B' || *end == 'b') ++end;
  return *end == '\0' && v > 0 ? static_cast<size_t>(v) : fallback;
}

void warn(const char* var, const char* value) {
  char line[256];
  int n = std::snprintf(line, sizeof line, "poolshim-sim: ignoring %s=%s (bad value)\n", var, value);
  if (n > 0) (void)!write(2, line, static_cast<size_t>(n));
}

config read_config() {
  config c;
  if (const char* v = std::getenv("POOLSHIM_SIM_DEVICES")) {
    int n = std::atoi(v);
    if (n >= 1 && n <= k_max_devices)
      c.devices = n;
    else
      warn("POOLSHIM_SIM_DEVICES", v);
  }
  if (const char* v = std::getenv("POOLSHIM_SIM_DEVICE_MEMORY")) {
    size_t n = parse_size(v, 0);
    // At least 16 MiB so the arena can hold a few segments; rounded to whole VMM granules.
    if (n >= (size_t{16} << 20))
      c.device_memory = n / k_vmm_granularity * k_vmm_granularity;
    else
      warn("POOLSHIM_SIM_DEVICE_MEMORY", v);
  }
  if (const char* v = std::getenv("POOLSHIM_SIM_FAIL_ALLOC_AT")) {
    const char* p = v;
    while (*p) {
      char* end = nullptr;
      unsigned long long n = std::strtoull(p, &end, 10);
      if (end == p || n == 0) {
        warn("POOLSHIM_SIM_FAIL_ALLOC_AT", v);
        c.fail_alloc_at.clear();
        break;
      }
      c.fail_alloc_at.insert(n);
      p = *end == ',' ? end + 1 : end;
      if (*end != ',' && *end != '\0') {
        warn("POOLSHIM_SIM_FAIL_ALLOC_AT", v);
        c.fail_alloc_at.clear();
        break;
      }
    }
  }
  if (const char* v = std::getenv("POOLSHIM_SIM_STREAM_DELAY_US"))
    c.stream_delay_us = static_cast<uint32_t>(std::strtoul(v, nullptr, 10));
  if (const char* v = std::getenv("POOLSHIM_SIM_FAULT_AT_OP")) c.fault_at_op = std::strtoull(v, nullptr, 10);
  if (const char* v = std::getenv("POOLSHIM_SIM_TRACE")) c.trace = v[0] == '1';
  return c;
}

void on_fork_child() {
  // The child has none of the parent's worker threads; like real CUDA it must not use the
  // driver if the parent had initialised it. get() already exists if we are here.
  state& g = get();
  new (&g.mu) std::mutex();  // the parent may have held it while forking
  if (g.initialized) g.forked_child = true;
}

}  // namespace

state& get() {
  static state* s = [] {
    auto* st = new state();  // leaky on purpose: usable from static destructors
    st->cfg = read_config();
    pthread_atfork(nullptr, nullptr, on_fork_child);
    return st;
  }();
  return *s;
}

// Per-thread state on the heap, kept in a registry (always reachable) and recycled when a thread
// ends. The main thread's is never recycled: static destructors run after its thread_local objects
// are destroyed, and a program's static destructor that calls CUDA must still find its current
// context, as it does with the real driver (a thread_local thread_state made those calls read a
// destroyed stack).
namespace {
struct state_registry {
  std::mutex mu;
  std::vector<thread_state*> spare;
};
state_registry& registry() {
  static auto* r = new state_registry();  // leaky: used by threads that end after exit began
  return *r;
}
struct state_holder {
  thread_state* p = nullptr;
  ~state_holder() {
    if (p == nullptr || gettid() == getpid()) return;  // the main thread keeps its state
    *p = thread_state();
    std::lock_guard<std::mutex> lk(registry().mu);
    registry().spare.push_back(p);
    p = nullptr;
  }
};
// Initial-exec (static TLS, one pointer): LeakSanitizer misreads the dynamic TLS of a library
// loaded with dlopen (this one is, by cudart) on some threads and crashes at exit.
[[gnu::tls_model("initial-exec")]] thread_local state_holder tl_state;
}  // namespace

thread_state& this_thread() {
  state_holder& h = tl_state;
  if (h.p == nullptr) {
    {
      std::lock_guard<std::mutex> lk(registry().mu);
      if (!registry().spare.empty()) {
        h.p = registry().spare.back();
        registry().spare.pop_back();
      }
    }
    if (h.p == nullptr) h.p = new thread_state();
  }
  return *h.p;
}

void trace(const char* fmt, ...) {
  if (!get().cfg.trace) return;
  char line[512];
  int n = std::snprintf(line, sizeof line, "poolshim-sim[%d]: ", getpid());
  va_list ap;
  va_start(ap, fmt);
  n += std::vsnprintf(line + n, sizeof line - static_cast<size_t>(n) - 1, fmt, ap);
  va_end(ap);
  if (n > static_cast<int>(sizeof line) - 2) n = static_cast<int>(sizeof line) - 2;
  line[n++] = '\n';
  (void)!write(2, line, static_cast<size_t>(n));
}

CUresult api_enter(const char* name, bool needs_init) {
  count_call(name);
  state& g = get();
  trace("%s", name);
  if (g.forked_child) return CUDA_ERROR_NOT_INITIALIZED;
  if (this_thread().in_host_func) return CUDA_ERROR_NOT_PERMITTED;  // host funcs may not call CUDA
  if (needs_init && !g.initialized) return CUDA_ERROR_NOT_INITIALIZED;
  CUresult sticky = g.sticky.load(std::memory_order_acquire);
  if (sticky != CUDA_SUCCESS) return sticky;
  return CUDA_SUCCESS;
}

CUresult sticky_or(CUresult r) {
  CUresult sticky = get().sticky.load(std::memory_order_acquire);
  return sticky != CUDA_SUCCESS ? sticky : r;
}

CUcontext current_ctx() {
  auto& st = this_thread().ctx_stack;
  return st.empty() ? nullptr : st.back();
}

bool ctx_alive(CUcontext c) { return c != nullptr && get().contexts.count(c) != 0 && c->alive; }

CUresult require_ctx(CUcontext* out) {
  CUcontext c = current_ctx();
  if (c == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  if (!ctx_alive(c)) return CUDA_ERROR_CONTEXT_IS_DESTROYED;
  *out = c;
  return CUDA_SUCCESS;
}

bool count_device_alloc() {
  state& g = get();
  uint64_t n = g.device_allocs.fetch_add(1) + 1;
  return g.cfg.fail_alloc_at.count(n) == 0;
}

CUresult check_unsafe_call() {
  state& g = get();
  if (g.captures.empty()) return CUDA_SUCCESS;
  auto me = std::this_thread::get_id();
  CUstreamCaptureMode mine = this_thread().capture_mode;
  if (mine == CU_STREAM_CAPTURE_MODE_RELAXED) return CUDA_SUCCESS;
  bool forbidden = false;
  for (auto& c : g.captures) {
    bool own = c->thread == me && c->mode != CU_STREAM_CAPTURE_MODE_RELAXED;
    bool other_global =
        mine == CU_STREAM_CAPTURE_MODE_GLOBAL && c->thread != me && c->mode == CU_STREAM_CAPTURE_MODE_GLOBAL;
    if (own || other_global) {
      c->invalidated = true;
      forbidden = true;
    }
  }
  return forbidden ? CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED : CUDA_SUCCESS;
}

}  // namespace sim

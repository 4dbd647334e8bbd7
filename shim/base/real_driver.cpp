// Resolves the real driver table (real_driver.h) once, lock-free: racing first callers each build a
// table and one compare-exchange publishes it, so nobody ever waits (a waiter could hold the loader
// lock that the resolving thread needs). Also finds the real dlsym.
#include "base/real_driver.h"

#include <dlfcn.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <new>

namespace poolshim {

// The first CUDA call resolved the table: the top layer (dispatch/lifecycle.cpp) registers its fork
// handler and looks for other interposers there. Weak, so that base knows no layer above it, and a
// test that links base alone resolves the driver without it.
[[gnu::weak]] void on_driver_resolved(const real_driver& driver) noexcept;

namespace {

template <class F>
struct missing_entry;
template <class... A>
struct missing_entry<CUresult(CUDAAPI*)(A...)> {
  static CUresult CUDAAPI call(A...) noexcept { return CUDA_ERROR_NOT_FOUND; }
};

constexpr real_driver k_stubs = {
#define POOLSHIM_REAL_DRIVER_STUB(member, name, pfn) &missing_entry<pfn>::call,
    POOLSHIM_REAL_DRIVER_ENTRIES(POOLSHIM_REAL_DRIVER_STUB)
#undef POOLSHIM_REAL_DRIVER_STUB
        nullptr,
    false,
};

std::atomic<const real_driver*> g_table{nullptr};
constinit thread_local bool t_resolving __attribute__((tls_model("initial-exec"))) = false;

std::atomic<dlsym_fn> g_real_dlsym{nullptr};

void say(const char* msg) noexcept {
  std::size_t n = 0;
  while (msg[n]) ++n;
  ssize_t ignored = ::write(2, msg, n);
  (void)ignored;
}

[[gnu::noinline]] dlsym_fn resolve_real_dlsym() noexcept {
  // dlvsym is not interposed, so this cannot recurse into our dlsym. glibc 2.34 moved dlsym into
  // libc under a new version node; older glibc has only GLIBC_2.2.5.
  void* p = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
  if (p == nullptr) p = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
  if (p == nullptr) {
    say("poolshim: cannot find the C library's dlsym; aborting\n");
    std::abort();
  }
  auto f = reinterpret_cast<dlsym_fn>(p);
  g_real_dlsym.store(f, std::memory_order_release);
  return f;
}

[[gnu::noinline]] const real_driver& resolve_slow() noexcept {
  if (t_resolving) return k_stubs;  // the driver's own constructors calling back while we load it
  t_resolving = true;
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  if (lib == nullptr) lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  auto* fresh = new (std::nothrow) real_driver(k_stubs);
  if (fresh == nullptr) {
    t_resolving = false;
    return k_stubs;
  }
  fresh->handle = lib;
  fresh->loaded = lib != nullptr;
  if (lib != nullptr) {
    dlsym_fn sym = real_dlsym();
#define POOLSHIM_REAL_DRIVER_RESOLVE(member, name, pfn) \
  if (void* p = sym(lib, name)) fresh->member = reinterpret_cast<pfn>(p);
    POOLSHIM_REAL_DRIVER_ENTRIES(POOLSHIM_REAL_DRIVER_RESOLVE)
#undef POOLSHIM_REAL_DRIVER_RESOLVE
  }
  const real_driver* expected = nullptr;
  if (!g_table.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)) {
    delete fresh;  // another thread published first; both tables are identical
    t_resolving = false;
    return *expected;
  }
  if (&on_driver_resolved != nullptr) on_driver_resolved(*fresh);
  t_resolving = false;
  return *fresh;
}

}  // namespace

const real_driver& real_driver::get() noexcept {
  if (const real_driver* t = g_table.load(std::memory_order_acquire)) [[likely]]
    return *t;
  return resolve_slow();
}

const real_driver* real_driver::peek() noexcept { return g_table.load(std::memory_order_acquire); }

dlsym_fn real_dlsym() noexcept {
  if (dlsym_fn f = g_real_dlsym.load(std::memory_order_acquire)) [[likely]]
    return f;
  return resolve_real_dlsym();
}

}  // namespace poolshim

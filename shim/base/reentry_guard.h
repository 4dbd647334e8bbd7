// The re-entry guard every hook takes first: a call the shim itself makes into the driver (or one
// the driver makes into an exported name through its own PLT) must go straight to the real
// function, never back through the pool. Initial-exec TLS: no allocation, no lock, no call to
// __tls_get_addr, so the guard works inside dlopen, at exit and in static constructors.
#pragma once

namespace poolshim::base {

extern constinit thread_local int t_hook_depth __attribute__((tls_model("initial-exec")));

class reentry_guard {
 public:
  reentry_guard() noexcept : nested_(t_hook_depth++ != 0) {}
  ~reentry_guard() { --t_hook_depth; }
  reentry_guard(const reentry_guard&) = delete;
  reentry_guard& operator=(const reentry_guard&) = delete;

  // True when this thread was already inside a hook: the caller goes straight to the real driver.
  bool nested() const noexcept { return nested_; }

 private:
  bool nested_;
};

// A fork child runs on a copy of the forking thread only; whatever depth that thread had is reset.
inline void reset_reentry_guard_after_fork() noexcept { t_hook_depth = 0; }

}  // namespace poolshim::base

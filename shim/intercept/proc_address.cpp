// dlsym answers and the cuGetProcAddress mapping (proc_address.h), and the two lookup wrappers of
// the hooks (get_proc_address_v1/_v2). The mapping is built once, on the first
// lookup, from the real libcuda's own symbols (dlsym(libcuda, "cuMemAlloc_v2"), ...) and from what
// its cuGetProcAddress returns for each hooked ABI (a driver may hand out internal addresses).
#include "intercept/proc_address.h"

#include <dlfcn.h>

#include <atomic>
#include <cstring>
#include <new>

#include "base/log.h"
#include "base/process.h"
#include "base/real_driver.h"
#include "intercept/counters.h"
#include "intercept/hook_list.h"

namespace poolshim::intercept {

using base::interposer;
using base::note_interposer;
using base::report_interposers;
using base::tracking;

// Overridden by the front end's strong definition in libpoolshim.so; all null where the core is
// linked alone (unit tests of other parts), so nothing is ever wrapped there.
extern "C++" [[gnu::weak]] void* const k_hook_wrappers[k_hook_count] = {};

int find_hook_by_export(const char* name) noexcept {
  for (std::size_t i = 0; i < k_hook_count; ++i)
    if (std::strcmp(k_hooks[i].export_name, name) == 0) return static_cast<int>(i);
  return -1;
}

bool is_hooked_base_name(const char* name) noexcept {
  for (const hook_info& h : k_hooks)
    if (std::strcmp(h.base_name, name) == 0) return true;
  return false;
}

namespace {

struct wrap_entry {
  void* real;
  unsigned hook;
};

struct wrap_table {
  wrap_entry entries[2 * k_hook_count];
  std::size_t size;

  int find(void* p) const noexcept {
    for (std::size_t i = 0; i < size; ++i)
      if (entries[i].real == p) return static_cast<int>(entries[i].hook);
    return -1;
  }
  void add(void* p, unsigned hook) noexcept {
    if (find(p) < 0 && size < sizeof entries / sizeof entries[0]) entries[size++] = wrap_entry{p, hook};
  }
};

std::atomic<const wrap_table*> g_wraps{nullptr};
std::atomic<std::uint64_t> g_unknown_reported{0};  // by hook row of the base name
static_assert(k_hook_count <= 64, "report_unknown_once keeps one bit per hook row in a 64-bit mask");

[[gnu::noinline]] const wrap_table* build_wraps(const real_driver& d) noexcept {
  auto* t = new (std::nothrow) wrap_table{};
  if (t == nullptr) return nullptr;
  if (d.loaded) {
    dlsym_fn sym = real_dlsym();
    for (unsigned i = 0; i < k_hook_count; ++i) {
      const hook_info& h = k_hooks[i];
      void* exported = sym(d.handle, h.export_name);
      if (exported == nullptr) continue;  // this driver lacks that ABI: nothing to map
      t->add(exported, i);
      void* handed = nullptr;
      CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
      cuuint64_t flags =
          h.per_thread ? CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM : CU_GET_PROC_ADDRESS_LEGACY_STREAM;
      if (d.cuGetProcAddress_v2(h.base_name, &handed, h.version, flags, &status) == CUDA_SUCCESS &&
          status == CU_GET_PROC_ADDRESS_SUCCESS && handed != nullptr)
        t->add(handed, i);
    }
  }
  const wrap_table* expected = nullptr;
  if (g_wraps.compare_exchange_strong(expected, t, std::memory_order_acq_rel)) return t;
  delete t;
  return expected;
}

const wrap_table* wraps(const real_driver& d) noexcept {
  if (const wrap_table* t = g_wraps.load(std::memory_order_acquire)) [[likely]]
    return t;
  return build_wraps(d);
}

bool in_libcuda(void* p) noexcept {
  Dl_info info{};
  if (dladdr(p, &info) == 0 || info.dli_fname == nullptr) return false;
  const char* base = std::strrchr(info.dli_fname, '/');
  base = base ? base + 1 : info.dli_fname;
  return std::strncmp(base, "libcuda.so", 10) == 0;
}

void report_unknown_once(const char* symbol, int cuda_version, cuuint64_t flags) noexcept {
  int row = -1;
  for (std::size_t i = 0; i < k_hook_count; ++i) {
    if (std::strcmp(k_hooks[i].base_name, symbol) == 0) {
      row = static_cast<int>(i);
      break;
    }
  }
  if (row < 0) return;
  std::uint64_t bit = std::uint64_t{1} << row;
  if (g_unknown_reported.fetch_or(bit, std::memory_order_relaxed) & bit) return;
  if (std::strcmp(symbol, "cuGetProcAddress") == 0) note_interposer(interposer::get_proc_address);
  POOLSHIM_LOG_WARN(
      "cuGetProcAddress(\"{}\", {}, flags {}) returned an entry point poolshim does not know "
      "(an ABI poolshim does not list, or another interposer): passed through, calls through it are not seen",
      symbol, cuda_version, static_cast<unsigned long long>(flags));
}

// After the real lookup: replace the pointer by our wrapper of the same ABI where we know it.
void map_lookup(CUresult r, const char* symbol, void** pfn, int cuda_version, cuuint64_t flags) noexcept {
  if (r != CUDA_SUCCESS || symbol == nullptr || pfn == nullptr || *pfn == nullptr) return;
  bump(g_counters.lookups);
  const real_driver& d = real();
  if (void* w = wrapper_for(d, *pfn)) {
    *pfn = w;
    bump(g_counters.lookups_wrapped);
  } else if (is_hooked_base_name(symbol)) {
    bump(g_counters.lookups_unknown);
    report_unknown_once(symbol, cuda_version, flags);
  }
  report_interposers();
}

}  // namespace

void* wrapper_for(const real_driver& driver, void* real) noexcept {
  const wrap_table* t = wraps(driver);
  if (t == nullptr) return nullptr;
  int hook = t->find(real);
  return hook < 0 ? nullptr : k_hook_wrappers[hook];
}

dlsym_answer answer_dlsym(void* handle, const char* name) noexcept {
  dlsym_fn real_fn = real_dlsym();
  const dlsym_answer forward{nullptr, reinterpret_cast<void*>(real_fn)};
  // A driver name is "cu" and an upper-case letter ("cuda*" names are the runtime's).
  if (name == nullptr || name[0] != 'c' || name[1] != 'u' || name[2] < 'A' || name[2] > 'Z') [[likely]]
    return forward;
  int hook = find_hook_by_export(name);
  if (hook < 0 || !tracking()) return forward;
  void* wrapper = k_hook_wrappers[hook];
  if (wrapper == nullptr) return forward;
  // RTLD_DEFAULT and RTLD_NEXT: what lies below the shim (our own export would shadow it).
  const bool pseudo = handle == RTLD_DEFAULT || handle == RTLD_NEXT;
  void* below = real_fn(pseudo ? RTLD_NEXT : handle, name);
  if (below == nullptr) return forward;  // the loader answers, exactly as without us
  if (below == wrapper) return dlsym_answer{wrapper, nullptr};
  if (!in_libcuda(below)) {
    note_interposer(std::strncmp(name, "cuGetProcAddress", 16) == 0 ? interposer::get_proc_address
                                                                    : interposer::driver_symbol);
    return forward;
  }
  return dlsym_answer{wrapper, nullptr};
}

CUresult get_proc_address_v1(const char* symbol, void** pfn, int cuda_version, cuuint64_t flags) noexcept {
  const real_driver& d = real();
  CUresult r = d.cuGetProcAddress_v1(symbol, pfn, cuda_version, flags);
  if (!tracking()) return r;
  count_call(hook_id::get_proc_address_v1);
  map_lookup(r, symbol, pfn, cuda_version, flags);
  return r;
}

CUresult get_proc_address_v2(const char* symbol, void** pfn, int cuda_version, cuuint64_t flags,
                             CUdriverProcAddressQueryResult* status) noexcept {
  const real_driver& d = real();
  CUresult r = d.cuGetProcAddress_v2(symbol, pfn, cuda_version, flags, status);
  if (!tracking()) return r;
  count_call(hook_id::get_proc_address_v2);
  map_lookup(r, symbol, pfn, cuda_version, flags);
  return r;
}

}  // namespace poolshim::intercept

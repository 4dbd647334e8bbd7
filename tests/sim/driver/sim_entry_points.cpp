// Simulated CUDA driver: cuGetProcAddress / cuGetProcAddress_v2 over the table in
// entry_points.inc, and the error-string functions. The table is the only place that says which
// names and ABI versions the simulator provides.
#include <atomic>
#include <cstring>
#include <string_view>
#include <unordered_map>

#include "sim_state.h"

using namespace sim;

namespace {

struct entry {
  const char* name;  // base name, what cuGetProcAddress is asked for
  int version;       // CUDA version of this ABI variant
  bool per_thread;   // the _ptds/_ptsz variant
  void* fn;          // the exported function
  const char* export_name;
};

template <class F>
void* fn_ptr(F* f) {
  return reinterpret_cast<void*>(f);
}

#define POOLSHIM_SIM_EP(name, version, per_thread, fn) {name, version, (per_thread) != 0, fn_ptr(&fn), #fn},
const entry k_entries[] = {
#include "entry_points.inc"
};
#undef POOLSHIM_SIM_EP
constexpr size_t k_entry_count = sizeof k_entries / sizeof k_entries[0];

// Calls per export (row of k_entries), all threads. Entered without a lock: the index is found in
// a map that is built once and only read afterwards.
std::atomic<unsigned long long> g_calls[k_entry_count];

const std::unordered_map<std::string_view, size_t>& export_rows() {
  static const auto* rows = [] {
    auto* m = new std::unordered_map<std::string_view, size_t>();  // leaky: usable at exit
    for (size_t i = 0; i < k_entry_count; ++i) m->emplace(k_entries[i].export_name, i);
    return m;
  }();
  return *rows;
}

// The lookup rule (tests/sim/README.md, "Driver entry points"): among the rows of `symbol` with
// version <= cudaVersion, PER_THREAD_DEFAULT_STREAM takes the newest per-thread row and, when
// there is none, the newest legacy row; DEFAULT and LEGACY_STREAM take the newest legacy row.
CUresult lookup(const char* symbol, void** pfn, int cuda_version, cuuint64_t flags,
                CUdriverProcAddressQueryResult* status) {
  trace("cuGetProcAddress(%s, %d, %llu)", symbol ? symbol : "(null)", cuda_version,
        static_cast<unsigned long long>(flags));
  if (symbol == nullptr || pfn == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (flags > CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) return CUDA_ERROR_INVALID_VALUE;
  *pfn = nullptr;
  if (cuda_version > k_driver_version) return CUDA_ERROR_INVALID_VALUE;  // newer than this driver
  // DEFAULT means "as the caller was compiled"; the driver cannot know, so it is LEGACY here.
  const bool want_per_thread = flags == CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
  const entry* legacy = nullptr;
  const entry* per_thread = nullptr;
  bool known = false;
  for (const entry& e : k_entries) {
    if (std::strcmp(e.name, symbol) != 0) continue;
    known = true;
    if (e.version > cuda_version) continue;
    const entry*& best = e.per_thread ? per_thread : legacy;
    if (best == nullptr || e.version > best->version) best = &e;
  }
  const entry* pick = want_per_thread && per_thread != nullptr ? per_thread : legacy;
  if (pick == nullptr) {
    if (status) *status = known ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    return CUDA_SUCCESS;
  }
  *pfn = pick->fn;
  if (status) *status = CU_GET_PROC_ADDRESS_SUCCESS;
  return CUDA_SUCCESS;
}

}  // namespace

namespace sim {
void count_call(const char* export_name) {
  const auto& rows = export_rows();
  auto it = rows.find(export_name);
  if (it != rows.end()) g_calls[it->second].fetch_add(1, std::memory_order_relaxed);
}
}  // namespace sim

namespace {

struct error_text {
  CUresult code;
  const char* name;
  const char* text;
};
const error_text k_errors[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_DEINITIALIZED, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_CONTEXT_IS_DESTROYED, "CUDA_ERROR_CONTEXT_IS_DESTROYED", "context is destroyed"},
    {CUDA_ERROR_MAP_FAILED, "CUDA_ERROR_MAP_FAILED", "mapping of buffer object failed"},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {CUDA_ERROR_ILLEGAL_STATE, "CUDA_ERROR_ILLEGAL_STATE", "the operation cannot be performed in the present state"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
    {CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED, "CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED",
     "peer access is already enabled"},
    {CUDA_ERROR_PEER_ACCESS_NOT_ENABLED, "CUDA_ERROR_PEER_ACCESS_NOT_ENABLED", "peer access has not been enabled"},
    {CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED",
     "part or all of the requested memory range is already mapped"},
    {CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED",
     "pointer does not correspond to a registered memory region"},
    {CUDA_ERROR_NOT_PERMITTED, "CUDA_ERROR_NOT_PERMITTED", "operation not permitted"},
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
     "operation not permitted when stream is capturing"},
    {CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
     "operation failed due to a previous error during capture"},
    {CUDA_ERROR_STREAM_CAPTURE_MERGE, "CUDA_ERROR_STREAM_CAPTURE_MERGE",
     "operation would result in a merge of separate capture sequences"},
    {CUDA_ERROR_STREAM_CAPTURE_UNMATCHED, "CUDA_ERROR_STREAM_CAPTURE_UNMATCHED",
     "capture was not ended in the same stream as it began"},
    {CUDA_ERROR_STREAM_CAPTURE_UNJOINED, "CUDA_ERROR_STREAM_CAPTURE_UNJOINED", "capturing stream has unjoined work"},
    {CUDA_ERROR_STREAM_CAPTURE_ISOLATION, "CUDA_ERROR_STREAM_CAPTURE_ISOLATION",
     "dependency created on uncaptured work in another stream"},
    {CUDA_ERROR_STREAM_CAPTURE_IMPLICIT, "CUDA_ERROR_STREAM_CAPTURE_IMPLICIT",
     "operation would make the legacy stream depend on a capturing blocking stream"},
    {CUDA_ERROR_CAPTURED_EVENT, "CUDA_ERROR_CAPTURED_EVENT",
     "operation not permitted on an event last recorded in a capturing stream"},
    {CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD, "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD",
     "attempt to terminate a thread-local capture sequence from another thread"},
    {CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

const error_text* find_error(CUresult e) {
  for (const error_text& t : k_errors)
    if (t.code == e) return &t;
  return nullptr;
}

}  // namespace

POOLSHIM_SIM_API CUresult cuGetProcAddress_v2(const char* symbol, void** pfn, int cuda_version, cuuint64_t flags,
                                              CUdriverProcAddressQueryResult* status) {
  if (CUresult r = api_enter("cuGetProcAddress_v2", false); r != CUDA_SUCCESS) return r;
  return lookup(symbol, pfn, cuda_version, flags, status);
}

// The CUDA 11.3 ABI (no status argument), still exported under the plain name.
POOLSHIM_SIM_API CUresult cuGetProcAddress(const char* symbol, void** pfn, int cuda_version, cuuint64_t flags) {
  if (CUresult r = api_enter("cuGetProcAddress", false); r != CUDA_SUCCESS) return r;
  return lookup(symbol, pfn, cuda_version, flags, nullptr);
}

// Test hook: how many times the export `export_name` has been entered in this process (all
// threads); 0 for a name that is not an export of this library.
extern "C" __attribute__((visibility("default"))) unsigned long long poolshim_sim_calls(const char* export_name) {
  if (export_name == nullptr) return 0;
  const auto& rows = export_rows();
  auto it = rows.find(export_name);
  return it == rows.end() ? 0 : g_calls[it->second].load(std::memory_order_relaxed);
}

POOLSHIM_SIM_API CUresult cuGetErrorString(CUresult error, const char** str) {
  count_call("cuGetErrorString");  // usable before cuInit: counted, no other check
  if (str == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const error_text* t = find_error(error);
  *str = t ? t->text : nullptr;
  return t ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

POOLSHIM_SIM_API CUresult cuGetErrorName(CUresult error, const char** str) {
  count_call("cuGetErrorName");
  if (str == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const error_text* t = find_error(error);
  *str = t ? t->name : nullptr;
  return t ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

// Simulated CUDA driver: the process-wide state every entry point works on.
// One leaky singleton (never destroyed, so static destructors of the host program may still call
// the driver), one mutex for all bookkeeping and one condition variable that every completion
// notifies. Copies and host functions run outside the lock, on per-stream worker threads.
#pragma once

// Declare every ABI variant of every entry point (legacy names, _v2..._v4, _ptds/_ptsz), the way
// the driver itself is built; no macro renames a name in this library.
#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace sim {

constexpr int k_driver_version = 13000;
constexpr size_t k_alloc_align = 512;           // cudaMalloc alignment (CUDA_FACTS §1)
constexpr size_t k_vmm_granularity = 2u << 20;  // cuMemGetAllocationGranularity
constexpr int k_max_devices = 8;

struct config {
  int devices = 2;
  size_t device_memory = size_t{4} << 30;
  std::set<uint64_t> fail_alloc_at;
  uint32_t stream_delay_us = 0;
  uint64_t fault_at_op = 0;
  bool trace = false;
};

// --- memory -------------------------------------------------------------------------------

enum class region_kind {
  device,           // cuMemAlloc / cuMemAllocPitch, in the device arena
  async,            // cuMemAllocAsync, in the device arena, freed stream-ordered
  managed,          // cuMemAllocManaged, host-accessible
  host_alloc,       // cuMemHostAlloc / cuMemAllocHost (pinned)
  host_registered,  // cuMemHostRegister
  vmm_mapping,      // one cuMemMap chunk inside a reservation
  ipc_import,       // cuIpcOpenMemHandle
};

struct vmm_allocation;

struct region {
  region_kind kind;
  uintptr_t base = 0;         // address the program sees
  size_t size = 0;            // bytes the program asked for (pitch*height for pitched)
  uint8_t* shadow = nullptr;  // read-write view the workers use; == base for host-accessible kinds
  int device = -1;
  CUcontext ctx = nullptr;
  unsigned flags = 0;       // host alloc / register flags
  uint64_t buffer_id = 0;   // CU_POINTER_ATTRIBUTE_BUFFER_ID, never reused
  size_t arena_offset = 0;  // device/async: where in the arena memfd
  size_t arena_span = 0;    // device/async: bytes reserved in the arena (rounded)
  // vmm_mapping
  std::shared_ptr<vmm_allocation> vmm;
  unsigned access_mask = 0;  // bit per device: READ; (access_rw_mask) READWRITE
  unsigned access_rw_mask = 0;
  // ipc_import
  int ipc_refs = 0;
  uint64_t ipc_key = 0;      // exporter pid << 32 ^ buffer id, to find a reopened handle
  void* map_base = nullptr;  // ipc_import: page-aligned mapping to unmap
  size_t map_len = 0;
};

struct arena {
  int fd = -1;
  size_t size = 0;
  uint8_t* device_view = nullptr;        // PROT_NONE: what device pointers point into
  uint8_t* shadow_view = nullptr;        // read-write alias used by the workers
  std::map<size_t, size_t> free_ranges;  // offset -> length, coalesced
  size_t used = 0;                       // bytes of device memory in use (arena + VMM)
};

struct vmm_allocation {
  int fd = -1;
  size_t size = 0;
  int device = 0;
  CUmemAllocationProp prop{};
  int handle_refs = 1;   // cuMemCreate / import / retain minus releases
  int mapping_refs = 0;  // live cuMemMap chunks
  bool counted = true;   // charged to the device (not for imports of another process's memory)
};

struct reservation {
  uintptr_t base = 0;
  size_t size = 0;
};

// --- streams, events, graphs ----------------------------------------------------------------

struct capture_state;

struct op {
  std::function<void()> run;                         // executes on the worker, outside the lock
  std::vector<std::pair<CUstream, uint64_t>> waits;  // run once stream->completed >= seq
  uint64_t seq = 0;
};

enum class stream_role { user, legacy, per_thread };

}  // namespace sim

struct CUctx_st {
  int device = 0;
  bool primary = false;
  bool alive = true;
  unsigned flags = 0;
  unsigned long long id = 0;
  CUstream legacy = nullptr;
  std::set<int> peers_enabled;
};

struct CUstream_st {
  CUcontext ctx = nullptr;
  sim::stream_role role = sim::stream_role::user;
  unsigned flags = 0;
  int priority = 0;
  unsigned long long id = 0;
  bool destroyed = false;
  std::deque<sim::op> queue;
  uint64_t enqueued = 0;                        // seq of the last op enqueued
  uint64_t completed = 0;                       // seq of the last op finished
  std::shared_ptr<sim::capture_state> capture;  // non-null while capturing (or joined)
};

namespace sim {
// A CU_EVENT_INTERPROCESS event's state, on a page of a memfd of its own that every process holding
// the event maps (the exporter creates it; cuIpcOpenEventHandle maps it through /proc/<pid>/fd/<n>).
// A record takes the next generation; its stream op, when it runs, raises `completed` to it. A wait
// (cuStreamWaitEvent, cuEventSynchronize) waits for the generation that was newest at its call.
struct ipc_event_state {
  char magic[8];
  std::atomic<uint64_t> recorded;
  std::atomic<uint64_t> completed;
};
}  // namespace sim

struct CUevent_st {
  sim::ipc_event_state* ipc = nullptr;  // interprocess events: the shared state (never unmapped)
  int ipc_fd = -1;                      // in the process that created it: the memfd holding it
  CUcontext ctx = nullptr;
  unsigned flags = 0;
  bool destroyed = false;
  CUstream stream = nullptr;  // where it was last recorded (nullptr: never)
  uint64_t seq = 0;
  bool captured = false;  // last recorded inside a stream capture
  std::shared_ptr<sim::capture_state> capture;
  std::chrono::steady_clock::time_point when{};
  bool has_time = false;
};

struct CUgraph_st {
  std::vector<std::function<void()>> nodes;  // replayed in order
  bool destroyed = false;
};

struct CUlib_st {  // cuLibraryLoadData: bookkeeping only (no device code is ever loaded)
  const void* code = nullptr;
};

struct CUgraphExec_st {
  std::vector<std::function<void()>> nodes;
  CUcontext ctx = nullptr;
  bool destroyed = false;
};

namespace sim {

struct capture_state {
  unsigned long long id = 0;
  CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_GLOBAL;
  std::thread::id thread;
  CUstream origin = nullptr;
  CUgraph graph = nullptr;
  bool invalidated = false;
  std::set<CUstream> members;  // origin plus streams joined through an event wait
};

struct state {
  config cfg;
  std::mutex mu;
  std::condition_variable cv;  // notified on every op completion and state change

  bool initialized = false;   // cuInit succeeded
  bool forked_child = false;  // this process is a fork() child of an initialised parent
  std::atomic<CUresult> sticky{CUDA_SUCCESS};

  std::vector<arena> arenas;       // one per device
  std::vector<CUctx_st*> primary;  // primary context per device
  std::vector<int> primary_refs;
  std::unordered_set<CUcontext> contexts;  // live contexts
  std::unordered_set<CUstream> streams;    // live user and per-thread streams
  std::unordered_set<CUevent> events;
  std::unordered_set<CUgraph> graphs;
  std::unordered_set<CUgraphExec> graph_execs;
  std::unordered_set<CUlibrary> libraries;  // cuLibraryLoadData handles not yet unloaded
  std::vector<void*> graveyard;             // destroyed objects, kept reachable (ops may refer)

  std::map<uintptr_t, region> regions;  // by base address
  std::map<uintptr_t, reservation> reservations;
  std::unordered_map<CUmemGenericAllocationHandle, std::shared_ptr<vmm_allocation>> vmm_handles;
  CUmemGenericAllocationHandle next_vmm_handle = 0x5000;
  std::vector<std::shared_ptr<capture_state>> captures;  // active captures

  uint64_t next_buffer_id = 1;
  unsigned long long next_stream_id = 1;
  unsigned long long next_ctx_id = 1;
  unsigned long long next_capture_id = 1;
  std::atomic<uint64_t> device_allocs{0};  // for POOLSHIM_SIM_FAIL_ALLOC_AT
  std::atomic<uint64_t> ops_started{0};    // for POOLSHIM_SIM_FAULT_AT_OP
};

state& get();  // the singleton; created on first use, never destroyed

// Per-thread driver state.
struct thread_state {
  std::vector<CUcontext> ctx_stack;
  std::unordered_map<CUcontext, CUstream> per_thread_streams;
  CUstreamCaptureMode capture_mode = CU_STREAM_CAPTURE_MODE_GLOBAL;
  bool in_host_func = false;  // worker thread running a host function or callback
};
thread_state& this_thread();

// --- helpers shared by the entry points (all expect g.mu held unless noted) ------------------

// Checks every entry point makes first: initialised, not a fork child, not called from a host
// function, no sticky error. Does not lock. `name` is the export being entered (its own name, e.g.
// "cuMemAlloc" for the v1 ABI, "cuMemAlloc_v2" for v2): it is traced and counted.
CUresult api_enter(const char* name, bool needs_init = true);
// Counts one call of export `export_name` for poolshim_sim_calls (lock-free; names that are not
// rows of entry_points.inc are ignored). api_enter calls it; so do exports that skip api_enter.
void count_call(const char* export_name);
CUcontext current_ctx();               // top of this thread's stack, or nullptr
CUresult require_ctx(CUcontext* out);  // INVALID_CONTEXT when none is current
bool ctx_alive(CUcontext c);
void trace(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// The v1 (CUDA 2.x) ABIs: 32-bit device pointers and sizes. Pointers going in are zero-extended
// (implicitly, CUdeviceptr_v1 -> CUdeviceptr); pointers coming out keep their low 32 bits
// (CUDA.jl #5 saw truncated pointers) and sizes coming out are clamped to UINT_MAX (BOINC #1773
// saw cuDeviceTotalMem v1 report at most 4 GiB). Unverified on a GPU (tests/sim/README.md).
inline unsigned int clamp_u32(size_t v) { return v > 0xffffffffu ? 0xffffffffu : static_cast<unsigned int>(v); }
inline CUdeviceptr_v1 truncate_dptr(CUdeviceptr p) { return static_cast<CUdeviceptr_v1>(p & 0xffffffffu); }

// memory (sim_memory.cpp)
CUresult init_arenas();  // cuInit, with g.mu held
CUresult arena_alloc(int device, size_t size, size_t* offset, size_t* span);
void arena_release(int device, size_t offset, size_t span);
region* find_region(uintptr_t p);       // region containing p, or nullptr
region* find_region_base(uintptr_t p);  // region starting exactly at p
bool count_device_alloc();              // false: fault injection says fail this one
CUresult new_device_region(region_kind kind, size_t size, CUcontext ctx, uintptr_t* out);
void free_device_region(uintptr_t base);  // erase + release arena span
void free_all_of_context(CUcontext c);    // cuDevicePrimaryCtxReset / cuCtxDestroy

// A byte range resolved for a worker: the pointer to touch plus what kind of memory it is.
enum class mem_class { pageable, pinned, device, managed };
struct resolved {
  uint8_t* ptr = nullptr;
  mem_class cls = mem_class::pageable;
  int device = -1;
};
CUresult resolve_range(uintptr_t p, size_t n, bool write, int accessing_device, resolved* out);

// streams (sim_streams.cpp)
CUresult resolve_stream(CUstream s, bool per_thread_variant, CUstream* out);
// Enqueue an op on s (handles legacy/blocking ordering and capture). `run` runs on the worker.
CUresult enqueue(CUstream s, std::function<void()> run);
// A new interprocess event's shared state (sim_vmm_ipc.cpp): mapped, its memfd in *fd; nullptr when
// no memfd can be made.
ipc_event_state* create_ipc_event_state(int* fd);
// Completes an empty op at once when `s` is idle and has nothing to wait for (see sim_streams.cpp):
// its sequence number, or 0 when it must be enqueued.
uint64_t try_complete_empty_op(CUstream s);
void wait_stream_locked(std::unique_lock<std::mutex>& lk, CUstream s, uint64_t seq);
void sync_context_locked(std::unique_lock<std::mutex>& lk, CUcontext c);
void sync_device_locked(std::unique_lock<std::mutex>& lk, int device);
void sync_all_locked(std::unique_lock<std::mutex>& lk);
bool stream_idle(CUstream s);
CUstream new_stream(CUcontext c, stream_role role, unsigned flags, int priority);
void retire_stream(CUstream s);  // no more ops accepted; the worker exits once drained
// Capture rules: a potentially unsafe call (allocation, free, synchronisation) while capture
// forbids it invalidates the offending captures and returns STREAM_CAPTURE_UNSUPPORTED.
CUresult check_unsafe_call();
CUresult sticky_or(CUresult r);

}  // namespace sim

// Export marker for the cu* entry points (the library is built with -fvisibility=hidden).
#define POOLSHIM_SIM_API extern "C" __attribute__((visibility("default")))

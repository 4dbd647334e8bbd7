// libpoolshim_buffers (include/poolshim/buffers.h): named buffers through poolshimd's socket,
// without the shim. One connection per process (lazy, under a mutex; a fork child makes its own),
// trusted as the shim trusts it; every request is checked here first (buffer_create_problem), so
// that a bad one gets its reason in words, not only the daemon's status.
#include "poolshim/buffers.h"

#include <cuda.h>
#include <dlfcn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "poolshim/channel.h"
#include "poolshim/channel_ring.h"
#include "poolshim/protocol.h"
#include "poolshim/transport.h"

namespace proto = poolshim::proto;

struct poolshim_buffer {
  void* data = nullptr;      // host: the mapping; device: the device pointer in this process
  std::uint64_t bytes = 0;   // the buffer's size
  std::uint64_t mapped = 0;  // host: the mapping's (a page multiple)
  std::uint64_t ref = 0;     // the daemon's reference id
  void* event = nullptr;     // device: its interprocess event, opened here (a CUevent)
  bool registered = false;   // host: page-locked for CUDA here (cuMemHostRegister)
  std::uint64_t id = 0;      // the daemon's id of the buffer (a channel sends it by reference)
  poolshim_buffer_info info{};
};

namespace {

thread_local std::string t_error;

int fail(int code, std::string text) {
  t_error = std::move(text);
  return code;
}

struct connection {
  std::mutex mutex;
  int sock = -1;
  pid_t pid = 0;  // the process that made it (a fork child makes its own)
  std::uint32_t seq = 0;
};

connection& conn() {
  static connection* c = new connection();  // leaky: buffers may be closed from static destructors
  return *c;
}

// Connected and trusted, or an error code (the text set).
int ensure_connected(connection& c) {
  if (c.sock >= 0 && c.pid == getpid()) return 0;
  if (c.sock >= 0) {
    close(c.sock);  // inherited across fork: the parent's
    c.sock = -1;
  }
  std::string why;
  const std::string path = proto::socket_path(std::getenv("POOLSHIM_SOCKET"));
  try {
    if (!proto::trusted_directory(path, getuid(), &why))
      return fail(POOLSHIM_ENODAEMON, "no trusted poolshimd at " + path + ": " + why);
    const int s = proto::connect_seqpacket(path, &why);
    if (s < 0) return fail(POOLSHIM_ENODAEMON, "no poolshimd at " + path + ": " + why);
    if (!proto::trusted_peer(s, getuid(), &why)) {
      close(s);
      return fail(POOLSHIM_ENODAEMON, "not trusting the poolshimd at " + path + ": " + why);
    }
    c.sock = s;
    c.pid = getpid();
  } catch (const std::bad_alloc&) {
    return fail(POOLSHIM_EIO, "out of memory");
  }
  return 0;
}

int status_code(proto::status s) {
  switch (s) {
    case proto::status::ok:
      return POOLSHIM_OK;
    case proto::status::not_found:
      return POOLSHIM_ENOENT;
    case proto::status::exists:
      return POOLSHIM_EEXIST;
    case proto::status::no_memory:
      return POOLSHIM_ENOMEM;
    case proto::status::quota:
      return POOLSHIM_EQUOTA;
    case proto::status::not_permitted:
      return POOLSHIM_EPERM;
    case proto::status::busy:
      return POOLSHIM_EQUOTA;
    case proto::status::unsupported:
      return POOLSHIM_EUNSUPPORTED;
    case proto::status::bad_argument:
    case proto::status::no_device:
      return POOLSHIM_EINVAL;
    default:
      return POOLSHIM_EIO;
  }
}

// One request, its reply and descriptor; the connection is dropped on an I/O failure.
int exchange(proto::request q, proto::reply* r, int* fd_out, const std::string& what) {
  connection& c = conn();
  std::lock_guard lock(c.mutex);
  if (const int e = ensure_connected(c); e != 0) return e;
  q.seq = ++c.seq;
  if (proto::exchange(c.sock, q, -1, r, fd_out) != proto::exchange_status::ok) {
    close(c.sock);
    c.sock = -1;
    return fail(POOLSHIM_EIO, what + ": no valid reply from poolshimd");
  }
  const auto s = static_cast<proto::status>(r->status);
  if (s != proto::status::ok) {
    if (fd_out != nullptr && *fd_out >= 0) close(*fd_out);
    return fail(status_code(s), what + ": " + proto::status_name(s));
  }
  return 0;
}

int put_name(const char* name, proto::request* q) {
  if (name == nullptr) return fail(POOLSHIM_EINVAL, "no name");
  const std::size_t n = strnlen(name, proto::k_name_size);
  std::memcpy(q->payload, name, n);
  if (const char* p = proto::buffer_name_problem(q->payload)) return fail(POOLSHIM_EINVAL, std::string("name: ") + p);
  return 0;
}

// Maps the memfd of a created or opened buffer (closes it either way).
int map_into(int fd, poolshim_buffer* b) {
  b->mapped = (b->bytes + 4095) & ~std::uint64_t{4095};
  void* p = mmap(nullptr, b->mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int err = errno;
  close(fd);
  if (p == MAP_FAILED) return fail(POOLSHIM_EIO, std::string("mmap: ") + std::strerror(err));
  b->data = p;
  return 0;
}

void end_reference(std::uint64_t ref) {
  proto::request q = proto::make_request(proto::op::buffer_close, 0);
  q.arg[0] = ref;
  proto::reply r{};
  (void)exchange(q, &r, nullptr, "close");
}

// ---- device buffers: the CUDA driver, loaded on first need (a host-only user never loads it) ----

struct cuda_driver {
  bool loaded = false;
  std::string failure;  // why it could not be loaded (then every device call fails with it)
  CUresult (*init)(unsigned);
  CUresult (*device_get_count)(int*);
  CUresult (*device_get)(CUdevice*, int);
  CUresult (*device_get_uuid)(CUuuid*, CUdevice);
  CUresult (*primary_retain)(CUcontext*, CUdevice);
  CUresult (*ctx_push)(CUcontext);
  CUresult (*ctx_pop)(CUcontext*);
  CUresult (*ipc_open_mem)(CUdeviceptr*, CUipcMemHandle, unsigned);
  CUresult (*ipc_close_mem)(CUdeviceptr);
  CUresult (*ipc_open_event)(CUevent*, CUipcEventHandle);
  CUresult (*event_destroy)(CUevent);
  CUresult (*event_record)(CUevent, CUstream);
  CUresult (*stream_wait_event)(CUstream, CUevent, unsigned);
  CUresult (*ctx_get_current)(CUcontext*);
  CUresult (*primary_get_state)(CUdevice, unsigned*, int*);
  CUresult (*host_register)(void*, size_t, unsigned);
  CUresult (*host_unregister)(void*);
  std::mutex contexts_mutex;    // guards contexts (several threads may open buffers at once)
  CUcontext contexts[64] = {};  // each device's primary context, retained once
};

template <class F>
bool cu_sym(void* lib, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(lib, name));
  return *out != nullptr;
}

// The driver, or an error code (the text set). Under the connection's lock.
int cuda(cuda_driver** out) {
  static cuda_driver* d = new cuda_driver();  // leaky, as the connection
  static std::mutex m;
  std::lock_guard lock(m);
  *out = d;
  if (d->loaded) return 0;
  if (!d->failure.empty()) return fail(POOLSHIM_EUNSUPPORTED, d->failure);
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    d->failure = std::string("device buffers need the CUDA driver: ") + dlerror();
  } else if (!cu_sym(lib, "cuInit", &d->init) || !cu_sym(lib, "cuDeviceGetCount", &d->device_get_count) ||
             !cu_sym(lib, "cuDeviceGet", &d->device_get) || !cu_sym(lib, "cuDeviceGetUuid_v2", &d->device_get_uuid) ||
             !cu_sym(lib, "cuDevicePrimaryCtxRetain", &d->primary_retain) ||
             !cu_sym(lib, "cuCtxPushCurrent_v2", &d->ctx_push) || !cu_sym(lib, "cuCtxPopCurrent_v2", &d->ctx_pop) ||
             !cu_sym(lib, "cuIpcOpenMemHandle_v2", &d->ipc_open_mem) ||
             !cu_sym(lib, "cuIpcCloseMemHandle", &d->ipc_close_mem) ||
             !cu_sym(lib, "cuIpcOpenEventHandle", &d->ipc_open_event) ||
             !cu_sym(lib, "cuEventDestroy_v2", &d->event_destroy) || !cu_sym(lib, "cuEventRecord", &d->event_record) ||
             !cu_sym(lib, "cuStreamWaitEvent", &d->stream_wait_event) ||
             !cu_sym(lib, "cuCtxGetCurrent", &d->ctx_get_current) ||
             !cu_sym(lib, "cuDevicePrimaryCtxGetState", &d->primary_get_state) ||
             !cu_sym(lib, "cuMemHostRegister_v2", &d->host_register) ||
             !cu_sym(lib, "cuMemHostUnregister", &d->host_unregister)) {
    d->failure = "the CUDA driver (libcuda.so.1) lacks an entry point device buffers need";
  } else if (const CUresult r = d->init(0); r != CUDA_SUCCESS) {
    d->failure = "cuInit failed (CUresult " + std::to_string(r) + ")";
  } else {
    d->loaded = true;
    return 0;
  }
  return fail(POOLSHIM_EUNSUPPORTED, d->failure);
}

std::string cu_text(const char* what, CUresult r) {
  return std::string(what) + " failed (CUresult " + std::to_string(r) + ")";
}

// This process's ordinal of the device with this UUID, or -1.
int local_device(cuda_driver& d, const std::uint8_t (&uuid)[proto::k_uuid_size]) {
  int n = 0;
  if (d.device_get_count(&n) != CUDA_SUCCESS) return -1;
  for (int i = 0; i < n; ++i) {
    CUdevice dev = 0;
    CUuuid u{};
    if (d.device_get(&dev, i) == CUDA_SUCCESS && d.device_get_uuid(&u, dev) == CUDA_SUCCESS &&
        std::memcmp(u.bytes, uuid, sizeof uuid) == 0)
      return i;
  }
  return -1;
}

// The device's primary context (what the runtime API uses) pushed current for one call.
class device_scope {
 public:
  device_scope(cuda_driver& d, int ordinal) : d_(d) {
    if (ordinal < 0 || ordinal >= 64) {
      r_ = CUDA_ERROR_INVALID_DEVICE;
      return;
    }
    CUdevice dev = 0;
    if ((r_ = d.device_get(&dev, ordinal)) != CUDA_SUCCESS) return;
    CUcontext ctx = nullptr;
    {
      std::lock_guard lock(d.contexts_mutex);
      if (d.contexts[ordinal] == nullptr && (r_ = d.primary_retain(&d.contexts[ordinal], dev)) != CUDA_SUCCESS) return;
      ctx = d.contexts[ordinal];
    }
    pushed_ = (r_ = d.ctx_push(ctx)) == CUDA_SUCCESS;
  }
  ~device_scope() {
    CUcontext c = nullptr;
    if (pushed_) (void)d_.ctx_pop(&c);
  }
  CUresult result() const { return r_; }

 private:
  cuda_driver& d_;
  CUresult r_ = CUDA_SUCCESS;
  bool pushed_ = false;
};

// A context to call in for a host buffer's registration: the thread's current one (nothing pushed,
// -1), else the first device whose primary context is active (its ordinal, to push), else none
// (-2: this process has not started CUDA on any device).
int registration_context(cuda_driver& d) {
  CUcontext cur = nullptr;
  if (d.ctx_get_current(&cur) == CUDA_SUCCESS && cur != nullptr) return -1;
  int n = 0;
  if (d.device_get_count(&n) != CUDA_SUCCESS) return -2;
  for (int i = 0; i < n && i < 64; ++i) {
    CUdevice dev = 0;
    unsigned flags = 0;
    int active = 0;
    if (d.device_get(&dev, i) == CUDA_SUCCESS && d.primary_get_state(dev, &flags, &active) == CUDA_SUCCESS &&
        active != 0)
      return i;
  }
  return -2;
}

// A host buffer mapped into a process that uses CUDA (the driver loaded and a context started) is
// registered there once: page-locked, device-mapped, portable to every context, so copies to and
// from it run at pinned speed. A process without CUDA is left alone (the driver is not loaded for
// it). A failed registration leaves an ordinary mapping (the bytes are the same).
void register_host(poolshim_buffer* b) {
  void* loaded = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  if (loaded == nullptr) return;
  dlclose(loaded);
  cuda_driver* d = nullptr;
  const std::string keep = t_error;
  if (cuda(&d) != 0) {
    t_error = keep;
    return;
  }
  const int ctx = registration_context(*d);
  if (ctx == -2) return;
  std::unique_ptr<device_scope> scope;
  if (ctx >= 0) scope = std::make_unique<device_scope>(*d, ctx);
  if (scope && scope->result() != CUDA_SUCCESS) return;
  b->registered =
      d->host_register(b->data, b->mapped, CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP) == CUDA_SUCCESS;
}

void unregister_host(poolshim_buffer* b) {
  cuda_driver* d = nullptr;
  if (!b->registered || cuda(&d) != 0) return;
  const int ctx = registration_context(*d);
  std::unique_ptr<device_scope> scope;
  if (ctx >= 0) scope = std::make_unique<device_scope>(*d, ctx);
  (void)d->host_unregister(b->data);
  b->registered = false;
}

// A created or opened device buffer: its handles from the daemon, opened in this process on the
// device's primary context. *err and the text on failure (the caller ends the reference).
int open_device_handles(poolshim_buffer* b, int ordinal) {
  cuda_driver* d = nullptr;
  if (const int e = cuda(&d); e != 0) return e;
  proto::request q = proto::make_request(proto::op::buffer_handles, 0);
  q.arg[0] = b->ref;
  proto::reply r{};
  if (const int e = exchange(q, &r, nullptr, std::string("handles of '") + b->info.name + "'"); e != 0) return e;
  CUipcMemHandle mh{};
  CUipcEventHandle eh{};
  std::memcpy(&mh, r.payload, sizeof mh);
  std::memcpy(&eh, r.payload + proto::k_ipc_handle_size, sizeof eh);
  device_scope scope(*d, ordinal);
  if (scope.result() != CUDA_SUCCESS) return fail(POOLSHIM_EIO, cu_text("cuDevicePrimaryCtxRetain", scope.result()));
  CUdeviceptr p = 0;
  if (const CUresult e = d->ipc_open_mem(&p, mh, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS); e != CUDA_SUCCESS)
    return fail(POOLSHIM_EIO, cu_text("cuIpcOpenMemHandle", e));
  CUevent ev = nullptr;
  if (const CUresult e = d->ipc_open_event(&ev, eh); e != CUDA_SUCCESS) {
    (void)d->ipc_close_mem(p);
    return fail(POOLSHIM_EIO, cu_text("cuIpcOpenEventHandle", e));
  }
  b->data = reinterpret_cast<void*>(static_cast<std::uintptr_t>(p));
  b->event = ev;
  return 0;
}

void close_device_handles(poolshim_buffer* b) {
  cuda_driver* d = nullptr;
  if (b->data == nullptr || cuda(&d) != 0) return;
  device_scope scope(*d, b->info.device);
  // Not in another context than the one they were opened in (then they stay until the process ends).
  if (scope.result() == CUDA_SUCCESS) {
    if (b->event != nullptr) (void)d->event_destroy(static_cast<CUevent>(b->event));
    (void)d->ipc_close_mem(static_cast<CUdeviceptr>(reinterpret_cast<std::uintptr_t>(b->data)));
  }
  b->data = nullptr;
  b->event = nullptr;
}

// Sends a create or an open and maps the buffer that comes back: a new poolshim_buffer with its
// reference and size (its info is the caller's to fill), or null with *err (the text set).
poolshim_buffer* acquire(const proto::request& q, const std::string& what, proto::reply* r, int* err) {
  auto* b = new (std::nothrow) poolshim_buffer();
  if (b == nullptr) {
    *err = fail(POOLSHIM_EIO, "out of memory");
    return nullptr;
  }
  int fd = -1;
  if ((*err = exchange(q, r, &fd, what)) != 0) {
    delete b;
    return nullptr;
  }
  b->ref = r->val[0];
  if (q.op == static_cast<std::uint16_t>(proto::op::buffer_create))
    b->id = r->val[3];
  else
    std::memcpy(&b->id, r->payload + proto::k_open_reply_id, sizeof b->id);
  b->bytes = q.op == static_cast<std::uint16_t>(proto::op::buffer_create) ? q.arg[0] : r->val[1];
  const bool create = q.op == static_cast<std::uint16_t>(proto::op::buffer_create);
  const std::uint64_t kind = (create ? q.arg[1] : r->val[2]) & proto::k_buffer_kind_mask;
  if (kind == static_cast<std::uint64_t>(proto::buffer_kind::device)) {
    if (fd >= 0) close(fd);
    return b;  // its handles are opened by the caller
  }
  if (fd < 0) {
    *err = fail(POOLSHIM_EIO, what + ": the daemon sent no memory descriptor");
    end_reference(b->ref);
    delete b;
    return nullptr;
  }
  if ((*err = map_into(fd, b)) != 0) {
    end_reference(b->ref);
    delete b;
    return nullptr;
  }
  register_host(b);
  return b;
}

// Records the buffer's event on `stream` (the writer's side) or makes `stream` wait for its newest
// record (the reader's side), in the device's primary context.
int record_or_wait(poolshim_buffer* b, void* stream, bool record) {
  const char* what = record ? "record" : "wait";
  if (b == nullptr) return fail(POOLSHIM_EINVAL, "no buffer");
  if (b->info.kind != POOLSHIM_BUFFER_DEVICE || b->event == nullptr)
    return fail(POOLSHIM_EINVAL, std::string(what) + " '" + b->info.name +
                                     "': a host buffer has no event (its reader sees what its writer stored)");
  cuda_driver* d = nullptr;
  if (const int e = cuda(&d); e != 0) return e;
  device_scope scope(*d, b->info.device);
  if (scope.result() != CUDA_SUCCESS) return fail(POOLSHIM_EIO, cu_text("cuCtxPushCurrent", scope.result()));
  const auto ev = static_cast<CUevent>(b->event);
  const auto s = static_cast<CUstream>(stream);
  const CUresult r = record ? d->event_record(ev, s) : d->stream_wait_event(s, ev, 0);
  if (r != CUDA_SUCCESS)
    return fail(
        r == CUDA_ERROR_INVALID_HANDLE ? POOLSHIM_EINVAL : POOLSHIM_EIO,
        std::string(what) + " '" + b->info.name + "': " + cu_text(record ? "cuEventRecord" : "cuStreamWaitEvent", r));
  return 0;
}

// An open by name, or by the daemon's id of the buffer of that name (id != 0: it may be unlinked).
int open_buffer_as(const char* name, unsigned flags, int device, std::uint64_t id, poolshim_buffer** out);

}  // namespace

extern "C" {

int poolshim_buffer_create(const char* name, const char* dtype, int ndim, const std::uint64_t* shape, int kind,
                           int device, unsigned flags, poolshim_buffer** out) {
  if (out == nullptr) return fail(POOLSHIM_EINVAL, "no place for the buffer (out is null)");
  *out = nullptr;
  proto::request q = proto::make_request(proto::op::buffer_create, 0);
  if (const int e = put_name(name, &q); e != 0) return e;
  const std::uint32_t code = proto::dtype_code(dtype);
  if (code == 0) return fail(POOLSHIM_EINVAL, std::string("unknown element type '") + (dtype ? dtype : "(null)") + "'");
  if (ndim < 0 || ndim > POOLSHIM_BUFFER_MAX_DIMS || (ndim > 0 && shape == nullptr))
    return fail(POOLSHIM_EINVAL, "ndim must be 0 to 8, with a shape of that many dimensions");
  if ((flags & ~POOLSHIM_BUFFER_SHARED) != 0) return fail(POOLSHIM_EINVAL, "unknown flags");
  std::uint64_t elements = 1;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] != 0 && elements > (std::uint64_t{1} << 40) / shape[d])
      return fail(POOLSHIM_EINVAL, "the shape's product overflows");
    elements *= shape[d];
    std::memcpy(q.payload + proto::k_name_size + d * sizeof(std::uint64_t), &shape[d], sizeof(std::uint64_t));
  }
  q.arg[0] = elements * proto::dtype_size(code);
  q.arg[1] = static_cast<std::uint64_t>(kind < 0 ? 0 : kind) | flags;
  q.arg[2] = code | (static_cast<std::uint64_t>(ndim) << 16);
  if (kind == POOLSHIM_BUFFER_HOST && device >= 0)
    return fail(POOLSHIM_EINVAL, "a host buffer names no device (pass -1)");
  if (kind == POOLSHIM_BUFFER_DEVICE) {
    if (device < 0) return fail(POOLSHIM_EINVAL, "a device buffer names its device (0, 1, ...)");
    cuda_driver* d = nullptr;
    if (const int e = cuda(&d); e != 0) return e;
    int n = 0;
    CUdevice dev = 0;
    CUuuid u{};
    if (d->device_get_count(&n) != CUDA_SUCCESS || device >= n || d->device_get(&dev, device) != CUDA_SUCCESS ||
        d->device_get_uuid(&u, dev) != CUDA_SUCCESS)
      return fail(POOLSHIM_EINVAL,
                  "device " + std::to_string(device) + " does not exist (this process sees " + std::to_string(n) + ")");
    std::memcpy(q.device_uuid, u.bytes, sizeof q.device_uuid);
  }
  if (const char* p = proto::buffer_create_problem(q)) return fail(POOLSHIM_EINVAL, p);
  proto::reply r{};
  int err = 0;
  poolshim_buffer* b = acquire(q, std::string("create '") + name + "'", &r, &err);
  if (b == nullptr) return err;
  if (kind == POOLSHIM_BUFFER_DEVICE) {
    std::snprintf(b->info.name, sizeof b->info.name, "%s", name);
    b->info.device = device;
    if (const int e = open_device_handles(b, device); e != 0) {
      // Nothing is left behind: the name goes with the reference (a retry can create it again).
      const std::string why = t_error;
      end_reference(b->ref);
      (void)poolshim_buffer_unlink(name, flags);
      delete b;
      return fail(e, std::string("create '") + name + "': " + why);
    }
  }
  poolshim_buffer_info& i = b->info;
  std::snprintf(i.name, sizeof i.name, "%s", name);
  std::snprintf(i.dtype, sizeof i.dtype, "%s", proto::dtype_name(code));
  i.ndim = ndim;
  for (int d = 0; d < ndim; ++d) i.shape[d] = shape[d];
  i.bytes = b->bytes;
  i.kind = kind;
  i.flags = flags;
  i.device = kind == POOLSHIM_BUFFER_DEVICE ? device : -1;
  i.creator = getpid();
  *out = b;
  return 0;
}

int poolshim_buffer_open(const char* name, unsigned flags, poolshim_buffer** out) {
  return poolshim_buffer_open_on(name, flags, -1, out);
}

int poolshim_buffer_open_on(const char* name, unsigned flags, int device, poolshim_buffer** out) {
  return open_buffer_as(name, flags, device, 0, out);
}

}  // extern "C"

namespace {

int open_buffer_as(const char* name, unsigned flags, int device, std::uint64_t id, poolshim_buffer** out) {
  if (out == nullptr) return fail(POOLSHIM_EINVAL, "no place for the buffer (out is null)");
  *out = nullptr;
  if ((flags & ~POOLSHIM_BUFFER_SHARED) != 0) return fail(POOLSHIM_EINVAL, "unknown flags");
  proto::request q = proto::make_request(proto::op::buffer_open, 0);
  if (const int e = put_name(name, &q); e != 0) return e;
  q.arg[0] = id;
  q.arg[1] = flags;
  proto::reply r{};
  int err = 0;
  poolshim_buffer* b = acquire(q, std::string("open '") + name + "'", &r, &err);
  if (b == nullptr) return err;
  poolshim_buffer_info& i = b->info;
  std::snprintf(i.name, sizeof i.name, "%s", name);
  const char* dn = proto::dtype_name(static_cast<std::uint32_t>(r.val[3] & 0xffff));
  std::snprintf(i.dtype, sizeof i.dtype, "%s", dn != nullptr ? dn : "u8");
  i.ndim = static_cast<int>((r.val[3] >> 16) & 0xffff);
  if (i.ndim > POOLSHIM_BUFFER_MAX_DIMS) i.ndim = 0;
  std::memcpy(i.shape, r.payload, sizeof(std::uint64_t) * static_cast<std::size_t>(i.ndim));
  i.bytes = b->bytes;
  i.kind = static_cast<int>(r.val[2] & proto::k_buffer_kind_mask);
  i.flags = static_cast<unsigned>(r.val[2] & proto::k_buffer_shared);
  i.device = -1;
  i.creator = static_cast<std::int64_t>(r.val[5]);
  int e = 0;
  if (i.kind != POOLSHIM_BUFFER_DEVICE) {
    if (device >= 0)
      e = fail(POOLSHIM_EINVAL,
               std::string("open '") + name + "': a host buffer, not on device " + std::to_string(device));
  } else {
    cuda_driver* d = nullptr;
    std::uint8_t uuid[proto::k_uuid_size];
    std::memcpy(uuid, r.payload + proto::k_name_size, sizeof uuid);
    if ((e = cuda(&d)) == 0) {
      i.device = local_device(*d, uuid);
      if (i.device < 0)
        e = fail(POOLSHIM_EINVAL, std::string("open '") + name +
                                      "': it lives on a device this process does not see (CUDA_VISIBLE_DEVICES?)");
      else if (device >= 0 && device != i.device)
        e = fail(POOLSHIM_EINVAL, std::string("open '") + name + "': it lives on device " + std::to_string(i.device) +
                                      ", not on device " + std::to_string(device));
      else
        e = open_device_handles(b, i.device);
    }
  }
  if (e != 0) {
    if (i.kind != POOLSHIM_BUFFER_DEVICE && b->data != nullptr) {  // mapped (and maybe registered) already
      unregister_host(b);
      munmap(b->data, b->mapped);
    }
    end_reference(b->ref);
    delete b;
    return e;
  }
  *out = b;
  return 0;
}

}  // namespace

extern "C" {

int poolshim_buffer_record(poolshim_buffer* b, void* stream) { return record_or_wait(b, stream, true); }

int poolshim_buffer_wait(poolshim_buffer* b, void* stream) { return record_or_wait(b, stream, false); }

void* poolshim_buffer_data(const poolshim_buffer* b) { return b != nullptr ? b->data : nullptr; }

std::uint64_t poolshim_buffer_bytes(const poolshim_buffer* b) { return b != nullptr ? b->bytes : 0; }

int poolshim_buffer_get_info(const poolshim_buffer* b, poolshim_buffer_info* out) {
  if (b == nullptr || out == nullptr) return fail(POOLSHIM_EINVAL, "no buffer, or no place for its information");
  *out = b->info;
  return 0;
}

int poolshim_buffer_close(poolshim_buffer* b) {
  if (b == nullptr) return fail(POOLSHIM_EINVAL, "no buffer");
  if (b->info.kind == POOLSHIM_BUFFER_DEVICE)
    close_device_handles(b);  // before the daemon may free it (the last reference)
  else if (b->data != nullptr) {
    unregister_host(b);
    munmap(b->data, b->mapped);
  }
  proto::request q = proto::make_request(proto::op::buffer_close, 0);
  q.arg[0] = b->ref;
  proto::reply r{};
  const int e = exchange(q, &r, nullptr, std::string("close '") + b->info.name + "'");
  delete b;
  return e;
}

int poolshim_buffer_unlink(const char* name, unsigned flags) {
  if ((flags & ~POOLSHIM_BUFFER_SHARED) != 0) return fail(POOLSHIM_EINVAL, "unknown flags");
  proto::request q = proto::make_request(proto::op::buffer_unlink, 0);
  if (const int e = put_name(name, &q); e != 0) return e;
  q.arg[1] = flags;
  proto::reply r{};
  return exchange(q, &r, nullptr, std::string("unlink '") + name + "'");
}

int poolshim_buffer_list(poolshim_buffer_entry* out, std::size_t cap, std::size_t* count) {
  if (count == nullptr || (cap > 0 && out == nullptr)) return fail(POOLSHIM_EINVAL, "no place for the list");
  *count = 0;
  for (std::uint64_t i = 0;; ++i) {
    proto::request q = proto::make_request(proto::op::buffer_list, 0);
    q.arg[0] = i;
    proto::reply r{};
    const int e = exchange(q, &r, nullptr, "list");
    if (e == POOLSHIM_ENOENT) return 0;  // past the last one
    if (e != 0) return e;
    if (*count < cap) {
      const proto::buffer_entry b = proto::decode_buffer_entry(r);
      poolshim_buffer_entry& x = out[*count];
      std::memset(&x, 0, sizeof x);
      std::memcpy(x.name, b.name, POOLSHIM_BUFFER_NAME_MAX);
      x.bytes = b.bytes;
      x.kind = static_cast<int>(b.kind_flags & proto::k_buffer_kind_mask);
      x.flags = static_cast<unsigned>(b.kind_flags & proto::k_buffer_shared);
      x.references = static_cast<std::uint32_t>(b.references);
      x.device = b.device;
      x.creator = static_cast<std::int64_t>(b.creator_pid);
      x.owner_uid = static_cast<std::uint32_t>(b.owner_uid);
      x.created_ns = b.created_ns;
    }
    ++*count;
  }
}

const char* poolshim_buffer_error(void) { return t_error.c_str(); }

// ---- channels (poolshim/channel.h) ----

}  // extern "C"

struct poolshim_channel {
  poolshim::channel::header* h = nullptr;
  poolshim::channel::shape shape{};  // checked at map time: the shared header's copy is not trusted
  unsigned char* data = nullptr;
  std::size_t mapped = 0;
  std::uint64_t ref = 0;
  int slot = -1;           // reader slot; -1: the writer
  std::uint64_t next = 0;  // a reader's position after the message it holds (0: none held)
  std::string name;
  unsigned flags = 0;  // its namespace (POOLSHIM_BUFFER_SHARED): a promoted message's buffer's too
  std::chrono::microseconds spin = poolshim::channel::k_spin;  // how long a wait spins before it sleeps
  // The writer: buffers sent by reference, each held (a reference without the memory: the
  // daemon's ref id) until every attached reader has passed its record (end), so that a sender's
  // close or unlink cannot take it from under its readers.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> outstanding;
  // The writer's buffers for messages larger than half the ring, kept mapped for the next message of
  // the same size once every reader has passed the one it carried (end: the position after its
  // record; 0 while it is being filled): a fresh buffer's pages cost far more than the copy.
  struct pooled {
    poolshim_buffer* b;
    std::uint64_t end;
    bool busy;
  };
  std::vector<pooled> pool;
  std::uint64_t pre_hold = 0;  // the hold a pooled buffer's reuse check made, for its send
  const poolshim_buffer* pre_hold_for = nullptr;
  // The writer's open reservation (poolshim_channel_reserve): in the ring, or a buffer made for it.
  bool reserved = false;
  poolshim::channel::reservation res;
  poolshim_buffer* res_buffer = nullptr;
  // A reader: the buffer of the message it holds (sent by reference), and that message's head.
  poolshim_buffer* held = nullptr;
  const void* head = nullptr;
  std::size_t head_bytes = 0;
};

namespace {

int map_channel(int fd, poolshim_channel* c) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_size <= 0) {
    close(fd);
    return fail(POOLSHIM_EIO, "the channel's memfd has no size");
  }
  // Its page tables filled now: reading a record never faults here (a 1 MiB record spans 256 pages).
  // The first write to each page still costs; the writer's create pays that once (below).
  void* p =
      mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return fail(POOLSHIM_EIO, std::string("mmap: ") + std::strerror(errno));
  c->h = static_cast<poolshim::channel::header*>(p);
  c->mapped = static_cast<std::size_t>(st.st_size);
  if (!poolshim::channel::valid(c->h, c->mapped)) {
    munmap(p, c->mapped);
    return fail(POOLSHIM_EIO, "the channel's memory is not a channel of this version");
  }
  c->shape = poolshim::channel::shape_of(c->h);
  c->data = static_cast<unsigned char*>(p) + poolshim::channel::data_offset_for();
  return 0;
}

std::chrono::steady_clock::time_point deadline(int timeout_ms) {
  return timeout_ms < 0 ? std::chrono::steady_clock::time_point::max()
                        : std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
}

poolshim_channel* channel_request(const proto::request& q, const std::string& what, int* err) {
  auto* c = new (std::nothrow) poolshim_channel();
  if (c == nullptr) {
    *err = fail(POOLSHIM_EIO, "out of memory");
    return nullptr;
  }
  proto::reply r{};
  int fd = -1;
  if ((*err = exchange(q, &r, &fd, what)) != 0) {
    delete c;
    return nullptr;
  }
  c->ref = r.val[0];
  if (fd < 0) {
    *err = fail(POOLSHIM_EIO, what + ": the daemon sent no memfd");
  } else {
    *err = map_channel(fd, c);
  }
  if (*err != 0) {
    proto::request close_q = proto::make_request(proto::op::channel_close, 0);
    close_q.arg[0] = c->ref;
    proto::reply ignored{};
    (void)exchange(close_q, &ignored, nullptr, "close");
    delete c;
    return nullptr;
  }
  if (q.op == static_cast<std::uint16_t>(proto::op::channel_open)) c->slot = static_cast<int>(r.val[1]);
  return c;
}

}  // namespace

extern "C" {

int poolshim_channel_create(const char* name, std::uint64_t capacity, int max_readers, unsigned flags,
                            poolshim_channel** out) {
  if (out == nullptr) return fail(POOLSHIM_EINVAL, "no place for the channel (out is null)");
  *out = nullptr;
  if ((flags & ~POOLSHIM_BUFFER_SHARED) != 0) return fail(POOLSHIM_EINVAL, "unknown flags");
  if (!poolshim::channel::valid_capacity(capacity))
    return fail(POOLSHIM_EINVAL, "the capacity must be a power of two from 4 KiB to 4 GiB");
  if (max_readers < 1 || max_readers > static_cast<int>(poolshim::channel::k_max_readers))
    return fail(POOLSHIM_EINVAL, "max_readers must be 1 to 64");
  proto::request q = proto::make_request(proto::op::channel_create, 0);
  if (const int e = put_name(name, &q); e != 0) return e;
  q.arg[0] = capacity;
  q.arg[1] = static_cast<std::uint64_t>(max_readers) | flags;
  int err = 0;
  poolshim_channel* c = channel_request(q, std::string("create channel '") + name + "'", &err);
  if (c == nullptr) return err;
  // The ring's pages written once now, while they are all zero: the first write to a fresh page
  // costs microseconds (a fault; in a VM, often the host's too), which the messages would pay
  // otherwise: measured here, 5 us for each 4 KiB page the first time round the ring, even after
  // MAP_POPULATE or MADV_POPULATE_WRITE (which map the pages without touching them).
  auto* zero = static_cast<volatile unsigned char*>(c->data);
  for (std::uint64_t off = 0; off < c->shape.capacity; off += 4096) zero[off] = 0;
  c->name = name;
  c->flags = flags;
  *out = c;
  return 0;
}

int poolshim_channel_open(const char* name, unsigned flags, poolshim_channel** out) {
  if (out == nullptr) return fail(POOLSHIM_EINVAL, "no place for the channel (out is null)");
  *out = nullptr;
  if ((flags & ~POOLSHIM_BUFFER_SHARED) != 0) return fail(POOLSHIM_EINVAL, "unknown flags");
  proto::request q = proto::make_request(proto::op::channel_open, 0);
  if (const int e = put_name(name, &q); e != 0) return e;
  q.arg[1] = flags;
  int err = 0;
  poolshim_channel* c = channel_request(q, std::string("open channel '") + name + "'", &err);
  if (c == nullptr) return err;
  c->flags = flags;
  if (c->slot < 0 || c->slot >= static_cast<int>(c->shape.max_readers)) {
    (void)poolshim_channel_close(c);
    return fail(POOLSHIM_EIO, "the daemon gave a reader slot out of range");
  }
  c->name = name;
  *out = c;
  return 0;
}

int poolshim_channel_send(poolshim_channel* c, const void* data, std::size_t bytes, int timeout_ms) {
  const void* parts[1] = {data};
  const std::size_t sizes[1] = {bytes};
  if (data == nullptr && bytes != 0) return fail(POOLSHIM_EINVAL, "no data");
  return poolshim_channel_sendv(c, parts, sizes, 1, timeout_ms);
}

// A send's result as the API's code, the text set (0: sent). too_large: what was too large.
int send_outcome(const poolshim_channel* c, poolshim::channel::result r, const std::string& too_large) {
  namespace ch = poolshim::channel;
  switch (r) {
    case ch::result::ok:
      return 0;
    case ch::result::no_reader:
      return fail(POOLSHIM_ENOREADER, "send on '" + c->name + "': no reader is attached (nothing was sent)");
    case ch::result::too_large:
      return fail(POOLSHIM_EINVAL, "send on '" + c->name + "': " + too_large);
    case ch::result::timeout:
      return fail(POOLSHIM_ETIMEDOUT, "send on '" + c->name + "': no room in time (a reader is behind)");
    default:
      return fail(POOLSHIM_EIO, "send on '" + c->name + "'");
  }
}

// A second reference to a buffer, without its memory (no mapping, no device handles): the
// writer's hold on what it sent by reference, counted as the channel's held bytes. 0 with *ref, or
// the code with the text set.
int hold_reference(const poolshim_channel* c, const poolshim_buffer* b, std::uint64_t* ref,
                   std::uint64_t* refs = nullptr) {
  proto::request q = proto::make_request(proto::op::buffer_open, 0);
  if (const int e = put_name(b->info.name, &q); e != 0) return e;
  q.arg[0] = b->id;
  q.arg[1] = b->info.flags;
  q.arg[2] = proto::k_open_reference_only;
  q.arg[3] = c->ref;
  proto::reply r{};
  if (const int e = exchange(q, &r, nullptr, std::string("hold '") + b->info.name + "'"); e != 0) return e;
  *ref = r.val[0];
  if (refs != nullptr) std::memcpy(refs, r.payload + proto::k_open_reply_refs, sizeof *refs);
  return 0;
}

constexpr std::size_t k_pooled_buffers = 4;  // a writer's large-message buffers kept for reuse

void reclaim(poolshim_channel* c);

// The daemon's region, in bytes (what no named buffer can exceed); 0 when it does not say.
std::uint64_t region_bytes() {
  proto::request q = proto::make_request(proto::op::stats, 0);
  proto::reply r{};
  const std::string keep = t_error;
  const bool ok = exchange(q, &r, nullptr, "stats") == 0;
  t_error = keep;
  return ok ? proto::decode_status(r).region_bytes : 0;
}

// The writer lets go of idle pooled buffers (not being filled): the oldest one, or all of them.
// Those still in flight stay alive through their holds until every reader has passed them. True if
// any went.
bool drop_pooled(poolshim_channel* c, bool all) {
  bool any = false;
  for (auto it = c->pool.begin(); it != c->pool.end();) {
    if (it->busy) {
      ++it;
      continue;
    }
    (void)poolshim_buffer_close(it->b);
    it = c->pool.erase(it);
    any = true;
    if (!all) break;
  }
  return any;
}

// A message larger than half the ring: a host buffer of exactly its size: one of the writer's pool
// that every reader has passed, or one made for it, unlinked at once (readers open it by the
// daemon's id). Null with the text set when there is no reader (no buffer made for nothing) or no
// memory.
poolshim_buffer* promoted_buffer(poolshim_channel* c, std::size_t bytes, int timeout_ms, int* err) {
  std::uint64_t low = 0;
  if (!poolshim::channel::lowest_tail(c->h, c->shape.max_readers, &low)) {
    *err = send_outcome(c, poolshim::channel::result::no_reader, "");
    return nullptr;
  }
  // A pooled buffer every reader has passed is reused only if nobody else holds it any more (a
  // reader that took it keeps its bytes): the hold its send needs tells (the writer's reference and
  // this hold: 2).
  for (auto it = c->pool.begin(); it != c->pool.end(); ++it) {
    if (it->busy || it->b->bytes != bytes || it->end > low) continue;
    std::uint64_t hold = 0, refs = 0;
    if (hold_reference(c, it->b, &hold, &refs) != 0) continue;
    if (refs == 2) {
      it->busy = true;
      c->pre_hold = hold;
      c->pre_hold_for = it->b;
      return it->b;
    }
    end_reference(hold);
    (void)poolshim_buffer_close(it->b);  // a reader's reference keeps it for that reader
    c->pool.erase(it);
    break;
  }
  // One counter for the process: two channels' buffers never meet under one name.
  static std::atomic<std::uint64_t> made{0};
  const std::string name = "poolshim.ch." + std::to_string(getpid()) + "." + std::to_string(++made);
  const std::uint64_t shape[1] = {bytes};
  poolshim_buffer* b = nullptr;
  int e = poolshim_buffer_create(name.c_str(), "u8", 1, shape, POOLSHIM_BUFFER_HOST, -1, c->flags, &b);
  if (e == POOLSHIM_ENOMEM) {
    // Back-pressure from the region: wait (up to the timeout) for memory to come back, as readers
    // pass what was sent before; the pool's idle buffers go first. A message larger than the whole
    // region never fits: refused at once.
    const auto until = deadline(timeout_ms);
    const bool could_fit = bytes <= region_bytes();
    for (int round = 0; e == POOLSHIM_ENOMEM && could_fit; ++round) {
      reclaim(c);
      drop_pooled(c, /*all=*/true);
      e = poolshim_buffer_create(name.c_str(), "u8", 1, shape, POOLSHIM_BUFFER_HOST, -1, c->flags, &b);
      if (e != POOLSHIM_ENOMEM) break;
      if (std::chrono::steady_clock::now() >= until) {
        *err = fail(POOLSHIM_ETIMEDOUT, "send on '" + c->name + "': a message of " + std::to_string(bytes) +
                                            " bytes: no room in the daemon's region in time (readers are behind)");
        return nullptr;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(round < 10 ? 1 : 10));
    }
  }
  if (e != 0) {
    const std::string why = t_error;
    *err = fail(e, "send on '" + c->name + "': a message of " + std::to_string(bytes) + " bytes: " + why);
    return nullptr;
  }
  (void)poolshim_buffer_unlink(name.c_str(), c->flags);
  if (c->pool.size() >= k_pooled_buffers) drop_pooled(c, /*all=*/false);  // the oldest idle one makes room
  if (c->pool.size() < k_pooled_buffers) c->pool.push_back({b, 0, true});
  return b;
}

// A promoted message's buffer is done with (sent, or its reservation cancelled): kept in the pool
// until every reader has passed `end` (0: now), or closed (the writer's hold keeps a sent one).
void put_back(poolshim_channel* c, poolshim_buffer* b, std::uint64_t end) {
  if (c->pre_hold_for == b) {  // unsent: its reuse check's hold ends
    end_reference(std::exchange(c->pre_hold, 0));
    c->pre_hold_for = nullptr;
  }
  for (poolshim_channel::pooled& p : c->pool)
    if (p.b == b) {
      p.busy = false;
      p.end = end;
      return;
    }
  const std::string why = t_error;
  (void)poolshim_buffer_close(b);
  t_error = why;
}

// Sends a promoted message's buffer by reference, then puts it back.
int send_and_put_back(poolshim_channel* c, poolshim_buffer* b, int timeout_ms) {
  const int rc = poolshim_channel_send_buffer(c, b, nullptr, 0, timeout_ms);
  put_back(c, b, rc == 0 ? c->outstanding.back().first : 0);  // a send leaves its hold last
  return rc;
}

int send_promoted(poolshim_channel* c, const void* const* parts, const std::size_t* sizes, std::size_t n,
                  std::size_t bytes, int timeout_ms) {
  int err = 0;
  poolshim_buffer* b = promoted_buffer(c, bytes, timeout_ms, &err);
  if (b == nullptr) return err;
  auto* out = static_cast<unsigned char*>(b->data);
  for (std::size_t i = 0; i < n; ++i) {
    if (sizes[i] != 0) std::memcpy(out, parts[i], sizes[i]);
    out += sizes[i];
  }
  return send_and_put_back(c, b, timeout_ms);
}

// The writer lets go of the buffers every attached reader has passed.
void reclaim(poolshim_channel* c) {
  if (c->outstanding.empty()) return;
  std::uint64_t low = 0;
  const bool any = poolshim::channel::lowest_tail(c->h, c->shape.max_readers, &low);
  std::erase_if(c->outstanding, [&](const std::pair<std::uint64_t, std::uint64_t>& o) {
    if (any && low < o.first) return false;
    end_reference(o.second);
    return true;
  });
}

int no_reservation(const poolshim_channel* c) {
  return c->reserved ? fail(POOLSHIM_EINVAL, "send on '" + c->name + "': a reservation is open (commit or cancel it)")
                     : 0;
}

int poolshim_channel_sendv(poolshim_channel* c, const void* const* parts, const std::size_t* sizes, std::size_t n,
                           int timeout_ms) {
  namespace ch = poolshim::channel;
  if (c == nullptr || c->slot >= 0) return fail(POOLSHIM_EINVAL, "not a channel's writer");
  if (const int e = no_reservation(c); e != 0) return e;
  reclaim(c);
  if (n > 0 && (parts == nullptr || sizes == nullptr)) return fail(POOLSHIM_EINVAL, "no pieces");
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (parts[i] == nullptr && sizes[i] != 0) return fail(POOLSHIM_EINVAL, "a piece with no data");
    if (sizes[i] > SIZE_MAX / 2 - bytes) return fail(POOLSHIM_EINVAL, "the pieces' sizes add up past any memory");
    bytes += sizes[i];
  }
  // A message larger than half the ring goes into a named buffer of exactly its size, made for it,
  // and the ring carries the reference: no size limit but the region's.
  if (!ch::fits_inline(c->shape, bytes)) return send_promoted(c, parts, sizes, n, bytes, timeout_ms);
  return send_outcome(
      c, ch::send(c->h, c->shape, c->data, parts, sizes, n, deadline(timeout_ms), ch::record_data, nullptr, c->spin),
      std::to_string(bytes) + " bytes is more than half the ring (" + std::to_string(c->shape.capacity) + ")");
}

int poolshim_channel_reserve(poolshim_channel* c, std::size_t bytes, void** where, int timeout_ms) {
  namespace ch = poolshim::channel;
  if (c == nullptr || c->slot >= 0) return fail(POOLSHIM_EINVAL, "not a channel's writer");
  if (where == nullptr) return fail(POOLSHIM_EINVAL, "no place for the address");
  *where = nullptr;
  if (const int e = no_reservation(c); e != 0) return e;
  reclaim(c);
  if (!ch::fits_inline(c->shape, bytes)) {
    int err = 0;
    c->res_buffer = promoted_buffer(c, bytes, timeout_ms, &err);
    if (c->res_buffer == nullptr) return err;
    *where = c->res_buffer->data;
  } else {
    if (const int e = send_outcome(
            c, ch::reserve(c->h, c->shape, c->data, bytes, deadline(timeout_ms), ch::record_data, &c->res, c->spin),
            "");
        e != 0)
      return e;
    *where = c->res.payload;
  }
  c->reserved = true;
  return 0;
}

int poolshim_channel_commit(poolshim_channel* c, int timeout_ms) {
  if (c == nullptr || c->slot >= 0) return fail(POOLSHIM_EINVAL, "not a channel's writer");
  if (!c->reserved) return fail(POOLSHIM_EINVAL, "commit on '" + c->name + "': nothing is reserved");
  if (c->res_buffer == nullptr) {
    c->reserved = false;
    poolshim::channel::publish(c->h, c->res);
    return 0;
  }
  // A buffer of its own: its reference goes into the ring. If that fails (no room in time, no
  // reader left), the reservation stays, filled: commit again, or cancel.
  poolshim_buffer* b = c->res_buffer;
  c->reserved = false;
  const int rc = poolshim_channel_send_buffer(c, b, nullptr, 0, timeout_ms);
  if (rc != 0) {
    c->reserved = true;
    return rc;
  }
  c->res_buffer = nullptr;
  put_back(c, b, c->outstanding.back().first);  // a send leaves its hold last
  return 0;
}

int poolshim_channel_cancel(poolshim_channel* c) {
  if (c == nullptr || c->slot >= 0) return fail(POOLSHIM_EINVAL, "not a channel's writer");
  if (!c->reserved) return fail(POOLSHIM_EINVAL, "cancel on '" + c->name + "': nothing is reserved");
  c->reserved = false;  // an unpublished record: the next reserve writes over it
  if (c->res_buffer != nullptr) put_back(c, std::exchange(c->res_buffer, nullptr), 0);
  return 0;
}

int poolshim_channel_set_spin(poolshim_channel* c, int microseconds) {
  if (c == nullptr) return fail(POOLSHIM_EINVAL, "no channel");
  if (microseconds < 0 || microseconds > 1000000) return fail(POOLSHIM_EINVAL, "spin: 0 to 1,000,000 microseconds");
  c->spin = std::chrono::microseconds(microseconds);
  return 0;
}

int poolshim_channel_send_buffer(poolshim_channel* c, poolshim_buffer* b, const void* head, std::size_t head_bytes,
                                 int timeout_ms) {
  namespace ch = poolshim::channel;
  if (c == nullptr || c->slot >= 0) return fail(POOLSHIM_EINVAL, "not a channel's writer");
  if (b == nullptr) return fail(POOLSHIM_EINVAL, "no buffer");
  if (head == nullptr && head_bytes != 0) return fail(POOLSHIM_EINVAL, "no head");
  if (b != c->res_buffer)
    if (const int e = no_reservation(c); e != 0) return e;
  // Held by the writer until every reader has passed the record (reclaim): a pooled buffer's reuse
  // check made the hold already.
  std::uint64_t keep = 0;
  if (c->pre_hold_for == b) {
    keep = std::exchange(c->pre_hold, 0);
    c->pre_hold_for = nullptr;
  }
  reclaim(c);
  std::uint64_t low = 0;
  if (!ch::lowest_tail(c->h, c->shape.max_readers, &low)) {  // no hold for nothing
    if (keep != 0) end_reference(keep);
    return send_outcome(c, ch::result::no_reader, "");
  }
  if (keep == 0)
    if (const int e = hold_reference(c, b, &keep); e != 0) return e;
  const ch::buffer_ref r{static_cast<std::uint32_t>(std::strlen(b->info.name)), b->info.flags, b->bytes, b->id};
  const void* parts[3] = {&r, b->info.name, head};
  const std::size_t sizes[3] = {sizeof r, r.name_bytes, head_bytes};
  std::uint64_t end = 0;
  const int rc = send_outcome(
      c, ch::send(c->h, c->shape, c->data, parts, sizes, 3, deadline(timeout_ms), ch::record_buffer, &end, c->spin),
      "the head is more than half the ring");
  if (rc == 0) {
    c->outstanding.emplace_back(end, keep);
    return 0;
  }
  const std::string why = t_error;
  end_reference(keep);
  t_error = why;
  return rc;
}

int poolshim_channel_recv(poolshim_channel* c, const void** data, std::size_t* bytes, int timeout_ms) {
  namespace ch = poolshim::channel;
  if (c == nullptr || c->slot < 0) return fail(POOLSHIM_EINVAL, "not a channel's reader");
  if (data == nullptr || bytes == nullptr) return fail(POOLSHIM_EINVAL, "no place for the message");
  if (c->next != 0) return fail(POOLSHIM_EINVAL, "release the message held before receiving the next");
  const unsigned char* p = nullptr;
  std::uint32_t n = 0;
  std::uint64_t next = 0;
  std::uint32_t kind = 0;
  switch (ch::receive(c->h, c->shape, c->data, static_cast<std::uint32_t>(c->slot), &p, &n, &next, deadline(timeout_ms),
                      &kind, c->spin)) {
    case ch::result::ok:
      c->head = nullptr;
      c->head_bytes = 0;
      if (kind == ch::record_buffer) {
        ch::buffer_ref r{};
        if (n >= sizeof r) std::memcpy(&r, p, sizeof r);
        if (n < sizeof r || r.name_bytes == 0 || r.name_bytes > POOLSHIM_BUFFER_NAME_MAX ||
            sizeof r + r.name_bytes > n) {
          ch::release(c->h, static_cast<std::uint32_t>(c->slot), next);  // skipped: it cannot be read
          return fail(POOLSHIM_EIO, "recv on '" + c->name + "': a malformed buffer reference (skipped)");
        }
        const std::string bname(reinterpret_cast<const char*>(p) + sizeof r, r.name_bytes);
        poolshim_buffer* b = nullptr;
        if (const int e = open_buffer_as(bname.c_str(), r.flags, -1, r.id, &b); e != 0) {
          const std::string why = t_error;
          ch::release(c->h, static_cast<std::uint32_t>(c->slot), next);
          return fail(POOLSHIM_EIO,
                      "recv on '" + c->name + "': the buffer '" + bname + "' sent by reference: " + why + " (skipped)");
        }
        c->held = b;
        c->head = p + sizeof r + r.name_bytes;
        c->head_bytes = n - sizeof r - r.name_bytes;
        *data = b->data;
        *bytes = b->bytes;
      } else {
        *data = p;
        *bytes = n;
      }
      c->next = next;
      return 0;
    case ch::result::timeout:
      return fail(POOLSHIM_ETIMEDOUT, "recv on '" + c->name + "': no message in time");
    case ch::result::closed:
      return fail(POOLSHIM_ECLOSED, "recv on '" + c->name + "': the writer closed the channel");
    case ch::result::writer_gone:
      return fail(POOLSHIM_ECLOSED, "recv on '" + c->name + "': the writer's process died");
    case ch::result::corrupt:
      return fail(POOLSHIM_EIO, "recv on '" + c->name + "': the ring is corrupt (a record past its end or its head)");
    default:
      return fail(POOLSHIM_EIO, "recv on '" + c->name + "'");
  }
}

int poolshim_channel_release(poolshim_channel* c) {
  if (c == nullptr || c->slot < 0) return fail(POOLSHIM_EINVAL, "not a channel's reader");
  if (c->next == 0) return fail(POOLSHIM_EINVAL, "no message is held");
  if (c->held != nullptr) {
    (void)poolshim_buffer_close(c->held);  // this reader's reference (the mapping goes)
    c->held = nullptr;
  }
  poolshim::channel::release(c->h, static_cast<std::uint32_t>(c->slot), c->next);
  c->next = 0;
  c->head = nullptr;
  c->head_bytes = 0;
  return 0;
}

int poolshim_channel_take_buffer(poolshim_channel* c, poolshim_buffer** out) {
  if (out == nullptr) return fail(POOLSHIM_EINVAL, "no place for the buffer (out is null)");
  *out = nullptr;
  if (c == nullptr || c->slot < 0 || c->next == 0) return fail(POOLSHIM_EINVAL, "no message is held");
  if (c->held == nullptr)
    return fail(POOLSHIM_ENOENT, c->head != nullptr ? "the message's buffer was taken already"
                                                    : "the message was sent inline (no buffer)");
  *out = std::exchange(c->held, nullptr);
  return 0;
}

int poolshim_channel_message_head(const poolshim_channel* c, const void** head, std::size_t* bytes) {
  if (c == nullptr || c->slot < 0 || c->next == 0) return fail(POOLSHIM_EINVAL, "no message is held");
  if (head == nullptr || bytes == nullptr) return fail(POOLSHIM_EINVAL, "no place for the head");
  *head = c->head;
  *bytes = c->head_bytes;
  return c->head != nullptr ? 0 : fail(POOLSHIM_ENOENT, "the message was sent inline (no head apart)");
}

int poolshim_channel_close(poolshim_channel* c) {
  if (c == nullptr) return fail(POOLSHIM_EINVAL, "no channel");
  if (c->held != nullptr) (void)poolshim_buffer_close(c->held);
  if (c->res_buffer != nullptr &&
      std::none_of(c->pool.begin(), c->pool.end(), [&](const auto& p) { return p.b == c->res_buffer; }))
    (void)poolshim_buffer_close(c->res_buffer);
  for (const auto& p : c->pool) (void)poolshim_buffer_close(p.b);
  if (c->pre_hold != 0) end_reference(c->pre_hold);
  // The writer's holds on what its readers have not passed yet stay with the channel (the daemon
  // keeps them until the ring goes), so that the readers drain those messages too.
  if (c->slot < 0) reclaim(c);
  proto::request q = proto::make_request(proto::op::channel_close, 0);
  q.arg[0] = c->ref;
  proto::reply r{};
  const int e = exchange(q, &r, nullptr, "close channel '" + c->name + "'");
  munmap(c->h, c->mapped);
  delete c;
  return e;
}

// DLPack's DLManagedTensor, as far as its deleter (dlpack.h, ABI of versions 0.x).
struct dl_managed_tensor {
  void* data;
  std::int32_t device_type, device_id;
  std::int32_t ndim;
  std::uint8_t code, bits;
  std::uint16_t lanes;
  std::int64_t* shape;
  std::int64_t* strides;
  std::uint64_t byte_offset;
  void* manager_ctx;
  void (*deleter)(dl_managed_tensor*);
};

void poolshim_buffer_dlpack_capsule_destructor(void* capsule) {
  // Python's own capsule functions, from the process (this library links no libpython).
  using is_valid_fn = int (*)(void*, const char*);
  using pointer_fn = void* (*)(void*, const char*);
  static const auto is_valid = reinterpret_cast<is_valid_fn>(dlsym(RTLD_DEFAULT, "PyCapsule_IsValid"));
  static const auto pointer = reinterpret_cast<pointer_fn>(dlsym(RTLD_DEFAULT, "PyCapsule_GetPointer"));
  if (is_valid == nullptr || pointer == nullptr || is_valid(capsule, "dltensor") == 0) return;  // consumed
  auto* m = static_cast<dl_managed_tensor*>(pointer(capsule, "dltensor"));
  if (m != nullptr && m->deleter != nullptr) m->deleter(m);
}

}  // extern "C"

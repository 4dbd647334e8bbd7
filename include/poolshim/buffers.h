/* Named shared buffers on poolshimd (issue #14): one name, one piece of memory, for every process
 * on the node. libpoolshim_buffers.so, linked or dlopen'ed; the shim need not be preloaded.
 *
 * A pinned host buffer is a memfd the daemon made and owns: create and open map it (shared,
 * read-write) into the caller; every process that opens the name sees the same bytes. A device
 * buffer is cuMemAlloc memory the daemon allocates (on the device the creator names) and holds,
 * with an interprocess event: create and open open its legacy CUDA IPC handles in the caller, in
 * the device's primary context (the one the runtime API uses), so poolshim_buffer_data is a device
 * pointer there. A writer calls poolshim_buffer_record after queueing its writes on a stream; a
 * reader calls poolshim_buffer_wait on its stream before queueing its reads: no device-wide
 * synchronisation. The CUDA driver is loaded only for device buffers.
 *
 * The memory lives as long as the name and its references, not as long as its creator: unlink
 * drops the name (the memory goes with the last reference); a reference ends with
 * poolshim_buffer_close or the moment its process dies. Names live in the caller's uid's
 * namespace, unless POOLSHIM_BUFFER_SHARED names the node-wide one. Devices are named by this
 * process's ordinals; the daemon knows them by UUID, so CUDA_VISIBLE_DEVICES may differ between
 * processes.
 *
 * The daemon: POOLSHIM_SOCKET, else /run/poolshim/poolshimd.sock, else $XDG_RUNTIME_DIR/poolshim/,
 * else /tmp/poolshim-UID/ — checked as the shim checks it (its directory and the peer's uid)
 * before a byte is sent. One connection per process, made on first use; thread-safe.
 *
 * Every call returns 0 or a negative POOLSHIM_E* code; poolshim_buffer_error() says what went
 * wrong in words (per thread, until the next call). */
#ifndef POOLSHIM_BUFFERS_H
#define POOLSHIM_BUFFERS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define POOLSHIM_BUFFERS_API __attribute__((visibility("default")))
#else
#define POOLSHIM_BUFFERS_API
#endif

#define POOLSHIM_BUFFER_NAME_MAX 63 /* bytes of a name: printable ASCII, no '/', no space */
#define POOLSHIM_BUFFER_MAX_DIMS 8

enum poolshim_buffer_kind { POOLSHIM_BUFFER_HOST = 1, POOLSHIM_BUFFER_DEVICE = 2 };
#define POOLSHIM_BUFFER_SHARED 0x100u /* flags: the node-wide namespace (any uid), not the caller's uid's */

enum poolshim_buffer_status {
  POOLSHIM_OK = 0,
  POOLSHIM_EINVAL = -1,       /* a bad name, element type, shape, kind or device, a device buffer on another device */
  POOLSHIM_ENOENT = -2,       /* no such name (open, unlink), no such buffer (close) */
  POOLSHIM_EEXIST = -3,       /* create: the name is taken */
  POOLSHIM_ENOMEM = -4,       /* the daemon's region is full */
  POOLSHIM_EQUOTA = -5,       /* the process's or the uid's quota */
  POOLSHIM_EPERM = -6,        /* unlink of another uid's name */
  POOLSHIM_ENODAEMON = -7,    /* no trusted poolshimd answers */
  POOLSHIM_EUNSUPPORTED = -8, /* a kind this daemon does not serve; device buffers without a CUDA driver */
  POOLSHIM_EIO = -9           /* the daemon failed, or mapping failed */
};

typedef struct poolshim_buffer poolshim_buffer;

struct poolshim_buffer_info {
  char name[POOLSHIM_BUFFER_NAME_MAX + 1];
  char dtype[8]; /* "u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "f16", "bf16", "f32", "f64", "bool" */
  int ndim;
  uint64_t shape[POOLSHIM_BUFFER_MAX_DIMS];
  uint64_t bytes;
  int kind;        /* poolshim_buffer_kind */
  unsigned flags;  /* POOLSHIM_BUFFER_SHARED */
  int device;      /* device buffers: this process's ordinal of its device; host: -1 */
  int64_t creator; /* the pid that created it */
};

/* A new name holding bytes = product(shape) * size(dtype); mapped into the caller (*out). */
POOLSHIM_BUFFERS_API int poolshim_buffer_create(const char* name, const char* dtype, int ndim, const uint64_t* shape,
                                                int kind, int device, unsigned flags, poolshim_buffer** out);
/* The buffer of an existing name, mapped into the caller (a device buffer: on its device). */
POOLSHIM_BUFFERS_API int poolshim_buffer_open(const char* name, unsigned flags, poolshim_buffer** out);
/* As poolshim_buffer_open, and the buffer must live on `device` (this process's ordinal; -1: any):
 * POOLSHIM_EINVAL, with the device it lives on in the text, when it does not. */
POOLSHIM_BUFFERS_API int poolshim_buffer_open_on(const char* name, unsigned flags, int device, poolshim_buffer** out);
/* Device buffers: record the buffer's interprocess event on `stream` (a cudaStream_t or CUstream;
 * NULL: the legacy default stream), after the writes that readers must see ... */
POOLSHIM_BUFFERS_API int poolshim_buffer_record(poolshim_buffer* b, void* stream);
/* ... and make `stream` wait for the newest record (by any process) before what is queued next. */
POOLSHIM_BUFFERS_API int poolshim_buffer_wait(poolshim_buffer* b, void* stream);
POOLSHIM_BUFFERS_API void* poolshim_buffer_data(
    const poolshim_buffer* b); /* its first byte here (device: a device pointer) */
POOLSHIM_BUFFERS_API uint64_t poolshim_buffer_bytes(const poolshim_buffer* b); /* its size */
POOLSHIM_BUFFERS_API int poolshim_buffer_get_info(const poolshim_buffer* b, struct poolshim_buffer_info* out);
/* Unmaps it and ends this reference (frees *b). */
POOLSHIM_BUFFERS_API int poolshim_buffer_close(poolshim_buffer* b);
/* The name goes now; the memory with its last reference. */
POOLSHIM_BUFFERS_API int poolshim_buffer_unlink(const char* name, unsigned flags);

struct poolshim_buffer_entry {
  char name[POOLSHIM_BUFFER_NAME_MAX + 1];
  uint64_t bytes;
  int kind;
  unsigned flags;
  uint32_t references;
  int device;      /* device buffers: the daemon's index of its device; host: -1 */
  int64_t creator; /* pid */
  uint32_t owner_uid;
  uint64_t created_ns; /* since the epoch */
};
/* The buffers the caller may see (its uid's and the shared ones; root: all): up to cap entries in
 * out[], the number there is in *count (it may be more than cap: call again with room). */
POOLSHIM_BUFFERS_API int poolshim_buffer_list(struct poolshim_buffer_entry* out, size_t cap, size_t* count);

/* What the last failed call of this thread went wrong with. */
POOLSHIM_BUFFERS_API const char* poolshim_buffer_error(void);

/* For the Python package: the destructor of its DLPack capsules (a PyCapsule_Destructor). A capsule
 * no consumer took (still named "dltensor") has its tensor's deleter called; one taken is left to
 * its consumer. Looks Python's capsule functions up in the process. */
POOLSHIM_BUFFERS_API void poolshim_buffer_dlpack_capsule_destructor(void* capsule);

#ifdef __cplusplus
}
#endif

#endif /* POOLSHIM_BUFFERS_H */

"""poolshim: named shared buffers on the node's poolshimd (issue #14), for Python programs.

    from poolshim import Buffer
    with Buffer.create("weights", (1024, 1024), "float32") as b:   # pinned host memory, by name
        a = b.numpy()          # a zero-copy numpy view; numpy.from_dlpack(b) works too
        a[:] = 1.0
    with Buffer.open("weights") as b:                              # in any process of the node
        print(b.shape, b.dtype, b.numpy().sum())
    Buffer.unlink("weights")   # the name goes now, the memory with its last reference

    with Buffer.create("kv", (4096, 128), "float16", device="cuda:0") as b:  # device memory, by name
        t = torch.as_tensor(b, device="cuda")   # __cuda_array_interface__ (v3); torch.from_dlpack(b),
        ...                                     # cupy.asarray(b) too: no copy
        b.record(stream)                        # after the writes others must see (a CUDA stream handle)
    with Buffer.open("kv") as b:
        b.wait(stream)                          # before the reads: ordered after the newest record

A buffer's memory is the daemon's: it lives as long as its name and its references, not as long as
its creator; a reference ends with close() (or the with block) and at once when its process dies.
Names are in the caller's uid's namespace unless shared=True. A device buffer is opened in the
device's primary context (the one PyTorch, CuPy and the runtime API use); "cuda:N" is this process's
ordinal (the daemon knows devices by UUID, so CUDA_VISIBLE_DEVICES may differ between processes).

Over libpoolshim_buffers.so (ctypes; POOLSHIM_BUFFERS_LIB names it, else it is looked for beside
this package and on the loader's path). numpy is needed only for numpy() and from_dlpack.
"""
import ctypes
import ctypes.util
import math
import os
import struct
import threading
import weakref

from .memory import ShimNotLoaded, preallocate, release_all, shim_loaded, trim  # the shim's pool controls

__all__ = ["Buffer", "Channel", "Message", "Reservation", "PoolshimError", "InvalidArgument", "NotFound", "NameExists", "OutOfMemory",
           "QuotaExceeded", "NotPermitted", "NoDaemon", "Unsupported", "TimedOut", "NoReader", "ChannelClosed",
           "list_buffers", "ShimNotLoaded", "trim", "release_all", "preallocate", "shim_loaded"]


class PoolshimError(Exception):
    """A call the daemon (or this library) refused; .code is the C API's POOLSHIM_E* value."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class InvalidArgument(PoolshimError, ValueError):
    pass


class NotFound(PoolshimError, KeyError):
    def __str__(self):  # KeyError would quote the message
        return self.args[0]


class NameExists(PoolshimError):
    pass


class OutOfMemory(PoolshimError, MemoryError):
    pass


class QuotaExceeded(PoolshimError):
    pass


class NotPermitted(PoolshimError, PermissionError):
    pass


class NoDaemon(PoolshimError, ConnectionError):
    pass


class Unsupported(PoolshimError, NotImplementedError):
    pass


class TimedOut(PoolshimError, TimeoutError):
    pass


class NoReader(PoolshimError):
    """A send with no reader attached: nothing was sent."""


class ChannelClosed(PoolshimError, EOFError):
    """The writer closed the channel (or its process died) and everything it sent was read."""


_ERRORS = {-1: InvalidArgument, -2: NotFound, -3: NameExists, -4: OutOfMemory, -5: QuotaExceeded, -6: NotPermitted,
           -7: NoDaemon, -8: Unsupported, -9: PoolshimError, -10: TimedOut, -11: NoReader, -12: ChannelClosed}

# numpy's names of the wire's element types; DLPack's (code, bits) for each.
_DTYPES = {"uint8": "u8", "int8": "i8", "uint16": "u16", "int16": "i16", "uint32": "u32", "int32": "i32",
           "uint64": "u64", "int64": "i64", "float16": "f16", "bfloat16": "bf16", "float32": "f32", "float64": "f64",
           "bool": "bool"}
_NUMPY = {v: k for k, v in _DTYPES.items()}
_DL = {"u8": (1, 8), "i8": (0, 8), "u16": (1, 16), "i16": (0, 16), "u32": (1, 32), "i32": (0, 32), "u64": (1, 64),
       "i64": (0, 64), "f16": (2, 16), "bf16": (4, 16), "f32": (2, 32), "f64": (2, 64), "bool": (6, 8)}
_KDLCPU = 1
_KDLCUDA = 2
# __cuda_array_interface__ type strings (little-endian; bool is b1, bfloat16 has none: raw 2 bytes).
_TYPESTR = {"u8": "|u1", "i8": "|i1", "u16": "<u2", "i16": "<i2", "u32": "<u4", "i32": "<i4", "u64": "<u8",
            "i64": "<i8", "f16": "<f2", "bf16": "<V2", "f32": "<f4", "f64": "<f8", "bool": "|b1"}

_SHARED = 0x100
_HOST = 1
_DEVICE = 2


class _Info(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 64), ("dtype", ctypes.c_char * 8), ("ndim", ctypes.c_int),
                ("shape", ctypes.c_uint64 * 8), ("bytes", ctypes.c_uint64), ("kind", ctypes.c_int),
                ("flags", ctypes.c_uint), ("device", ctypes.c_int), ("creator", ctypes.c_int64)]


class _Entry(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 64), ("bytes", ctypes.c_uint64), ("kind", ctypes.c_int),
                ("flags", ctypes.c_uint), ("references", ctypes.c_uint32), ("device", ctypes.c_int),
                ("creator", ctypes.c_int64),
                ("owner_uid", ctypes.c_uint32), ("created_ns", ctypes.c_uint64)]


_lib = None
_lib_lock = threading.Lock()


def _load():
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        here = os.path.dirname(os.path.abspath(__file__))
        candidates = [os.environ.get("POOLSHIM_BUFFERS_LIB"), os.path.join(here, "libpoolshim_buffers.so"),
                      os.path.join(here, "..", "..", "lib", "libpoolshim_buffers.so"),
                      # installed: PREFIX/lib/python3/dist-packages/poolshim -> PREFIX/lib
                      os.path.join(here, "..", "..", "..", "libpoolshim_buffers.so"), "libpoolshim_buffers.so",
                      ctypes.util.find_library("poolshim_buffers")]
        errors = []
        for c in candidates:
            if not c:
                continue
            try:
                lib = ctypes.CDLL(c)
                break
            except OSError as e:
                errors.append(f"{c}: {e}")
        else:
            raise NoDaemon(-7, "libpoolshim_buffers.so not found (set POOLSHIM_BUFFERS_LIB): " + "; ".join(errors))
        p = ctypes.POINTER
        lib.poolshim_buffer_create.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, p(ctypes.c_uint64),
                                               ctypes.c_int, ctypes.c_int, ctypes.c_uint, p(ctypes.c_void_p)]
        lib.poolshim_buffer_open.argtypes = [ctypes.c_char_p, ctypes.c_uint, p(ctypes.c_void_p)]
        lib.poolshim_buffer_open_on.argtypes = [ctypes.c_char_p, ctypes.c_uint, ctypes.c_int, p(ctypes.c_void_p)]
        lib.poolshim_buffer_record.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.poolshim_buffer_wait.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.poolshim_buffer_data.argtypes = [ctypes.c_void_p]
        lib.poolshim_buffer_data.restype = ctypes.c_void_p
        lib.poolshim_buffer_bytes.argtypes = [ctypes.c_void_p]
        lib.poolshim_buffer_bytes.restype = ctypes.c_uint64
        lib.poolshim_buffer_get_info.argtypes = [ctypes.c_void_p, p(_Info)]
        lib.poolshim_buffer_close.argtypes = [ctypes.c_void_p]
        lib.poolshim_buffer_unlink.argtypes = [ctypes.c_char_p, ctypes.c_uint]
        lib.poolshim_buffer_list.argtypes = [p(_Entry), ctypes.c_size_t, p(ctypes.c_size_t)]
        lib.poolshim_buffer_error.restype = ctypes.c_char_p
        lib.poolshim_channel_create.argtypes = [ctypes.c_char_p, ctypes.c_uint64, ctypes.c_int, ctypes.c_uint,
                                                p(ctypes.c_void_p)]
        lib.poolshim_channel_open.argtypes = [ctypes.c_char_p, ctypes.c_uint, p(ctypes.c_void_p)]
        lib.poolshim_channel_sendv.argtypes = [ctypes.c_void_p, p(ctypes.c_void_p), p(ctypes.c_size_t), ctypes.c_size_t,
                                               ctypes.c_int]
        lib.poolshim_channel_recv.argtypes = [ctypes.c_void_p, p(ctypes.c_void_p), p(ctypes.c_size_t), ctypes.c_int]
        lib.poolshim_channel_release.argtypes = [ctypes.c_void_p]
        lib.poolshim_channel_send_buffer.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                                     ctypes.c_int]
        lib.poolshim_channel_message_head.argtypes = [ctypes.c_void_p, p(ctypes.c_void_p), p(ctypes.c_size_t)]
        lib.poolshim_channel_take_buffer.argtypes = [ctypes.c_void_p, p(ctypes.c_void_p)]
        lib.poolshim_channel_reserve.argtypes = [ctypes.c_void_p, ctypes.c_size_t, p(ctypes.c_void_p), ctypes.c_int]
        lib.poolshim_channel_commit.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.poolshim_channel_cancel.argtypes = [ctypes.c_void_p]
        lib.poolshim_channel_set_spin.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.poolshim_channel_close.argtypes = [ctypes.c_void_p]
        _lib = lib
        return lib


def _check(rc):
    if rc != 0:
        lib = _load()
        raise _ERRORS.get(rc, PoolshimError)(rc, lib.poolshim_buffer_error().decode(errors="replace"))


def _name(name):
    if not isinstance(name, str):
        raise InvalidArgument(-1, f"a name is a str, not {type(name).__name__}")
    try:
        return name.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidArgument(-1, f"name {name!r}: only printable ASCII") from None


def _device(device):
    """-1 for "cpu", N for "cuda:N" (or an int N, or a torch.device-like object)."""
    if isinstance(device, int) and not isinstance(device, bool) and device >= 0:
        return device
    text = str(device)
    if text == "cpu":
        return -1
    if text.startswith("cuda:") and text[5:].isdigit():
        return int(text[5:])
    raise InvalidArgument(-1, f"device {device!r}: 'cpu' or 'cuda:N'")


def _stream_handle(stream):
    if stream is None:
        return None
    for attr in ("cuda_stream", "ptr", "handle"):  # torch.cuda.Stream, cupy.cuda.Stream, others
        value = getattr(stream, attr, None)
        if isinstance(value, int):
            return value or None
    if isinstance(stream, int):
        return stream or None
    raise InvalidArgument(-1, f"stream {stream!r}: an int handle or a stream object with .cuda_stream or .ptr")


def _dtype(dtype):
    text = getattr(dtype, "name", None) or str(dtype)  # numpy dtypes and types, or strings
    if text in _NUMPY:
        return text
    if text in _DTYPES:
        return _DTYPES[text]
    if isinstance(dtype, type) and dtype is bool:
        return "bool"
    raise InvalidArgument(-1, f"unknown dtype {dtype!r} (one of: {', '.join(sorted(_DTYPES))})")


# ---- DLPack: the structs of dlpack.h, a capsule named "dltensor" ----

class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32), ("dtype", _DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    pass


_DELETER = ctypes.CFUNCTYPE(None, ctypes.POINTER(_DLManagedTensor))
_DLManagedTensor._fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", _DELETER)]

_exports = {}  # address of a DLManagedTensor -> (the struct, its shape array, the buffer)
_exports_lock = threading.Lock()


def _dl_deleter(managed):
    with _exports_lock:
        entry = _exports.pop(ctypes.addressof(managed.contents), None)
    if entry is not None:
        entry[2]._release_view()


_dl_deleter_c = _DELETER(_dl_deleter)

_pyapi = ctypes.pythonapi
_pyapi.PyCapsule_New.restype = ctypes.py_object
_pyapi.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


class Buffer:
    """A reference to a named buffer, mapped into this process. Views (numpy(), from_dlpack, the
    array interface) keep it mapped: close() while a view lives ends the reference once the last
    view is gone."""

    def __init__(self, handle):
        self._lib = _load()
        self._h = ctypes.c_void_p(handle)
        info = _Info()
        _check(self._lib.poolshim_buffer_get_info(self._h, ctypes.byref(info)))
        self.name = info.name.decode()
        self.dtype = _NUMPY.get(info.dtype.decode(), "uint8")
        self.shape = tuple(int(info.shape[i]) for i in range(info.ndim))
        self.nbytes = int(info.bytes)
        self.kind = "host" if info.kind == _HOST else "device"
        self.device = "cpu" if info.kind == _HOST else f"cuda:{info.device}"
        self.shared = bool(info.flags & _SHARED)
        self.creator_pid = int(info.creator)
        self._views = 0
        self._closing = False
        self._lock = threading.Lock()

    @classmethod
    def create(cls, name, shape, dtype="uint8", device="cpu", shared=False):
        """A new named buffer of shape and dtype ("float32", numpy.float32, "f32"...)."""
        if isinstance(shape, int):
            shape = (shape,)
        shape = tuple(shape)
        if len(shape) > 8 or any((not isinstance(d, int)) or d < 0 for d in shape):
            raise InvalidArgument(-1, f"shape {shape!r}: at most 8 non-negative ints")
        dev = _device(device)
        kind = _HOST if dev < 0 else _DEVICE
        lib = _load()
        dims = (ctypes.c_uint64 * max(1, len(shape)))(*shape)
        h = ctypes.c_void_p()
        _check(lib.poolshim_buffer_create(_name(name), _dtype(dtype).encode(), len(shape), dims, kind, dev,
                                          _SHARED if shared else 0, ctypes.byref(h)))
        return cls(h.value)

    @classmethod
    def open(cls, name, shared=False, device=None):
        """The buffer of an existing name; with device ("cpu", "cuda:N"), it must live there."""
        lib = _load()
        h = ctypes.c_void_p()
        flags = _SHARED if shared else 0
        if device is None:
            _check(lib.poolshim_buffer_open(_name(name), flags, ctypes.byref(h)))
        elif _device(device) < 0:
            _check(lib.poolshim_buffer_open(_name(name), flags, ctypes.byref(h)))
            b = cls(h.value)
            if b.kind != "host":
                where = b.device
                b.close()
                raise InvalidArgument(-1, f"open {name!r}: it lives on {where}, not on cpu")
            return b
        else:
            _check(lib.poolshim_buffer_open_on(_name(name), flags, _device(device), ctypes.byref(h)))
        return cls(h.value)

    @staticmethod
    def unlink(name, shared=False):
        """The name goes now; the memory with its last reference."""
        _check(_load().poolshim_buffer_unlink(_name(name), _SHARED if shared else 0))

    # ---- its memory ----
    def _address(self):
        if self._h is None or self._closing:
            raise PoolshimError(-9, f"buffer {self.name!r} is closed")
        return self._lib.poolshim_buffer_data(self._h)

    def _hold_view(self):
        with self._lock:
            self._views += 1

    def _release_view(self):
        with self._lock:
            self._views -= 1
            last = self._views == 0 and self._closing
        if last:
            try:
                self._end()
            except PoolshimError:
                pass  # a view's end (a finalizer): the daemon may be gone; nothing is left to do

    def numpy(self):
        """A numpy array over the buffer's memory (no copy); it keeps the buffer mapped."""
        import numpy as np
        if self.kind != "host":
            raise Unsupported(-8, "a device buffer has no numpy view (use __cuda_array_interface__)")
        raw = (ctypes.c_ubyte * self.nbytes).from_address(self._address())
        self._hold_view()
        weakref.finalize(raw, self._release_view)
        raw._poolshim_buffer = self  # the view's base keeps the buffer object alive
        return np.frombuffer(raw, dtype=self.dtype).reshape(self.shape)

    @property
    def __array_interface__(self):
        if self.kind != "host":
            raise AttributeError("__array_interface__: a device buffer")
        return self.numpy().__array_interface__

    @property
    def __cuda_array_interface__(self):
        """Version 3, for device buffers (torch.as_tensor, cupy.asarray, numba): no copy. The
        consumer holds no reference: keep this Buffer open while it uses the memory."""
        if self.kind != "device":
            raise AttributeError("__cuda_array_interface__: a host buffer (use numpy() or __array_interface__)")
        return {"shape": self.shape, "typestr": _TYPESTR[_DTYPES[self.dtype]], "data": (self._address(), False),
                "strides": None, "version": 3, "stream": None}

    def __dlpack_device__(self):
        if self.kind == "host":
            return (_KDLCPU, 0)
        return (_KDLCUDA, int(self.device[5:]))

    def __dlpack__(self, stream=None):
        # stream: the consumer's; the memory has no pending work of this process on any stream
        # (order across processes with record()/wait()), so there is nothing to synchronise.
        code, bits = _DL[_DTYPES[self.dtype]]
        managed = _DLManagedTensor()
        shape = (ctypes.c_int64 * max(1, len(self.shape)))(*self.shape)
        t = managed.dl_tensor
        t.data = self._address()
        t.device = _DLDevice(*self.__dlpack_device__())
        t.ndim = len(self.shape)
        t.dtype = _DLDataType(code, bits, 1)
        t.shape = ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64))
        t.strides = None  # compact, row-major
        t.byte_offset = 0
        managed.deleter = _dl_deleter_c
        self._hold_view()
        with _exports_lock:
            _exports[ctypes.addressof(managed)] = (managed, shape, self)
        # The capsule's destructor is C (libpoolshim_buffers): a capsule nobody consumed has its
        # tensor deleted, so the view it holds ends.
        destructor = ctypes.cast(self._lib.poolshim_buffer_dlpack_capsule_destructor, ctypes.c_void_p)
        return _pyapi.PyCapsule_New(ctypes.addressof(managed), b"dltensor", destructor)

    # ---- ordering across processes (device buffers) ----
    def record(self, stream=0):
        """Records the buffer's interprocess event on stream (an int handle, or an object with
        .cuda_stream or .ptr as torch and cupy streams have; 0: the legacy default stream), after
        the writes readers must see."""
        _check(self._lib.poolshim_buffer_record(self._live(), _stream_handle(stream)))

    def wait(self, stream=0):
        """Makes stream wait for the newest record of the buffer's event, by any process."""
        _check(self._lib.poolshim_buffer_wait(self._live(), _stream_handle(stream)))

    def _live(self):
        if self._h is None or self._closing:
            raise PoolshimError(-9, f"buffer {self.name!r} is closed")
        return self._h

    # ---- its reference ----
    def close(self):
        """Ends this reference (once the last view of it is gone, if any is alive)."""
        with self._lock:
            if self._h is None or self._closing:
                return
            self._closing = True
            now = self._views == 0
        if now:
            self._end()

    def _end(self):
        h, self._h = self._h, None
        if h is not None:
            _check(self._lib.poolshim_buffer_close(h))

    @property
    def closed(self):
        return self._h is None or self._closing

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if getattr(self, "_h", None) is not None and self._views == 0:
                self._end()
        except Exception:
            pass

    def __repr__(self):
        state = "closed" if self.closed else "open"
        return (f"<poolshim.Buffer {self.name!r} {self.dtype}{list(self.shape)} {self.nbytes} bytes on {self.device}"
                f"{' shared' if self.shared else ''}, {state}>")


def list_buffers():
    """The buffers this uid may see: a list of dicts (name, bytes, kind, daemon_device (the daemon's
    index of a device buffer's device; -1 for host), shared, references, creator_pid, owner_uid,
    created_ns)."""
    lib = _load()
    count = ctypes.c_size_t()
    cap = 16
    while True:
        entries = (_Entry * cap)()
        _check(lib.poolshim_buffer_list(entries, cap, ctypes.byref(count)))
        if count.value <= cap:
            break
        cap = count.value + 16
    return [{"name": e.name.decode(), "bytes": e.bytes, "kind": "host" if e.kind == _HOST else "device",
             "daemon_device": e.device,
             "shared": bool(e.flags & _SHARED), "references": e.references, "creator_pid": e.creator,
             "owner_uid": e.owner_uid, "created_ns": e.created_ns} for e in entries[:count.value]]


# ---- channels (issue #15): a named ring, one writer, broadcast to every attached reader ----

_MSG_MAGIC = 0x4d435350  # "PSCM": a message this package framed (kind, dtype, shape), then the payload
_MSG_RAW, _MSG_ARRAY = 1, 2
_MSG_HEAD = struct.Struct("<IHHI4x8Q")  # magic, kind, ndim, dtype name length, shape; then the name (8 bytes)


def _DTYPES_TO_NUMPY_NAME(dtype):
    return (dtype if isinstance(dtype, str) else str(dtype)).encode()


def _ms(timeout):
    if timeout is None:
        return -1
    if timeout < 0:
        raise InvalidArgument(-1, f"timeout {timeout!r}: seconds, at least 0, or None (no limit)")
    return int(timeout * 1000)


def _framing(kind, ndim, shape, dtype_name):
    dims = list(shape) + [0] * (8 - len(shape))
    return _MSG_HEAD.pack(_MSG_MAGIC, kind, ndim, len(dtype_name), *dims) + dtype_name.ljust(8, b"\0")


_FRAMING_BYTES = _MSG_HEAD.size + 8
_NAME_OF_DTYPE = {}  # numpy dtype -> its name as framed (bytes), or None: not a wire type


def _numpy_name(dtype):
    """The framed name of a numpy dtype (dtype.name is a slow property: looked up once per dtype)."""
    try:
        return _NAME_OF_DTYPE[dtype]
    except KeyError:
        name = dtype.name
        _NAME_OF_DTYPE[dtype] = name.encode() if name in _DTYPES else None
        return _NAME_OF_DTYPE[dtype]


class Message:
    """A received message, in place (no copy): .array (numpy arrays sent with their dtype and
    shape) or .data (a memoryview of bytes sent as bytes); a buffer sent by reference also has
    .buffer (a device buffer has only that). Valid until release() (or the end of the with block):
    after it, the ring's bytes are the writer's again, and a buffer sent by reference is closed
    unless .buffer was taken (then it is the caller's to close)."""

    def __init__(self, channel, address, size, head_address=None, head_size=0, buffer=None):
        self._channel = channel
        self._buffer = buffer  # a buffer sent by reference, this message's until .buffer takes it
        self._taken = False
        self.by_reference = buffer is not None
        self.device = buffer.device if buffer is not None else "cpu"
        # A buffer sent by reference has its framing apart (head); else the framing leads the bytes.
        apart = buffer is not None and head_size > 0
        on_device = buffer is not None and buffer.kind == "device"
        where, room = (head_address, head_size) if apart else (address, size)
        fields = None
        if (apart or not on_device) and room >= _FRAMING_BYTES:
            fields = _MSG_HEAD.unpack(bytes((ctypes.c_ubyte * _MSG_HEAD.size).from_address(where)))
        if fields is not None and fields[0] == _MSG_MAGIC:
            _, kind, ndim, name_len, *shape = fields
            dtype_name = bytes((ctypes.c_ubyte * 8).from_address(where + _MSG_HEAD.size))[:name_len].decode(
                errors="replace")
            start = 0 if apart else _FRAMING_BYTES
            self.kind = "array" if kind == _MSG_ARRAY else "bytes"
            self.dtype = dtype_name or None
            self.shape = tuple(shape[:ndim]) if kind == _MSG_ARRAY else None
        elif on_device:  # a device buffer from another program: its own description
            start, self.kind, self.dtype, self.shape = 0, "array", buffer.dtype, buffer.shape
        else:  # sent by another program: raw bytes
            start, self.kind, self.dtype, self.shape = 0, "bytes", None, None
        self._raw = None if on_device else (ctypes.c_ubyte * (size - start)).from_address(address + start)
        self.nbytes = size - start

    @property
    def data(self):
        self._live()
        if self._raw is None:
            raise Unsupported(-8, f"a device buffer ({self.device}): use .buffer")
        return memoryview(self._raw).cast("B")

    @property
    def array(self):
        """A numpy view of the message (zero copy; a copy() outlives release())."""
        import numpy as np
        self._live()
        if self._raw is None:
            raise Unsupported(-8, f"a device buffer ({self.device}) has no numpy view: use .buffer "
                                  "(__cuda_array_interface__, DLPack) after .buffer.wait(stream)")
        if self.kind != "array":
            return np.frombuffer(self._raw, dtype=np.uint8)
        return np.frombuffer(self._raw, dtype=self.dtype).reshape(self.shape)

    @property
    def buffer(self):
        """The Buffer sent by reference (None for a message sent inline), now the caller's: it
        outlives release() and is closed by its own close() (or with block). For a device buffer,
        buffer.wait(stream) orders the stream after the sender's record."""
        self._live()
        if self._buffer is not None:
            self._taken = True
        return self._buffer

    def _live(self):
        if self._channel is None:
            raise PoolshimError(-9, "the message was released")
        if self._channel._h is None:
            raise PoolshimError(-9, f"channel {self._channel.name!r} is closed (its ring is unmapped)")

    def release(self):
        """Gives the message's place back to the writer; views of it (.array, .data) end here."""
        if self._channel is not None:
            ch, self._channel = self._channel, None
            buffer, self._buffer = self._buffer, None
            try:
                if buffer is not None and not self._taken:
                    buffer.close()
            finally:
                if ch._h is not None:
                    _check(ch._lib.poolshim_channel_release(ch._h))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class Reservation:
    """Room for one message, reserved by Channel.reserve: .array is where its bytes go (in the ring,
    or in a buffer made for it), filled in place; commit() sends it (the with block commits when it
    ends without an exception, and cancels otherwise). The array is the message's memory: do not
    write it after the commit (readers may be reading it). A commit that fails (no room in time, no
    reader left) keeps the reservation: commit again, or cancel."""

    def __init__(self, channel, address, nbytes, dtype, shape, timeout):
        import numpy as np
        self._channel = channel
        self._timeout = timeout
        raw = (ctypes.c_ubyte * nbytes).from_address(address)
        self.array = np.frombuffer(raw, dtype=dtype).reshape(shape)

    def commit(self):
        ch = self._channel
        if ch is None:
            raise PoolshimError(-9, "the reservation has ended")
        _check(ch._lib.poolshim_channel_commit(ch._h, _ms(self._timeout)))
        self._channel = None
        self.array = None

    def cancel(self):
        ch, self._channel = self._channel, None
        if ch is not None:
            self.array = None
            _check(ch._lib.poolshim_channel_cancel(ch._h))

    def __enter__(self):
        return self.array

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            self.cancel()
            return
        try:
            self.commit()
        except BaseException:
            self.cancel()  # the with block is over: nothing stays reserved
            raise


class Channel:
    """A named channel on the node's poolshimd: Channel.create(name, readers=N) makes it and is its
    writer; Channel.open(name) attaches a reader, which receives what is sent from then on.
    send(obj) takes a numpy array (its dtype and shape travel with it), bytes, bytearray or a
    memoryview; recv() returns a Message read in place. A send waits (up to timeout) while the
    slowest reader has not released enough room; nothing is dropped. One thread at a time uses a
    Channel (a ring has one writer; give each reading thread a Channel.open of its own)."""

    def __init__(self, handle, name, writer):
        self._lib = _load()
        self._h = ctypes.c_void_p(handle)
        self.name = name
        self.writer = writer
        # A send's two pieces: the framing (in this buffer) and the payload (where it is).
        self._head = ctypes.create_string_buffer(_FRAMING_BYTES)
        self._parts = (ctypes.c_void_p * 2)(ctypes.addressof(self._head), None)
        self._sizes = (ctypes.c_size_t * 2)(_FRAMING_BYTES, 0)

    @classmethod
    def create(cls, name, readers=1, capacity=16 << 20, shared=False, spin=None):
        """spin: seconds a wait spins before it sleeps (default 20e-6; see set_spin)."""
        lib = _load()
        h = ctypes.c_void_p()
        _check(lib.poolshim_channel_create(_name(name), int(capacity), int(readers), _SHARED if shared else 0,
                                           ctypes.byref(h)))
        ch = cls(h.value, name, True)
        if spin is not None:
            ch.set_spin(spin)
        return ch

    @classmethod
    def open(cls, name, shared=False, spin=None):
        lib = _load()
        h = ctypes.c_void_p()
        _check(lib.poolshim_channel_open(_name(name), _SHARED if shared else 0, ctypes.byref(h)))
        ch = cls(h.value, name, False)
        if spin is not None:
            ch.set_spin(spin)
        return ch

    def set_spin(self, seconds):
        """How long this end's waits spin before they sleep on the futex (0 to 1 s): a message (or
        room) that comes within it is taken without a wake-up, for a busy core meanwhile."""
        self._live()
        if not 0 <= seconds <= 1:
            raise InvalidArgument(-1, f"spin {seconds!r}: seconds, 0 to 1")
        _check(self._lib.poolshim_channel_set_spin(self._h, int(round(seconds * 1e6))))

    def send(self, obj, timeout=None, stream=0):
        """Sends obj: a numpy array or bytes (copied once: into the ring, or above half the ring
        into a buffer of its own), or a Buffer (by reference: no copy; every reader opens the same
        memory; its dtype and shape travel). A device Buffer's
        event is recorded on stream first (what was queued there before is what readers see after
        their wait; None: no record, ordered by the caller)."""
        self._live()
        if isinstance(obj, Buffer):
            if obj.kind == "device" and stream is not None:
                obj.record(stream)
            head = _framing(_MSG_ARRAY, len(obj.shape), obj.shape, _DTYPES_TO_NUMPY_NAME(obj.dtype))
            _check(self._lib.poolshim_channel_send_buffer(self._h, obj._live(), head, len(head), _ms(timeout)))
            return
        kind, ndim, shape, dtype_name = _MSG_RAW, 0, [0] * 8, b""
        view = None
        try:
            import numpy as np
            if isinstance(obj, np.ndarray):
                if obj.ndim > 8:
                    raise InvalidArgument(-1, f"an array of {obj.ndim} dimensions (8 at most)")
                dtype_name = _numpy_name(obj.dtype)
                if dtype_name is None:
                    raise InvalidArgument(-1, f"dtype {obj.dtype} (one of: {', '.join(sorted(_DTYPES))})")
                arr = obj if obj.flags.c_contiguous else np.ascontiguousarray(obj)
                kind, ndim = _MSG_ARRAY, arr.ndim
                shape[:arr.ndim] = arr.shape
                view = memoryview(arr).cast("B") if arr.nbytes else memoryview(b"")
        except ImportError:
            pass
        if view is None:
            if isinstance(obj, (bytes, bytearray, memoryview)):
                view = memoryview(obj).cast("B")
            else:
                raise InvalidArgument(-1, f"send takes a numpy array, bytes, bytearray or memoryview, not "
                                          f"{type(obj).__name__}")
        # The framing in this channel's own head buffer, the payload where it is: one gathered record.
        ctypes.memmove(self._head, _framing(kind, ndim, shape[:ndim], dtype_name), _FRAMING_BYTES)
        payload = None
        if not len(view):
            address = None
        elif isinstance(obj, bytes):
            address = ctypes.cast(ctypes.c_char_p(obj), ctypes.c_void_p).value  # bytes: its own memory, no copy
        elif not view.readonly:
            payload = (ctypes.c_char * len(view)).from_buffer(view)
            address = ctypes.addressof(payload)
        else:
            payload = ctypes.create_string_buffer(bytes(view), len(view))  # another read-only object: one copy
            address = ctypes.addressof(payload)
        self._parts[1] = address
        self._sizes[1] = len(view)
        _check(self._lib.poolshim_channel_sendv(self._h, self._parts, self._sizes, 2, _ms(timeout)))

    def reserve(self, shape, dtype="uint8", timeout=None):
        """Room for an array of shape and dtype, reserved (waiting as send waits): fill the view in
        place, then commit (no copy at all). with ch.reserve((1024, 1024), "float32") as a: a[:] = x"""
        import numpy as np
        self._live()
        if isinstance(shape, int):
            shape = (shape,)
        shape = tuple(int(d) for d in shape)
        if len(shape) > 8 or any(d < 0 for d in shape):
            raise InvalidArgument(-1, f"shape {shape!r}: at most 8 non-negative ints")
        dt = np.dtype(_NUMPY.get(_dtype(dtype), "uint8"))
        nbytes = math.prod(shape) * dt.itemsize
        if nbytes > 1 << 48:
            raise InvalidArgument(-1, f"shape {shape!r} of {dt.name}: {nbytes} bytes, more than any memory")
        where = ctypes.c_void_p()
        _check(self._lib.poolshim_channel_reserve(self._h, _FRAMING_BYTES + nbytes, ctypes.byref(where),
                                                  _ms(timeout)))
        try:
            ctypes.memmove(where.value, _framing(_MSG_ARRAY, len(shape), shape, dt.name.encode()), _FRAMING_BYTES)
            return Reservation(self, where.value + _FRAMING_BYTES, nbytes, dt, shape, timeout)
        except BaseException:
            self._lib.poolshim_channel_cancel(self._h)
            raise

    def recv(self, timeout=None):
        self._live()
        address, size = ctypes.c_void_p(), ctypes.c_size_t()
        _check(self._lib.poolshim_channel_recv(self._h, ctypes.byref(address), ctypes.byref(size), _ms(timeout)))
        head, head_size = ctypes.c_void_p(), ctypes.c_size_t()
        h, buffer = ctypes.c_void_p(), None
        try:
            if self._lib.poolshim_channel_message_head(self._h, ctypes.byref(head), ctypes.byref(head_size)) != 0:
                return Message(self, address.value or 0, size.value)
            # Sent by reference: the buffer's reference, the Message's until .buffer takes it.
            _check(self._lib.poolshim_channel_take_buffer(self._h, ctypes.byref(h)))
            buffer = Buffer(h.value)
            return Message(self, address.value or 0, size.value, head.value, head_size.value, buffer)
        except BaseException:
            if buffer is not None:
                buffer.close()
            elif h.value:
                self._lib.poolshim_buffer_close(h)
            self._lib.poolshim_channel_release(self._h)
            raise

    def _live(self):
        if self._h is None:
            raise PoolshimError(-9, f"channel {self.name!r} is closed")

    def close(self):
        h, self._h = self._h, None
        if h is not None:
            _check(self._lib.poolshim_channel_close(h))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        return f"<poolshim.Channel {self.name!r} {'writer' if self.writer else 'reader'}>"

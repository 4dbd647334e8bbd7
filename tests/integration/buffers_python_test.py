#!/usr/bin/python3
"""The poolshim Python package (daemon/buffers/python/poolshim) against a daemon of its own
(issue #14): Buffer.create / open in a second process / numpy views / numpy.from_dlpack (zero copy
both ways), device buffers (__cuda_array_interface__, __dlpack_device__, record/wait, open on the
right device or refused on another, on the simulator), context managers, views that outlive close(), clear exceptions for bad input, and a
holder's kill -9 ending its reference at once (timed).

usage: buffers_python_test.py --daemon poolshimd --lib libpoolshim_buffers.so --package DIR
Run with Debian's python3 (numpy from python3-numpy). "FAIL: ..." and exit 1 on a failed check.
"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_helpers import PrivateDaemon, check, failures, package_test, raises  # noqa: E402

args = package_test("buffers_python_test")
import numpy as np  # noqa: E402
import poolshim  # noqa: E402
from poolshim import Buffer  # noqa: E402


daemon = PrivateDaemon(args.daemon, "poolshim-pybuf-", "--region", "256M", "--slab", "16M", "--fill-threads", "1")
child = None
try:

    # A second process: opens by name, checks through numpy and from_dlpack, writes back.
    reader = f"""
import os, sys
import numpy as np
sys.path.insert(0, {args.package!r})
from poolshim import Buffer
with Buffer.open("frames") as b:
    a = b.numpy()
    ok = b.shape == (4, 5) and b.dtype == "float32" and b.creator_pid == {os.getpid()}
    ok = ok and bool((a == np.arange(20, dtype=np.float32).reshape(4, 5)).all())
    d = np.from_dlpack(b)   # numpy makes DLPack arrays read-only; the same memory all the same
    ok = ok and d.shape == (4, 5) and d.dtype == np.float32 and bool((d == a).all())
    ok = ok and d.__array_interface__["data"][0] == a.__array_interface__["data"][0]
    a[3, 4] = -1.0
    del a, d
print("reader:", "ok" if ok else "wrong")
"""
    with Buffer.create("frames", (4, 5), "float32") as b:
        a = b.numpy()
        a[:] = np.arange(20, dtype=np.float32).reshape(4, 5)
        r = subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, timeout=60)
        check(r.stdout.strip() == "reader: ok", f"a second process sees the same bytes and metadata ({r.stdout.strip()}"
                                               f"{r.stderr.strip()[-300:]})")
        check(a[3, 4] == -1.0, "what the second process wrote is here")
        d = np.from_dlpack(b)
        check(d.__array_interface__["data"][0] == a.__array_interface__["data"][0] and float(d[3, 4]) == -1.0,
              "numpy.from_dlpack(buffer) is the same memory (zero copy)")
        del d
        check(np.asarray(b).__array_interface__["data"][0] == a.__array_interface__["data"][0],
              "np.asarray(buffer) is the same memory as numpy()")
        listed = [x for x in poolshim.list_buffers() if x["name"] == "frames"]
        check(len(listed) == 1 and listed[0]["references"] == 1 and listed[0]["bytes"] == 80,
              f"list_buffers: {listed}")
        raises(poolshim.NameExists, lambda: Buffer.create("frames", 3, "uint8"), "a taken name")
        del a
        cap = b.__dlpack__()  # a capsule nobody consumes: its view ends when it dies (the C destructor)
        del cap
        check(b._views == 0, f"an unconsumed DLPack capsule gave its view back ({b._views} left)")

    # A view outlives close(): the reference ends when the view goes.
    v = Buffer.open("frames")
    view = v.numpy()
    v.close()
    check(v.closed and float(view[0, 1]) == 1.0, "a numpy view stays valid after close()")
    refs = lambda: [x["references"] for x in poolshim.list_buffers() if x["name"] == "frames"]  # noqa: E731
    check(refs() == [1], f"its reference lives while the view does ({refs()})")
    del view
    check(refs() == [0], f"and ends with the last view ({refs()})")

    raises(poolshim.NotFound, lambda: Buffer.open("no-such"), "a missing name")
    raises(poolshim.InvalidArgument, lambda: Buffer.create("a/b", 4), "a name with '/'")
    raises(poolshim.InvalidArgument, lambda: Buffer.create("x" * 64, 4), "a 64-byte name")
    raises(poolshim.InvalidArgument, lambda: Buffer.create("t", 4, "complex64"), "an unknown dtype")
    raises(poolshim.InvalidArgument, lambda: Buffer.create("t", (2, -3), "float32"), "a negative dimension")
    raises(poolshim.InvalidArgument, lambda: Buffer.create("t", (1 << 40, 1 << 40), "float32"), "an overflowing shape")
    raises(poolshim.InvalidArgument, lambda: Buffer.create("t", 4, device="tpu"), "an unknown device")
    raises(poolshim.InvalidArgument, lambda: Buffer.create("t", 4, device="cuda:99"), "a device that does not exist")

    # Device buffers (the simulator's device 0 here): the interfaces torch, cupy and numba read,
    # and opening in another process on its device, or refused on another one.
    with Buffer.create("kv", (4, 256), "float16", device="cuda:0") as d:
        cai = d.__cuda_array_interface__
        check(cai["version"] == 3 and cai["shape"] == (4, 256) and cai["typestr"] == "<f2" and cai["data"][0] != 0
              and cai["data"][1] is False and cai["strides"] is None, f"__cuda_array_interface__ {cai}")
        check(d.__dlpack_device__() == (2, 0), f"__dlpack_device__ {d.__dlpack_device__()} is (kDLCUDA, 0)")
        check(d.kind == "device" and d.device == "cuda:0" and d.nbytes == 4 * 256 * 2, repr(d))
        raises(poolshim.Unsupported, d.numpy, "numpy() of a device buffer")
        d.record()  # the legacy default stream
        d.wait(0)
        raises(poolshim.InvalidArgument, lambda: d.record("stream"), "record on something not a stream")
        opener = subprocess.run([sys.executable, "-c", f"""
import sys; sys.path.insert(0, {args.package!r})
from poolshim import Buffer, InvalidArgument
with Buffer.open("kv", device="cuda:0") as b:
    b.wait()
    print(b.device, b.shape, b.dtype, b.__cuda_array_interface__["data"][0] != 0)
try:
    Buffer.open("kv", device="cuda:1")
except InvalidArgument as e:
    print("refused:", e)
"""], capture_output=True, text=True, timeout=60)
        out = opener.stdout
        check("cuda:0 (4, 256) float16 True" in out, f"another process opens it on its device: {out!r} {opener.stderr!r}")
        check("refused:" in out and "lives on device 0" in out, f"and is refused it on another device: {out!r}")
        check(any(e["name"] == "kv" and e["kind"] == "device" and e["daemon_device"] == 0 for e in poolshim.list_buffers()),
              "listed as a device buffer on the daemon's device 0")
        raises(poolshim.InvalidArgument, lambda: Buffer.open("kv", device="cpu"), "open a device buffer as cpu")
        Buffer.unlink("kv")
    st = daemon.status()
    check("device_lent_bytes=0" in st, "the device buffer is freed after unlink and close")
    raises(poolshim.OutOfMemory, lambda: Buffer.create("t", 1 << 30, "uint8"), "more than the region")

    # kill -9 of the last holder: its reference ends at once.
    holder = f"""
import sys, time
sys.path.insert(0, {args.package!r})
from poolshim import Buffer
b = Buffer.open("frames")
print("held", flush=True)
time.sleep(60)
"""
    child = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    check(child.stdout.readline().strip() == "held", "a holder process opened it")
    Buffer.unlink("frames")
    check(refs() == [], "unlinked: the name is gone from the list")
    st = daemon.status()
    check("named_bytes=16777216" in st, "the memory stays while the holder lives")
    t0 = time.monotonic()
    child.send_signal(signal.SIGKILL)
    child.wait()
    while "named_bytes=0" not in daemon.status():
        if time.monotonic() - t0 > 2:
            break
        time.sleep(0.002)
    ms = (time.monotonic() - t0) * 1000
    check(ms < 2000, f"kill -9 of the last holder to its buffer freed: {ms:.1f} ms (polled through poolshimd --status)")
    child = None
finally:
    if child is not None:
        child.kill()
    daemon.stop()

print("buffers_python_test: " + ("OK" if not failures else f"FAILED ({len(failures)})"))
sys.exit(1 if failures else 0)

#!/usr/bin/python3
"""The poolshim Python package's channels (issue #15) against a daemon of its own: numpy arrays
(dtype and shape travel) and bytes from a writer to two reader processes, messages read in place
(zero copy), bad input and timeouts, the writer's close seen by the readers, buffers by
reference (host and, on the simulator's device, device ones), and reservations filled in place.

usage: channel_python_test.py --daemon poolshimd --lib libpoolshim_buffers.so --package DIR
"FAIL: ..." and exit 1 on a failed check; 77 (skipped) without numpy.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_helpers import PrivateDaemon, check, failures, package_test, raises  # noqa: E402

args = package_test("channel_python_test")
import numpy as np  # noqa: E402
import poolshim  # noqa: E402
from poolshim import Channel  # noqa: E402


READER = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
from poolshim import Channel, ChannelClosed
with Channel.open("py.ch") as ch:
    print("ready", flush=True)
    for k in range(200):
        with ch.recv(timeout=20) as m:
            if k % 2 == 0:
                a = m.array
                want = (np.arange(k * 10, dtype=np.float32) * 0.5).reshape(k, 10) if k else np.zeros((0, 10), np.float32)
                assert a.dtype == np.float32 and a.shape == want.shape and np.array_equal(a, want), k
            else:
                assert m.kind == "bytes" and bytes(m.data) == b"msg %d" % k, (k, bytes(m.data))
    try:
        ch.recv(timeout=20)
        print("no close seen")
    except ChannelClosed as e:
        print("closed:", e)
"""

daemon = PrivateDaemon(args.daemon, "poolshim-pych-", "--region", "256M", "--slab", "16M")
readers = []
try:
    with Channel.create("py.ch", readers=2, capacity=1 << 16) as w:
        raises(poolshim.NoReader, lambda: w.send(b"nobody"), "a send with no reader attached")
        raises(poolshim.InvalidArgument, lambda: Channel.create("py/ch"), "a '/' in the name")
        raises(poolshim.NameExists, lambda: Channel.create("py.ch"), "a taken name")
        raises(poolshim.NotFound, lambda: Channel.open("py.none"), "a missing channel")
        for _ in range(2):
            p = subprocess.Popen([sys.executable, "-c", READER, args.package], stdout=subprocess.PIPE, text=True)
            check(p.stdout.readline().strip() == "ready", "a reader process attached")
            readers.append(p)
        raises(poolshim.QuotaExceeded, lambda: Channel.open("py.ch"), "a third reader of two at most")
        listing = daemon.run("--list").stdout
        rows = [l.split() for l in listing.splitlines() if l.startswith("py.ch ")]
        check(rows and rows[0][1:6] == ["open", "2/2", "65536", "0", "0"] and rows[0][6] == str(os.getpid()),
              f"poolshimd --list shows the channel (writer open, 2/2 readers, 64 KiB, no backlog, nothing held): "
              f"{listing!r}")
        raises(poolshim.InvalidArgument, lambda: w.send(np.zeros(3, np.complex64)), "an unsupported dtype")
        raises(poolshim.InvalidArgument, lambda: w.send([1, 2, 3]), "a list")
        raises(poolshim.InvalidArgument, lambda: w.send(np.zeros((1,) * 9, np.float32)), "an array of 9 dimensions")
        raises(poolshim.InvalidArgument, lambda: w.reserve((2, 2), "complex64"), "a reservation of an unknown dtype")
        t0 = time.monotonic()
        for k in range(200):
            if k % 2 == 0:
                w.send((np.arange(k * 10, dtype=np.float32) * 0.5).reshape(k, 10) if k else np.zeros((0, 10), np.float32),
                       timeout=20)
            else:
                w.send(b"msg %d" % k, timeout=20)
        print(f"200 messages (arrays up to 4 KB, bytes) to 2 reader processes: {(time.monotonic() - t0) * 1000:.0f} ms")
    for i, p in enumerate(readers):
        out = p.stdout.read()
        p.wait(timeout=30)
        check(p.returncode == 0 and "closed:" in out, f"reader {i} got every message in order, then the close: {out!r}")
    readers = []
    with Channel.create("py.solo", readers=1, capacity=1 << 16) as w2, Channel.open("py.solo") as r2:
        raises(poolshim.TimedOut, lambda: r2.recv(timeout=0.05), "a receive with nothing sent")
        a = np.arange(12, dtype=np.int64).reshape(3, 4)
        w2.send(a)
        with r2.recv(timeout=5) as m:
            v = m.array
            check(v.shape == (3, 4) and v.dtype == np.int64 and np.array_equal(v, a), f"an int64 array {v.tolist()}")
            check(not v.flags.owndata, "received in place (a view, no copy)")
        raises(poolshim.PoolshimError, lambda: m.array, "a message used after its release")
    # A buffer sent by reference: no byte copied, the sender's close and unlink do not take it from
    # the reader, and it is freed once the reader released it and the writer let go.
    from poolshim import Buffer
    with Channel.create("py.ref", readers=1, capacity=1 << 16) as w3, Channel.open("py.ref") as r3:
        big = Buffer.create("py.big", (4096, 4096), "float32")  # 64 MiB
        big.numpy()[:] = 3.0
        t0 = time.perf_counter()
        w3.send(big)
        big.close()
        Buffer.unlink("py.big")
        with r3.recv(timeout=5) as m:
            a = m.array
            handoff = (time.perf_counter() - t0) * 1000
            check(m.by_reference and a.shape == (4096, 4096) and a.dtype == np.float32 and float(a[4095, 4095]) == 3.0
                  and float(a.sum()) == 3.0 * 4096 * 4096, f"a 64 MiB buffer by reference: {a.shape} {a.dtype}")
            check(not a.flags.owndata, "read in the buffer's own mapping (no copy)")
        print(f"64 MiB buffer handed from writer to reader by reference (send, recv, first view): {handoff:.3f} ms")

        def held():
            st = daemon.status()
            line = [l for l in st.splitlines() if l.startswith("channel name=py.ref ")]
            return line[0].split("held_bytes=")[1].split()[0] if line else None

        check(held() == str(64 << 20), f"--status: the writer holds the 64 MiB buffer for its reader ({held()})")
        w3.send(b"next")  # the writer lets go of what its reader has passed
        check(held() == "0", f"--status: nothing held once the reader passed it ({held()})")
        with r3.recv(timeout=5) as m:
            check(bytes(m.data) == b"next", "an inline message after it")
    # An array larger than half the ring: sent through a buffer of its own, dtype and shape kept.
    with Channel.create("py.promo", readers=1, capacity=1 << 16) as w4, Channel.open("py.promo") as r4:
        a = (np.arange(512 * 1024, dtype=np.float64) * 0.25).reshape(1024, 512)  # 4 MiB
        w4.send(a)
        with r4.recv(timeout=5) as m:
            check(m.by_reference and m.array.shape == (1024, 512) and m.array.dtype == np.float64 and
                  np.array_equal(m.array, a), f"a 4 MiB array through a 64 KiB ring: {m.array.shape} {m.array.dtype}")
    # Reservations: the array filled in place, inline and in a buffer of its own; an exception in
    # the with block cancels (nothing sent); a buffer by reference taken with .buffer outlives the
    # message's release.
    with Channel.create("py.res", readers=1, capacity=1 << 16) as w5, Channel.open("py.res") as r5:
        for shape in ((16, 16), (1024, 1024)):  # 1 KiB inline; 4 MiB through a buffer of its own
            with w5.reserve(shape, "float32", timeout=5) as a:
                check(isinstance(a, np.ndarray) and a.shape == shape and a.dtype == np.float32, f"reserved {a.shape}")
                a[:] = 2.5
            with r5.recv(timeout=5) as m:
                check(m.array.shape == shape and m.array.dtype == np.float32 and float(m.array.sum()) == 2.5 * a.size,
                      f"a reserved {shape} float32 array arrives whole")
        try:
            with w5.reserve((4,), "int32") as a:
                a[:] = 1
                raise KeyError("in the block")
        except KeyError:
            pass
        w5.send(b"after")
        with r5.recv(timeout=5) as m:
            check(bytes(m.data) == b"after", "an exception in a reservation's block sent nothing")
        raises(poolshim.InvalidArgument, lambda: r5.reserve((4,)), "a reader reserves")
        raises(poolshim.InvalidArgument, lambda: w5.reserve((-1,)), "a negative shape")
        raises(poolshim.InvalidArgument, lambda: w5.reserve((1 << 40, 1 << 20)), "a reservation past any memory")
        raises(poolshim.InvalidArgument, lambda: w5.set_spin(2), "a spin over a second")
        w5.set_spin(0)
        with Buffer.create("py.take", (8,), "int16") as b:
            b.numpy()[:] = 7
            w5.send(b)
        m = r5.recv(timeout=5)
        taken = m.buffer
        m.release()
        check(taken is not None and taken.numpy().tolist() == [7] * 8 and taken.dtype == "int16",
              f"a buffer by reference taken with .buffer, read after the message's release: {taken!r}")
        taken.close()
        Buffer.unlink("py.take")
    # A device buffer by reference (the simulator's device 0): the reader gets it as .buffer, with
    # the interfaces torch and cupy read; no numpy view.
    try:
        dev = Buffer.create("py.dev", (64, 64), "float16", device="cuda:0")
    except poolshim.PoolshimError as e:
        dev = None
        print(f"device buffers not served here ({e}): the device case is skipped")
    if dev is not None:
        with Channel.create("py.devch", readers=1, capacity=1 << 16) as w6, Channel.open("py.devch") as r6:
            w6.send(dev)  # its event recorded on the legacy default stream first
            dev.close()
            Buffer.unlink("py.dev")
            with r6.recv(timeout=5) as m:
                raises(poolshim.Unsupported, lambda: m.array, "a numpy view of a device message")
                b = m.buffer
                cai = b.__cuda_array_interface__
                check(m.device == "cuda:0" and m.shape == (64, 64) and m.dtype == "float16" and b.kind == "device"
                      and cai["shape"] == (64, 64) and cai["typestr"] == "<f2" and cai["data"][0] != 0,
                      f"a device buffer by reference: {m.device} {m.shape} {m.dtype} {cai}")
                b.wait(0)
            b.close()
    st = daemon.status()
    check("named_bytes=0" in st or "named_bytes=0\n" in st, f"the buffer is freed: {st.splitlines()[0]}")
finally:
    for p in readers:
        p.kill()
    daemon.stop()

print("channel_python_test: " + ("OK" if not failures else f"FAILED ({len(failures)})"))
sys.exit(1 if failures else 0)

#!/usr/bin/python3
"""Channels against what poolshim's users ran before (issue #15), between two Python processes, in
one run, with a daemon of its own on a private socket:

  latency     one-way latency p50/p99 of numpy uint8 arrays, 4 KiB to 16 MiB, paced (one message in
              flight): a Channel's send (one copy into the ring), the same with the reader spinning
              up to 50 ms before it sleeps (busy-polling), a reservation filled in place (no copy, the
              reader busy-polling), ZeroMQ ipc://
              (PUSH/PULL, zero-copy send; Debian's python3-zmq) and a Unix stream socket; beside one
              numpy copy of the payload
  throughput  messages per second and GB/s, unpaced (the ring and the socket's buffers full):
              Channel send against ZeroMQ
  handoff     512 MiB from one process to another: a named Buffer sent by reference, against
              np.save/np.load through a .npy file, and a copy through a shared-memory slot of 512 MiB
              (the reader then views it); from the sender's first step to the reader's view
  reqrep      request/response of 1-5 MB float32 tensors (the server/runner pattern): the client
              sends a tensor, the server answers with one of the same shape; round trips per second,
              Channel (two channels) against ZeroMQ (PAIR)

usage: channel_bench.py --daemon poolshimd --lib libpoolshim_buffers.so --package DIR
                        [--count N] [--tp-count N] [--rounds N] [--handoff-mib N]
                        [--parts latency,throughput,handoff,reqrep]
Prints a table per part; exit 77 without numpy or zmq.
"""
import argparse
import mmap
import os
import socket
import subprocess
import sys
import time

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--daemon", required=True)
ap.add_argument("--lib", required=True)
ap.add_argument("--package", required=True)
ap.add_argument("--count", type=int, default=200, help="messages per size and way (latency)")
ap.add_argument("--parts", default="latency,throughput,handoff,reqrep")
ap.add_argument("--handoff-mib", type=int, default=512)
ap.add_argument("--tp-count", type=int, default=0,
                help="messages per size in the throughput part (default: 1000 up to 64 KiB, 200 above)")
ap.add_argument("--rounds", type=int, default=200, help="round trips of the request/response part")
ap.add_argument("--child", help=argparse.SUPPRESS)
args = ap.parse_args()
try:
    import numpy as np
    import zmq
except ImportError as e:
    print(f"channel_bench: {e} (apt-get install python3-numpy python3-zmq): skipped")
    sys.exit(77)
os.environ["POOLSHIM_BUFFERS_LIB"] = args.lib
sys.path.insert(0, args.package)
from poolshim import Buffer, Channel  # noqa: E402

SIZES = [4 << 10, 64 << 10, 1 << 20, 4 << 20, 16 << 20]


def ring_for(size):
    """A ring of four times the message (half the ring is the largest inline one), at least 64 KiB:
    sized to the message, as a user would, so that it stays in cache."""
    c = 64 << 10
    while c < 4 * size:
        c *= 2
    return c
HANDOFFS = 5  # per way of the handoff
REQ_SHAPES = [(256, 1024), (512, 1024), (768, 1024), (1024, 1024), (1280, 1024)]  # float32: 1 to 5 MiB


def tp_count(size):
    """Messages of a size in the throughput part: enough to amortise the start, few of the large."""
    if args.tp_count > 0:
        return args.tp_count
    return 1000 if size <= 64 << 10 else 200


def now_us():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) / 1000.0


def stats(v):
    v = sorted(v)
    return v[len(v) // 2], v[int(len(v) * 0.99)]


def stamp_of(a):
    return float(a[:8].view(np.float64)[0])


def recv_exact(s, view):
    got = 0
    while got < len(view):
        n = s.recv_into(view[got:])
        if n == 0:
            raise EOFError
        got += n


# ---- the reader / server processes ----
def child(role, where):
    if role in ("channel", "channel-spin"):  # one size: a channel of its own
        with Channel.open(where, spin=0.05 if role == "channel-spin" else None) as ch:
            print("ready", flush=True)
            lat = []
            for _ in range(args.count):
                with ch.recv(timeout=30) as m:
                    lat.append(now_us() - stamp_of(m.array))
            return [stats(lat)]
    if role == "zmq":
        s = zmq.Context().socket(zmq.PULL)
        s.connect(where)
        print("ready", flush=True)
        out = []
        for _ in SIZES:
            lat = []
            for _ in range(args.count):
                a = np.frombuffer(s.recv(copy=False).buffer, dtype=np.uint8)
                lat.append(now_us() - stamp_of(a))
            out.append(stats(lat))
        return out
    if role == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(where)
        print("ready", flush=True)
        out = []
        for size in SIZES:
            buf = np.empty(size, np.uint8)
            view = memoryview(buf)
            lat = []
            for _ in range(args.count):
                recv_exact(s, view)
                lat.append(now_us() - stamp_of(buf))
            out.append(stats(lat))
        return out
    if role in ("tp-channel", "tp-zmq"):
        if role == "tp-channel":  # one size: a channel of its own
            ch = Channel.open(where)
            print("ready", flush=True)
            for _ in range(int(os.environ["BENCH_N"])):
                ch.recv(timeout=30).release()
            print("done", flush=True)
        else:
            s = zmq.Context().socket(zmq.PULL)
            s.connect(where)
            print("ready", flush=True)
            for size in SIZES:
                for _ in range(tp_count(size)):
                    s.recv(copy=False)
                print("done", flush=True)
        return []
    if role in ("handoff-channel", "handoff-npy", "handoff-slot"):
        print("ready", flush=True)
        res = []
        if role == "handoff-channel":
            with Channel.open(where) as ch:
                for _ in range(HANDOFFS):
                    with ch.recv(timeout=60) as m:
                        a = m.array
                        res.append(now_us() - stamp_of(a))
                        assert a.nbytes == args.handoff_mib << 20
                        del a
                    print("got", flush=True)
        elif role == "handoff-npy":
            for _ in range(HANDOFFS):
                line = sys.stdin.readline()
                a = np.load(where, mmap_mode=None)
                res.append(now_us() - float(line))
                assert a.nbytes == args.handoff_mib << 20
                del a
                print("got", flush=True)
        else:
            fd = os.open(where, os.O_RDWR)
            slot = mmap.mmap(fd, args.handoff_mib << 20)
            os.close(fd)
            for _ in range(HANDOFFS):
                line = sys.stdin.readline()
                a = np.frombuffer(slot, dtype=np.uint8)
                res.append(now_us() - float(line))
                assert a[-1] == 7
                del a
                print("got", flush=True)
        return [(sorted(res)[len(res) // 2], max(res))]
    if role in ("rr-channel", "rr-zmq"):  # the server: answers each tensor with one of its shape
        if role == "rr-channel":
            req = Channel.open(where + ".req", spin=0.002)
            with Channel.create(where + ".rep", readers=1, capacity=32 << 20, spin=0.002) as rep:
                print("ready", flush=True)
                while True:
                    with req.recv(timeout=60) as m:
                        if m.nbytes == 0:
                            break
                        x = m.array
                        with rep.reserve(x.shape, x.dtype, timeout=60) as y:
                            np.multiply(x, 2.0, out=y)
            req.close()
        else:
            s = zmq.Context().socket(zmq.PAIR)
            s.connect(where)
            print("ready", flush=True)
            while True:
                head = s.recv()
                if not head:
                    break
                shape = tuple(int(d) for d in head.decode().split(","))
                x = np.frombuffer(s.recv(copy=False).buffer, dtype=np.float32).reshape(shape)
                s.send(head, zmq.SNDMORE)
                s.send(np.multiply(x, 2.0), copy=False)
        return []
    raise SystemExit(f"unknown role {role}")


if args.child:
    role, where = args.child.split(" ", 1)
    out = child(role, where)
    print(" ".join(f"{p50:.1f} {p99:.1f}" for p50, p99 in out), flush=True)
    sys.exit(0)


def spawn(role, where, env=None):
    p = subprocess.Popen([sys.executable, __file__, "--daemon", args.daemon, "--lib", args.lib, "--package",
                          args.package, "--count", str(args.count), "--handoff-mib", str(args.handoff_mib),
                          "--tp-count", str(args.tp_count), "--rounds", str(args.rounds),
                          "--child", f"{role} {where}"], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True,
                         env=dict(os.environ, **(env or {})))
    line = p.stdout.readline().strip()
    assert line == "ready", f"{role}: {line!r}"
    return p


def finish(p):
    figures = [float(x) for x in p.stdout.readline().split()]
    p.wait(timeout=120)
    assert p.returncode == 0, f"a benchmark child failed ({p.returncode})"
    return [(figures[2 * i], figures[2 * i + 1]) for i in range(len(figures) // 2)]


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from check_helpers import PrivateDaemon  # noqa: E402

region = max(1024, args.handoff_mib + 256)
daemon = PrivateDaemon(args.daemon, "poolshim-chbench-", "--region", f"{region}M", "--slab", "16M", log=False)
tmp = daemon.dir  # the ZeroMQ endpoints, the Unix socket, the .npy file and the slot go there too
parts = args.parts.split(",")
try:
    payloads = {size: np.zeros(size, np.uint8) for size in SIZES}

    def pace(size, t0):
        # One message in flight: the next after this one's delivery. The sender sleeps meanwhile (a
        # spinning sender would take a core from ZeroMQ's I/O threads).
        left = t0 + 100 + size / 1000.0 - now_us()
        if left > 0:
            time.sleep(left / 1e6)

    def paced(role, where, send):
        p = spawn(role, where)
        time.sleep(0.1)
        for size in SIZES:
            for _ in range(args.count):
                t0 = now_us()
                send(size, t0)
                pace(size, t0)
        return finish(p)

    def stamped(size, t0):
        a = payloads[size]
        a[:8].view(np.float64)[0] = t0
        return a

    def reserved(w, n, t):
        with w.reserve((n,), "uint8", timeout=30) as a:
            a[:8].view(np.float64)[0] = t  # the payload is made in place: nothing to copy

    def channel_row(name, role, reserve):
        """Each size through a channel of its own (its ring four times the message), paced."""
        out = []
        for size in SIZES:
            with Channel.create(f"{name}.{size}", readers=1, capacity=ring_for(size)) as w:
                p = spawn(role, f"{name}.{size}")
                time.sleep(0.05)
                for _ in range(args.count):
                    t0 = now_us()
                    if reserve:
                        reserved(w, size, t0)
                    else:
                        w.send(stamped(size, t0), timeout=30)
                    pace(size, t0)
                out += finish(p)
        return out

    if "latency" in parts:
        rows = {"channel send": channel_row("bench", "channel", False),
                "channel, reader busy-polls": channel_row("bench.spin", "channel-spin", False),
                "channel reserve (in place)": channel_row("bench.res", "channel-spin", True)}
        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        endpoint = "ipc://" + os.path.join(tmp, "zmq.ipc")
        push.bind(endpoint)
        rows["zmq ipc (PUSH/PULL)"] = paced("zmq", endpoint, lambda n, t: push.send(stamped(n, t), copy=False))
        push.close()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path = os.path.join(tmp, "unix.sock")
        listener.bind(path)
        listener.listen(1)
        p = subprocess.Popen([sys.executable, __file__, "--daemon", args.daemon, "--lib", args.lib, "--package",
                              args.package, "--count", str(args.count), "--child", f"unix {path}"],
                             stdout=subprocess.PIPE, text=True)
        conn, _ = listener.accept()
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.1)
        for size in SIZES:
            for _ in range(args.count):
                t0 = now_us()
                conn.sendall(stamped(size, t0))
                pace(size, t0)
        rows["unix socket"] = finish(p)
        conn.close()
        listener.close()
        # One numpy copy of the payload under a send's conditions: paced alike (the caches cool while
        # the sender sleeps), into a destination that cycles as the ring does.
        copies = {}
        for size in SIZES:
            ring = np.zeros(4 * size, np.uint8)
            c = []
            for k in range(args.count):
                t0 = now_us()
                np.copyto(ring[(k % 4) * size:(k % 4 + 1) * size], payloads[size])
                c.append(now_us() - t0)
                pace(size, t0)
            copies[size] = stats(c)[0]
        print(f"one-way latency, numpy uint8 arrays, {args.count} per size and way, two processes, "
              f"p50 / p99 in microseconds:")
        print(f"{'way':<28}" + "".join(f"{s >> 10:>14} KiB" for s in SIZES))
        for name, r in rows.items():
            print(f"{name:<28}" + "".join(f"{p50:>9.0f} /{p99:>7.0f}" for p50, p99 in r))
        print(f"{'one numpy copy (p50, paced)':<28}" + "".join(f"{copies[s]:>18.0f}" for s in SIZES))
        z = rows["zmq ipc (PUSH/PULL)"]
        for name in ("channel send", "channel, reader busy-polls", "channel reserve (in place)"):
            print(f"{'zmq / ' + name:<40}" + "".join(f"{z[i][0] / rows[name][i][0]:>8.1f}x" for i in range(len(SIZES))))
        print(f"{'channel send / one copy':<40}" +
              "".join(f"{rows['channel send'][i][0] / copies[s]:>8.1f}x" for i, s in enumerate(SIZES)))

    if "throughput" in parts:
        res = {}
        for size in SIZES:
            # The package's default ring (16 MiB) or four messages: room to run ahead.
            with Channel.create(f"bench.tp.{size}", readers=1, capacity=max(16 << 20, ring_for(size))) as w:
                p = spawn("tp-channel", f"bench.tp.{size}", {"BENCH_N": str(tp_count(size))})
                t0 = time.perf_counter()
                for _ in range(tp_count(size)):
                    w.send(payloads[size], timeout=30)
                p.stdout.readline()  # the reader has them all
                res.setdefault("channel", []).append(time.perf_counter() - t0)
                finish(p)
        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        endpoint = "ipc://" + os.path.join(tmp, "zmq-tp.ipc")
        push.bind(endpoint)
        p = spawn("tp-zmq", endpoint)
        for size in SIZES:
            t0 = time.perf_counter()
            for _ in range(tp_count(size)):
                push.send(payloads[size], copy=False)
            p.stdout.readline()  # the reader has them all
            res.setdefault("zmq", []).append(time.perf_counter() - t0)
        finish(p)
        push.close(linger=1000)
        counts = (f"{args.tp_count} messages per size" if args.tp_count > 0 else
                  "1000 messages per size up to 64 KiB and 200 above")
        print(f"throughput, {counts}, sent back to back (until the reader has them all; messages/s and GB/s):")
        print(f"{'way':<10}" + "".join(f"{s >> 10:>21} KiB" for s in SIZES))
        for name, t in res.items():
            print(f"{name:<10}" + "".join(f"{tp_count(z) / t[i]:>12.0f}/s {z * tp_count(z) / t[i] / 1e9:>5.2f} GB/s"
                                          for i, z in enumerate(SIZES)))

    if "handoff" in parts:
        nbytes = args.handoff_mib << 20
        data = np.full(nbytes, 7, np.uint8)
        rows = {}
        # The channel: the tensor is made in a named buffer beforehand (the producer's work, not
        # timed), then sent by reference, HANDOFFS times (the producer reuses it, as a pool of
        # tensors would be: no 512 MiB is being made or freed while one is handed over).
        with Channel.create("bench.hand", readers=1, capacity=1 << 20) as w:
            p = spawn("handoff-channel", "bench.hand")
            b = Buffer.create("bench.hand", (nbytes,), "uint8")
            b.numpy()[:] = 7
            time.sleep(0.5)
            for _ in range(HANDOFFS):
                a = b.numpy()
                t0 = now_us()
                a[:8].view(np.float64)[0] = t0
                w.send(b, timeout=60)
                del a
                assert p.stdout.readline().strip() == "got"
            rows["channel, a Buffer by reference"] = finish(p)[0]
            b.close()
            Buffer.unlink("bench.hand")
        def handed(role, where, hand):
            """HANDOFFS times: hand() puts the array there, then the reader is told the start."""
            p = spawn(role, where)
            for _ in range(HANDOFFS):
                t0 = now_us()
                hand()
                p.stdin.write(f"{t0}\n")
                p.stdin.flush()
                assert p.stdout.readline().strip() == "got"
            p.stdin.close()
            return finish(p)[0]

        path = os.path.join(tmp, "handoff.npy")
        rows[".npy file (np.save, np.load)"] = handed("handoff-npy", path, lambda: np.save(path, data))
        os.unlink(path)
        slot_path = os.path.join(tmp, "slot")
        fd = os.open(slot_path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(fd, nbytes)
        slot = mmap.mmap(fd, nbytes)
        os.close(fd)
        view = np.frombuffer(slot, dtype=np.uint8)
        view[:] = 0  # the slot exists before (as the users' pool of slots does)
        rows["shared-memory slot (one copy)"] = handed("handoff-slot", slot_path, lambda: np.copyto(view, data))
        del view
        slot.close()
        print(f"{args.handoff_mib} MiB handed from one process to another, median / worst of {HANDOFFS}, "
              f"milliseconds:")
        for name, (med, worst) in rows.items():
            print(f"  {name:<34} {med / 1000:>10.3f} / {worst / 1000:>10.3f}")
        ch = rows["channel, a Buffer by reference"][0]
        print(f"  .npy / channel: {rows['.npy file (np.save, np.load)'][0] / ch:.0f}x; "
              f"slot / channel: {rows['shared-memory slot (one copy)'][0] / ch:.0f}x")

    if "reqrep" in parts:
        rounds = args.rounds
        rng = np.random.default_rng(1)
        tensors = [np.ones(REQ_SHAPES[int(rng.integers(len(REQ_SHAPES)))], np.float32) for _ in range(rounds)]
        mb = sum(t.nbytes for t in tensors) / rounds / 1e6
        res = {}
        with Channel.create("bench.rr.req", readers=1, capacity=32 << 20, spin=0.002) as req:
            p = spawn("rr-channel", "bench.rr")
            rep = Channel.open("bench.rr.rep", spin=0.002)
            t0 = time.perf_counter()
            for t in tensors:
                req.send(t, timeout=60)
                with rep.recv(timeout=60) as m:
                    assert m.array.shape == t.shape and m.array[0, 0] == 2.0
            res["channel"] = rounds / (time.perf_counter() - t0)
            req.send(b"", timeout=60)
            p.wait(timeout=60)
            rep.close()
        ctx = zmq.Context()
        s = ctx.socket(zmq.PAIR)
        endpoint = "ipc://" + os.path.join(tmp, "zmq-rr.ipc")
        s.bind(endpoint)
        p = spawn("rr-zmq", endpoint)
        t0 = time.perf_counter()
        for t in tensors:
            s.send(",".join(str(d) for d in t.shape).encode(), zmq.SNDMORE)
            s.send(t, copy=False)
            s.recv()
            y = np.frombuffer(s.recv(copy=False).buffer, dtype=np.float32)
            assert y[0] == 2.0
        res["zmq"] = rounds / (time.perf_counter() - t0)
        s.send(b"")
        p.wait(timeout=60)
        s.close()
        print(f"request/response, {rounds} round trips of float32 tensors of 1 to 5 MiB (mean {mb:.1f} MB each way; "
              f"the server answers 2*x into a reservation; both ends spin 2 ms before they sleep):")
        for name, r in res.items():
            print(f"  {name:<8} {r:>8.0f} round trips/s")
        print(f"  channel / zmq: {res['channel'] / res['zmq']:.1f}x")
finally:
    daemon.stop()

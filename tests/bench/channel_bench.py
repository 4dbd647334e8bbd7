#!/usr/bin/python3
"""One-way latency of numpy arrays between two Python processes (issue #15): a poolshim Channel
against ZeroMQ ipc:// (PUSH/PULL, zero-copy send; Debian's python3-zmq: the users' baseline) and
one numpy copy of the payload, for 4 KiB to 16 MiB, in one run. Messages are paced (one in flight)
so the figures are latency, not queueing; the receiver stamps the arrival of each message.

usage: channel_bench.py --daemon poolshimd --lib libpoolshim_buffers.so --package DIR [--count N]
Prints a table (p50/p99 in microseconds, and the ratio ZeroMQ / channel at p50); exit 77 without
numpy or zmq. Starts a daemon of its own on a private socket.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("--daemon", required=True)
ap.add_argument("--lib", required=True)
ap.add_argument("--package", required=True)
ap.add_argument("--count", type=int, default=200)
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
from poolshim import Channel  # noqa: E402

SIZES = [4 << 10, 64 << 10, 1 << 20, 4 << 20, 16 << 20]


def now_us():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) / 1000.0


def stats(v):
    v = sorted(v)
    return v[len(v) // 2], v[int(len(v) * 0.99)]


if args.child:  # the receiver: "channel NAME" or "zmq ENDPOINT"; prints p50 p99 per size
    kind, where = args.child.split(" ", 1)
    out = []
    if kind == "channel":
        with Channel.open(where) as ch:
            print("ready", flush=True)
            for size in SIZES:
                lat = []
                for _ in range(args.count):
                    with ch.recv(timeout=30) as m:
                        a = m.array
                        lat.append(now_us() - float(a[:8].view(np.float64)[0]))
                out.append(stats(lat))
    else:
        ctx = zmq.Context()
        s = ctx.socket(zmq.PULL)
        s.connect(where)
        print("ready", flush=True)
        for size in SIZES:
            lat = []
            for _ in range(args.count):
                frame = s.recv(copy=False)
                a = np.frombuffer(frame.buffer, dtype=np.uint8)
                lat.append(now_us() - float(a[:8].view(np.float64)[0]))
            out.append(stats(lat))
    print(" ".join(f"{p50:.1f} {p99:.1f}" for p50, p99 in out), flush=True)
    sys.exit(0)

tmp = tempfile.mkdtemp(prefix="poolshim-chbench-")
os.chmod(tmp, 0o700)
os.environ["POOLSHIM_SOCKET"] = os.path.join(tmp, "poolshimd.sock")
daemon = subprocess.Popen([args.daemon, "--socket", os.environ["POOLSHIM_SOCKET"], "--region", "256M", "--slab", "16M"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(500):
        if subprocess.run([args.daemon, "--status"], capture_output=True).returncode == 0:
            break
        time.sleep(0.01)
    payloads = {size: np.zeros(size, np.uint8) for size in SIZES}

    def pace(size, t0):
        until = t0 + 100 + size / 1000.0  # one message in flight: wait past its delivery
        while now_us() < until:
            pass

    def run(kind, where, send):
        child = subprocess.Popen([sys.executable, __file__, "--daemon", args.daemon, "--lib", args.lib, "--package",
                                  args.package, "--count", str(args.count), "--child", f"{kind} {where}"],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.1)
        for size in SIZES:
            p = payloads[size]
            for _ in range(args.count):
                t0 = now_us()
                p[:8].view(np.float64)[0] = t0
                send(p)
                pace(size, t0)
        figures = [float(x) for x in child.stdout.readline().split()]
        child.wait(timeout=60)
        return [(figures[2 * i], figures[2 * i + 1]) for i in range(len(SIZES))]

    with Channel.create("bench", readers=1, capacity=64 << 20) as w:
        chan = run("channel", "bench", lambda a: w.send(a, timeout=30))
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    endpoint = "ipc://" + os.path.join(tmp, "zmq.ipc")
    push.bind(endpoint)
    zq = run("zmq", endpoint, lambda a: push.send(a, copy=False))
    push.close()
    print(f"one-way latency, numpy uint8 arrays, {args.count} per size, two processes (microseconds):")
    print(f"{'size':>9} {'channel p50':>12} {'p99':>9} {'zmq ipc p50':>12} {'p99':>9} {'zmq/channel':>12} "
          f"{'one copy':>9}")
    for i, size in enumerate(SIZES):
        dst = np.empty(size, np.uint8)
        copies = []
        for _ in range(50):
            t0 = now_us()
            np.copyto(dst, payloads[size])
            copies.append(now_us() - t0)
        c50 = stats(copies)[0]
        print(f"{size:>9} {chan[i][0]:>12.1f} {chan[i][1]:>9.1f} {zq[i][0]:>12.1f} {zq[i][1]:>9.1f} "
              f"{zq[i][0] / chan[i][0]:>11.1f}x {c50:>9.1f}")
finally:
    daemon.kill()
    daemon.wait()
    shutil.rmtree(tmp, ignore_errors=True)

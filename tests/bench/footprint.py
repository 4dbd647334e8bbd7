#!/usr/bin/python3
"""The footprint benchmark (issue #17): device memory held by 8 processes together, three ways.

Eight processes with staggered peaks share one device (the CUDA simulator's node-wide accounting,
POOLSHIM_SIM_NODE_FILE: every process's cuMemAlloc and cuMemCreate bytes against one capacity).
Each replays an allocation schedule (footprint_replay; generated here, seeded: model weights held
throughout, a steady churn of activations, and one burst of large tensors at its own time) and
publishes its live bytes. The same schedules run three ways:
  none         no shim: cudaMalloc/cudaFree straight to the driver (what is held is what is live);
  local        the shim, segments from cuMemAlloc, no idle release (per-process caching: each
               process keeps its peak, as PyTorch's caching allocator does);
  daemon       the shim, segments lent by poolshimd (VMM), otherwise the defaults of both (the
               shim's idle bound against the bytes in use now, the daemon's node bound; idle release
               after 30 s): the goal is checked on this way;
  daemon_idle  the same, and memory idle for POOLSHIM_IDLE_RELEASE_MS (--idle-release-ms, 100) given
               back unasked;
  daemon_cap   (only when named in --ways) daemon_idle with POOLSHIM_DEVICE_CACHE_LIMIT (--cache-limit):
               a free past that much idle memory gives segments back at once.
A sampler adds up, every few ms, the device bytes every process holds (the node file's slots of
live processes: the daemon's lent memory is the daemon's) and the live bytes the schedules hold.
Writes footprint.md (the table), footprint.csv (the samples) and footprint.png (memory held over
time, one line per way) into --out. With --check, exits 1 unless the daemon way's peak held (the
defaults) is at most 1.1 x the largest concurrent live total and no allocation failed.
Other schedules (e.g. traces recorded with POOLSHIM_STATS_EVENTS and converted to "T_MS a ID BYTES"
/ "T_MS f ID" lines) run through --schedules DIR (proc0.txt ... proc7.txt).
"""
import argparse
import mmap
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy

MIB = 1 << 20
NODE_SLOTS, NODE_DEVICES = 256, 8
SLOT_BYTES = 8 + 8 * NODE_DEVICES  # tests/sim/driver/sim_node.h: pid, pad, used[8]
SLOTS_AT = 8 + 8 * NODE_DEVICES
SLOT_DTYPE = numpy.dtype([("pid", "<i4"), ("pad", "<u4"), ("used", "<u8", (NODE_DEVICES,))])


def generate(rng, index, procs, stagger_ms):
    """One process's schedule: (t_ms, 'a', id, bytes) / (t_ms, 'f', id)."""
    ev, ids = [], iter(range(1, 1 << 30))
    weights = []
    for _ in range(rng.randint(3, 6)):  # weights: held from start to end
        i = next(ids)
        weights.append(i)
        ev.append((rng.randint(0, 40), 'a', i, rng.randint(8, 24) * MIB + rng.randint(0, 255) * 4096))
    end = 300 + procs * stagger_ms + 200
    t = 50
    while t < end:  # activations: 256 KiB - 4 MiB, each alive 20-150 ms, one every ~8 ms
        i = next(ids)
        size = rng.choice([rng.randint(1, 64) * 4096, rng.randint(64, 1024) * 4096])
        ev.append((t, 'a', i, size))
        ev.append((t + rng.randint(20, 150), 'f', i))
        t += rng.randint(4, 12)
    start = 300 + index * stagger_ms  # the burst: 6-24 tensors of 8-48 MiB up to 300-640 MiB in all
    target, held, burst = rng.randint(300, 640) * MIB, 0, []
    t = start
    while held < target:
        i, size = next(ids), rng.randint(8 * 256, 48 * 256) * 4096
        ev.append((t, 'a', i, size))
        burst.append(i)
        held += size
        t += rng.randint(2, 8)
    release = start + 200
    for k, i in enumerate(burst):
        ev.append((release + k * 2, 'f', i))
    for i in weights:
        ev.append((end, 'f', i))
    ev.sort(key=lambda e: (e[0], e[1] == 'a'))  # frees first at equal times
    return ev


def write_schedule(path, ev):
    with open(path, "w") as f:
        f.write("# T_MS a ID BYTES | T_MS f ID (tests/bench/footprint.py)\n")
        for e in ev:
            f.write(f"{e[0]} a {e[2]} {e[3]}\n" if e[1] == 'a' else f"{e[0]} f {e[2]}\n")


def stable_read(mm, offset, length):
    """Two equal reads of the shared bytes (no torn 8-byte values under concurrent writers)."""
    while True:
        a, b = mm[offset:offset + length], mm[offset:offset + length]
        if a == b:
            return a


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class sampler(threading.Thread):
    def __init__(self, node_path, live_path, period_s):
        super().__init__(daemon=True)
        self.node_path, self.live_path, self.period = node_path, live_path, period_s
        self.samples, self.stop = [], threading.Event()

    def run(self):
        t0 = time.monotonic()
        node = None
        with open(self.live_path, "r+b") as lf:
            live = mmap.mmap(lf.fileno(), 64 * 8)
            while not self.stop.is_set():
                if node is None and os.path.exists(self.node_path) and os.path.getsize(self.node_path) > 0:
                    with open(self.node_path, "r+b") as nf:
                        node = mmap.mmap(nf.fileno(), 0)
                held = 0
                if node is not None:
                    slots = numpy.frombuffer(stable_read(node, SLOTS_AT, NODE_SLOTS * SLOT_BYTES), dtype=SLOT_DTYPE)
                    for pid, used in zip(slots["pid"], slots["used"][:, 0]):  # device 0
                        if pid > 0 and used != 0 and alive(int(pid)):
                            held += int(used)
                live_sum = sum(struct.unpack("<64Q", stable_read(live, 0, 64 * 8)))
                self.samples.append((time.monotonic() - t0, held, live_sum))
                time.sleep(self.period)


def run_way(way, args, schedules, work):
    node_path, live_path = os.path.join(work, f"node-{way}"), os.path.join(work, f"live-{way}")
    with open(live_path, "wb") as f:
        f.write(b"\0" * 64 * 8)
    env = dict(os.environ, POOLSHIM_SIM_NODE_FILE=node_path, POOLSHIM_SIM_DEVICE_MEMORY=args.capacity,
               POOLSHIM_SIM_DEVICES="1")
    env.pop("LD_PRELOAD", None)
    daemon = None
    if way != "none":
        env.update(LD_PRELOAD=args.shim, POOLSHIM_MODE="pool")
    if way == "local":
        env.update(POOLSHIM_DEVICE_SOURCE="local", POOLSHIM_IDLE_RELEASE_MS="0", POOLSHIM_DAEMON="0")
    if way in ("daemon", "daemon_idle", "daemon_cap"):
        sock = os.path.join(work, f"poolshimd-{way}.sock")
        denv = dict(env)
        denv.pop("LD_PRELOAD")
        daemon = subprocess.Popen([args.daemon, "--socket", sock, "--region", "64M", "--slab", "16M",
                                   "--fill-threads", "1", "--device-limit", args.capacity],
                                  env=denv, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"daemon-{way}.log"), "w"))
        for _ in range(250):
            if os.path.exists(sock):
                break
            time.sleep(0.02)
        env.update(POOLSHIM_SOCKET=sock, POOLSHIM_DEVICE_SOURCE="daemon")
        if way != "daemon":
            env.update(POOLSHIM_IDLE_RELEASE_MS=str(args.idle_release_ms))
        if way == "daemon_cap":
            env.update(POOLSHIM_DEVICE_CACHE_LIMIT=args.cache_limit)
    s = sampler(node_path, live_path, args.period_ms / 1000)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    s.start()
    t0 = time.monotonic()
    procs = [subprocess.Popen([args.replay, "--schedule", path, "--live", live_path, "--slot", str(i)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i, path in enumerate(schedules)]
    outs = [p.communicate()[0] for p in procs]
    wall = time.monotonic() - t0
    time.sleep(3 * args.period_ms / 1000)
    s.stop.set()
    s.join()
    if daemon is not None:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    failures, peaks, requests, hits = 0, [], 0, 0
    for p, out in zip(procs, outs):
        fields = dict(kv.split("=") for kv in out.split() if "=" in kv)
        if p.returncode != 0 or "failures" not in fields:
            print(f"footprint: {way}: a replay failed (exit {p.returncode}):\n{out}", file=sys.stderr)
            failures += 1
        else:
            failures += int(fields["failures"])
            peaks.append(int(fields["peak_live"]))
            requests += int(fields.get("pool_requests", 0))
            hits += int(fields.get("pool_hits", 0))
    return dict(way=way, samples=s.samples, wall=wall, cpu=cpu, failures=failures,
                peak_held=max((h for _, h, _ in s.samples), default=0),
                max_live=max((l for _, _, l in s.samples), default=0), sum_peaks=sum(peaks),
                hit_rate=hits / requests if requests else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replay", required=True)
    ap.add_argument("--shim", required=True)
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--schedules", help="a folder of proc0.txt ... (instead of generated ones)")
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--stagger-ms", type=int, default=600)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--capacity", default="8G")
    ap.add_argument("--idle-release-ms", type=int, default=100)
    ap.add_argument("--cache-limit", default="4M", help="POOLSHIM_DEVICE_CACHE_LIMIT of the daemon_cap way")
    ap.add_argument("--period-ms", type=float, default=10)
    ap.add_argument("--ways", default="none,local,daemon,daemon_idle")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="poolshim-footprint-")
    os.chmod(work, 0o700)
    try:
        if args.schedules:
            schedules = sorted(os.path.join(args.schedules, f) for f in os.listdir(args.schedules) if f.endswith(".txt"))
        else:
            rng = random.Random(args.seed)
            schedules = []
            for i in range(args.procs):
                path = os.path.join(work, f"proc{i}.txt")
                write_schedule(path, generate(rng, i, args.procs, args.stagger_ms))
                schedules.append(path)
        results = [run_way(w, args, schedules, work) for w in args.ways.split(",")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, args)
    daemon = next((r for r in results if r["way"] == "daemon"), None)
    bad = [r["way"] for r in results if r["failures"] != 0]
    if bad:
        print(f"footprint: allocations failed in: {', '.join(bad)}", file=sys.stderr)
    if args.check:
        if bad or daemon is None:
            return 1
        ratio = daemon["peak_held"] / max(daemon["max_live"], 1)
        if ratio > 1.1:
            print(f"footprint: FAIL: with the daemon (its defaults) the peak held is {ratio:.3f} x the largest live total (goal 1.1)",
                  file=sys.stderr)
            return 1
        print(f"footprint: goal met: daemon peak held = {ratio:.3f} x the largest concurrent live total")
    return 0


def percent(rate):
    return "-" if rate is None else f"{100 * rate:.1f}%"


def report(results, args):
    names = {"none": "no shim (cudaMalloc/cudaFree)", "local": "shim, local segments (per-process caching)",
             "daemon": "shim, daemon lending, default settings (idle bound 5% of in use, node bound 5%)",
             "daemon_idle": f"the same, and idle release after {args.idle_release_ms} ms",
             "daemon_cap": f"the same, and a {args.cache_limit} idle cap per process"}
    lines = ["| way | peak held (MiB) | largest live total (MiB) | held / live | sum of per-process peaks (MiB) "
             "| pool hit rate | wall (s) | CPU user+sys (s) | failed allocations |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {names[r['way']]} | {r['peak_held'] / MIB:.0f} | {r['max_live'] / MIB:.0f} | "
                     f"{r['peak_held'] / max(r['max_live'], 1):.3f} | {r['sum_peaks'] / MIB:.0f} | "
                     f"{percent(r['hit_rate'])} | {r['wall']:.2f} | "
                     f"{r['cpu']:.2f} | {r['failures']} |")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(args.out, "footprint.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, "footprint.csv"), "w") as f:
        f.write("way,t_s,held_bytes,live_bytes\n")
        for r in results:
            for t, h, l in r["samples"]:
                f.write(f"{r['way']},{t:.4f},{h},{l}\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("footprint: no matplotlib (python3-matplotlib): no plot", file=sys.stderr)
        return
    def start(r):  # each way's clock from its first live byte (start-up differs between ways)
        return next((s[0] for s in r["samples"] if s[2] > 0), 0.0)

    fig, ax = plt.subplots(figsize=(9, 5.2))
    for r in results:
        t0 = start(r)
        ax.plot([s[0] - t0 for s in r["samples"]], [s[1] / MIB for s in r["samples"]], label=names[r["way"]], lw=1.3)
    live = next((r for r in results if r["way"] == "none"), results[0])
    ax.plot([s[0] - start(live) for s in live["samples"]], [s[2] / MIB for s in live["samples"]], "k--", lw=0.8,
            label="live (what the schedules hold)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("device memory held by all 8 processes (MiB)")
    ax.set_title("poolshim footprint benchmark (CUDA simulator, node-wide accounting)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "footprint.png"), dpi=110)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""poolshimd's Redis control plane (issue #14) against a real redis-server that this test starts
(Debian's redis-server, on a private Unix socket, no persistence) and a daemon of its own (on the
simulator's driver: device buffers are simulated device memory):

- the mirror: a shared named buffer is a hash tensor:<name> with exactly the fields name, dtype,
  shape, device, bytes, ipc_handle, owner_pid, refcount, ctime, mtime; one created through the
  socket (the Python package, shared=True) appears too, a per-uid one does not;
- the intake: JSON commands on tensor:cmd (create / get / delete, reply_to), refcounts, bad
  commands answered with their reason and nothing created;
- a command's owner pid killed: its entry disappears at once (timed);
- Redis restarted (an empty database): the daemon reconnects and writes the mirror again;
- the daemon killed and started again: it removes what Redis still holds of the old one;
- create/get/delete round trips through Redis, p50 and p99.

usage: redis_plane_test.py --daemon poolshimd --lib libpoolshim_buffers.so --package DIR [--rounds N]
                          [--ipc-program device_buffer_pair]
"FAIL: ..." and exit 1 on a failed check; exit 77 (skipped) when redis-server is not installed.
"""
import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("--daemon", required=True)
ap.add_argument("--lib", required=True)
ap.add_argument("--package", required=True)
ap.add_argument("--rounds", type=int, default=300)
ap.add_argument("--ipc-program", help="device_buffer_pair: opens a mirrored handle with plain cudaIpcOpenMemHandle")
args = ap.parse_args()

redis_server = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server")
                                                else None)
if redis_server is None:
    print("redis_plane_test: no redis-server (apt-get install redis-server): skipped")
    sys.exit(77)

os.environ["POOLSHIM_BUFFERS_LIB"] = args.lib
sys.path.insert(0, args.package)
from poolshim import Buffer  # noqa: E402

FIELDS = ["name", "dtype", "shape", "device", "bytes", "ipc_handle", "owner_pid", "refcount", "ctime", "mtime"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_helpers import check, failures  # noqa: E402


class Redis:
    """A minimal RESP2 client over a Unix socket."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(15)
        self.s.connect(path)
        self.f = self.s.makefile("rb")

    def cmd(self, *words):
        data = [w if isinstance(w, bytes) else str(w).encode() for w in words]
        self.s.sendall(b"*%d\r\n" % len(data) + b"".join(b"$%d\r\n%s\r\n" % (len(d), d) for d in data))
        return self._read()

    def _read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2].decode()
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"unexpected RESP {line!r}")

    def hash(self, key):
        flat = self.cmd("HGETALL", key)
        return dict(zip(flat[::2], flat[1::2]))

    def close(self):
        self.s.close()


tmp = tempfile.mkdtemp(prefix="poolshim-redis-")
os.chmod(tmp, 0o700)
rsock = os.path.join(tmp, "redis.sock")
dsock = os.path.join(tmp, "poolshimd.sock")
os.environ["POOLSHIM_SOCKET"] = dsock
procs = {}


def start_redis():
    procs["redis"] = subprocess.Popen([redis_server, "--port", "0", "--unixsocket", rsock, "--unixsocketperm", "700",
                                       "--save", "", "--appendonly", "no", "--dir", tmp],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):
        try:
            r = Redis(rsock)
            r.cmd("PING")
            return r
        except OSError:
            time.sleep(0.01)
    raise SystemExit("FAIL: redis-server did not start")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


metrics_port = free_port()


def start_daemon(log_name):
    log = open(os.path.join(tmp, log_name), "w")
    procs["daemon"] = subprocess.Popen([args.daemon, "--socket", dsock, "--region", "256M", "--slab", "16M",
                                        "--redis", "unix://" + rsock, "--log-level", "debug",
                                        "--metrics-port", str(metrics_port)],
                                       stdout=log, stderr=subprocess.STDOUT)
    for _ in range(500):
        if subprocess.run([args.daemon, "--status"], capture_output=True).returncode == 0:
            return
        time.sleep(0.01)
    raise SystemExit("FAIL: the daemon did not start")


def wait_for(fn, limit=10.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        v = fn()
        if v:
            return v
        time.sleep(0.005)
    return fn()


def command(r, reply_key, **cmd):
    cmd["reply_to"] = reply_key
    r.cmd("RPUSH", "tensor:cmd", json.dumps(cmd))
    got = r.cmd("BLPOP", reply_key, 10)
    return json.loads(got[1]) if got else None


def raw_command(r, reply_key, text):
    r.cmd("RPUSH", "tensor:cmd", text)
    got = r.cmd("BLPOP", reply_key, 10)
    return json.loads(got[1]) if got else None


try:
    r = start_redis()
    start_daemon("daemon.log")
    wait_for(lambda: "redis mirror rebuilt" in open(os.path.join(tmp, "daemon.log")).read())

    # ---- create / get / delete through tensor:cmd ----
    holder = subprocess.Popen(["sleep", "120"])
    rep = command(r, "reply:1", op="create", name="x", dtype="f32", shape=[2, 3], device=0, pid=holder.pid)
    check(rep is not None and rep.get("ok") is True and rep["bytes"] == 24 and rep["shape"] == [2, 3]
          and rep["device"] == 0 and rep["refcount"] == 1 and rep["owner_pid"] == holder.pid, f"create: {rep}")
    check(len(base64.b64decode(rep.get("ipc_handle", ""))) == 64, "create's ipc_handle is 64 bytes in base64")
    h = r.hash("tensor:x")
    check(sorted(h) == sorted(FIELDS), f"tensor:x has exactly the fields {FIELDS}: {sorted(h)}")
    check(h.get("shape") == "[2, 3]" and json.loads(h.get("shape", "null")) == [2, 3] and h.get("dtype") == "f32"
          and h.get("device") == "0" and h.get("bytes") == "24" and h.get("refcount") == "1"
          and h.get("owner_pid") == str(holder.pid) and h.get("ipc_handle") == rep.get("ipc_handle"),
          f"tensor:x's values: {h}")
    rep = command(r, "reply:1", op="get", name="x")
    check(rep and rep["ok"] and rep["refcount"] == 2, f"get adds a reference: {rep}")
    check(wait_for(lambda: r.hash("tensor:x").get("refcount") == "2"), "the mirror's refcount follows (2)")
    rep = command(r, "reply:1", op="delete", name="x")
    check(rep and rep["ok"] and rep["refcount"] == 1, f"delete drops one: {rep}")
    check(wait_for(lambda: r.hash("tensor:x").get("refcount") == "1"), "the mirror's refcount follows (1)")
    rep = command(r, "reply:1", op="create", name="x", dtype="f32", shape=[2, 3], device=0)
    check(rep and rep["ok"] is False and "exists" in rep["error"], f"a second create of the name: {rep}")

    # ---- bad commands: a reason each, nothing created ----
    for text, why in [("not json", "not a JSON object"),
                      ('{"op": "create", "name": "b", "dtype": "f33", "shape": [1], "device": 0, "reply_to": "reply:2"}',
                       "unknown dtype"),
                      ('{"op": "create", "name": "b/c", "dtype": "f32", "shape": [1], "device": 0, "reply_to": "reply:2"}',
                       "'/'"),
                      ('{"op": "create", "name": "b", "dtype": "f32", "shape": [4294967296, 4294967296], "device": 0,'
                       ' "reply_to": "reply:2"}', "overflows"),
                      ('{"op": "create", "name": "b", "dtype": "f32", "shape": [1], "device": 7, "reply_to": "reply:2"}',
                       "device 7"),
                      ('{"op": "create", "name": "b", "dtype": "f32", "shape": [1], "reply_to": "reply:2"}',
                       "device buffer"),
                      ('{"op": "explode", "name": "b", "reply_to": "reply:2"}', "op:"),
                      ('{"op": "get", "name": "nope", "reply_to": "reply:2"}', "no such name"),
                      ('{"op": "get", "name": "b", "shpae": [1], "reply_to": "reply:2"}', "unknown key"),
                      ('{"op": "create", "name": "b", "dtype": "f32", "shape": [1], "device": 0, "pid": 999999999,'
                       ' "reply_to": "reply:2"}', "not running")]:
        if text == "not json":
            r.cmd("RPUSH", "tensor:cmd", text)  # no reply_to to answer on: the daemon logs it
            continue
        rep = raw_command(r, "reply:2", text)
        check(rep is not None and rep["ok"] is False and why in rep["error"], f"refused ({why}): {rep}")
    check(r.cmd("EXISTS", "tensor:b") == 0, "nothing was created by the refused commands")
    log = open(os.path.join(tmp, "daemon.log")).read()
    check("not a JSON object" in log, "a command with nowhere to reply is refused in the daemon's log")

    # ---- the socket's shared buffers are mirrored too; per-uid ones are not ----
    with Buffer.create("from-socket", (4, 4), "float32", shared=True) as s, Buffer.create("private", 16):
        check(wait_for(lambda: r.hash("tensor:from-socket").get("device") == "cpu"),
              f"a shared host buffer made through the socket is mirrored: {r.hash('tensor:from-socket')}")
        check(r.hash("tensor:from-socket").get("ipc_handle") == "" and
              r.hash("tensor:from-socket").get("owner_pid") == str(os.getpid()), "with no IPC handle, owned by us")
        check(r.cmd("EXISTS", "tensor:private") == 0, "a per-uid buffer is not")
        rep = command(r, "reply:3", op="get", name="from-socket")
        check(rep and rep["ok"] and rep["refcount"] == 2 and rep["device"] == "cpu", f"get of it: {rep}")
        rep = command(r, "reply:3", op="delete", name="from-socket")
        check(rep and rep["ok"] and rep["refcount"] == 1, f"delete of the plane's reference: {rep}")
        Buffer.unlink("from-socket", shared=True)
        Buffer.unlink("private")
        check(wait_for(lambda: r.cmd("EXISTS", "tensor:from-socket") == 0), "unlinked: its hash is gone")

    # ---- a client's shared buffer is not the plane's to destroy: get + delete leave it named ----
    with Buffer.create("client-made", 64, "uint8", shared=True):
        pass  # closed: no reference left, the name holds it
    rep1 = command(r, "reply:3", op="get", name="client-made")
    rep2 = command(r, "reply:3", op="delete", name="client-made")
    check(rep1 and rep1["ok"] and rep2 and rep2["ok"] and rep2["refcount"] == 0, f"get/delete: {rep1} {rep2}")
    check(r.cmd("EXISTS", "tensor:client-made") == 1, "a client-made buffer keeps its name after the plane's delete")
    with Buffer.open("client-made", shared=True) as again:
        check(again.nbytes == 64, "and opens still")
    Buffer.unlink("client-made", shared=True)

    # ---- refused commands naming a live pid leave nothing watched (no descriptor kept) ----
    dpid = procs["daemon"].pid

    def pidfds():  # the daemon's pidfds: what a pid watch holds (other descriptors come and go)
        n = 0
        for fd in os.listdir(f"/proc/{dpid}/fd"):
            try:
                n += "pidfd" in os.readlink(f"/proc/{dpid}/fd/{fd}")
            except OSError:
                pass
        return n
    fds_before = pidfds()
    for _ in range(50):
        rep = command(r, "reply:5", op="get", name="no-such", pid=os.getpid())
    fds_after = pidfds()
    check(rep and rep["ok"] is False and fds_after == fds_before,
          f"50 refused commands naming a live pid not watched before: daemon pidfds {fds_before} -> {fds_after}")

    # ---- the command list holding the wrong type: refused without a busy loop ----
    def cpu_seconds(pid):
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    r.cmd("SET", "tensor:cmd", "not a list")
    c0 = cpu_seconds(dpid)
    time.sleep(2)
    c1 = cpu_seconds(dpid)
    r.cmd("DEL", "tensor:cmd")
    check(c1 - c0 < 0.5, f"tensor:cmd not a list for 2 s: the daemon used {c1 - c0:.2f} s of CPU (goal: no busy loop)")
    rep = command(r, "reply:5", op="get", name="x")
    check(rep and rep["ok"], f"commands are taken again once tensor:cmd is a list: {rep}")
    if rep and rep["ok"]:
        command(r, "reply:5", op="delete", name="x")

    # ---- the owner pid dies: its entry disappears at once ----
    t0 = time.monotonic()
    holder.kill()
    holder.wait()
    gone = wait_for(lambda: r.cmd("EXISTS", "tensor:x") == 0, 5)
    ms = (time.monotonic() - t0) * 1000
    check(gone and ms < 100, f"kill -9 of a create's pid to its hash gone: {ms:.1f} ms (goal: under 100 ms)")
    st = subprocess.run([args.daemon, "--status"], capture_output=True, text=True).stdout
    check("device_lent_bytes=0" in st, "and its memory freed (no other reference)")

    # ---- Redis restarts (its database empty): reconnect and write the mirror again ----
    rep = command(r, "reply:4", op="create", name="survivor", dtype="u8", shape=[4096], device=0)
    check(rep and rep["ok"], f"create survivor: {rep}")
    if args.ipc_program:
        # Two plain CUDA processes (no poolshim library) share the buffer through the mirrored handle.
        handle = r.hash("tensor:survivor").get("ipc_handle", "")
        w = subprocess.run([args.ipc_program, "ipc-open", handle, "4096", "write", "90"], capture_output=True, text=True)
        c = subprocess.run([args.ipc_program, "ipc-open", handle, "4096", "check", "90"], capture_output=True, text=True)
        check(w.returncode == 0 and c.returncode == 0,
              f"the mirrored ipc_handle opens with cudaIpcOpenMemHandle in two processes, writes seen: "
              f"{w.stdout.strip()} {c.stdout.strip()} {w.stderr.strip()} {c.stderr.strip()}")
    listing = subprocess.run([args.daemon, "--list"], capture_output=True, text=True).stdout.splitlines()
    check(len(listing) >= 2 and listing[0].split()[:4] == ["NAME", "KIND", "DEVICE", "BYTES"] and
          any(l.split()[:4] == ["survivor", "device", "0", "4096"] and l.split()[-1] == "shared" for l in listing[1:]),
          f"poolshimd --list shows it: {listing}")
    import urllib.request
    page = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    want = 'poolshimd_named_buffer_bytes{name="survivor",kind="device",device="0",owner_uid="%d",namespace="shared"} 4096'
    check(want % os.geteuid() in page and 'poolshimd_named_buffer_references{name="survivor"' in page,
          "the metrics page shows it (bytes, references, labelled)")
    r.close()
    procs["redis"].send_signal(signal.SIGKILL)
    procs["redis"].wait()
    t0 = time.monotonic()
    r = start_redis()
    back = wait_for(lambda: r.cmd("EXISTS", "tensor:survivor") == 1, 15)
    check(back, f"Redis restarted empty: the mirror is written again in {time.monotonic() - t0:.2f} s")
    rep = command(r, "reply:4", op="get", name="survivor")
    check(rep and rep["ok"] and rep["refcount"] == 2, f"and commands are taken again: {rep}")

    # ---- the daemon dies and starts again: what Redis holds of the old one goes ----
    procs["daemon"].send_signal(signal.SIGKILL)
    procs["daemon"].wait()
    check(r.cmd("EXISTS", "tensor:survivor") == 1, "a killed daemon leaves its entries behind in Redis")
    r.cmd("HSET", "tensor:ghost", "name", "ghost", "refcount", "1")  # another stale entry
    r.cmd("RPUSH", "tensor:unrelated-list", "kept")                    # not a hash: not the mirror's
    start_daemon("daemon2.log")
    gone = wait_for(lambda: r.cmd("EXISTS", "tensor:survivor") == 0 and r.cmd("EXISTS", "tensor:ghost") == 0, 15)
    check(gone, "the new daemon removed the old one's entries (their memory died with it)")
    check(r.cmd("LLEN", "tensor:unrelated-list") == 1, "and left a list under the prefix alone")
    check(wait_for(lambda: "1 buffer" in open(os.path.join(tmp, "daemon2.log")).read() or
                   "stale entries removed" in open(os.path.join(tmp, "daemon2.log")).read()),
          "its log says what it reconciled")

    # ---- round trips through Redis: create, get, delete, delete (a 4 KiB device buffer) ----
    times = {"create": [], "get": [], "delete": []}
    for i in range(args.rounds):
        for op, extra in [("create", {"dtype": "u8", "shape": [4096], "device": 0}), ("get", {}), ("delete", {}),
                          ("delete", {})]:
            t0 = time.perf_counter()
            rep = command(r, "reply:rt", op=op, name="rt", **extra)
            times[op].append((time.perf_counter() - t0) * 1000)
            if not (rep and rep["ok"]):
                check(False, f"round trip {i} {op}: {rep}")
                break
    check(r.cmd("EXISTS", "tensor:rt") == 0, "every round's buffer is gone after its last delete")
    for op, t in times.items():
        t.sort()
        if t:
            print(f"redis round trip {op} ({len(t)}): p50 {t[len(t) // 2]:.3f} ms, p99 {t[int(len(t) * 0.99)]:.3f} ms")
    every = sorted(sum(times.values(), []))
    print(f"redis round trip, every command ({len(every)}): p50 {every[len(every) // 2]:.3f} ms, "
          f"p99 {every[int(len(every) * 0.99)]:.3f} ms")
    r.close()
finally:
    for name in ("daemon", "redis"):
        p = procs.get(name)
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
    if failures:
        for name in ("daemon.log", "daemon2.log"):
            path = os.path.join(tmp, name)
            if os.path.exists(path):
                print(f"---- {name}\n" + open(path).read()[-4000:])
    shutil.rmtree(tmp, ignore_errors=True)

print("redis_plane_test: " + ("OK" if not failures else f"FAILED ({len(failures)})"))
sys.exit(1 if failures else 0)

#!/usr/bin/env python3
"""Attacks on poolshimd's quotas and its per-client detail (issue #13 findings 2, 3, 8, 12, 13),
each against a daemon of its own on a private socket (daemon_loop_attack.Daemon), speaking raw
records (include/poolshim/protocol.h).

usage: quota_attack.py SCENARIO --daemon PATH/poolshimd
  f2_keep_returned_slabs   lease, keep the memfd, return, again: the memory held through kept
                           memfds beyond the uid quota must be 0
  f2_keep_named_buffers    the same with named buffers (issue #14): create, keep the memfd,
                           unlink and close (the buffer is freed), again
  f3_redeclare_any_memfd   re-declare memfds the daemon never lent (slab-sized, sealed or not) and
                           a slab returned to it: none may take a slot of the region
  f8_quota_per_connection  one process, four connections: the client quota is the process's
  f12_client_detail        another uid sees only its own clients (client_stats) and the metrics
                           page names no client unless --metrics-clients 1 (root only: skipped,
                           77, otherwise)
  f13_ipc_register_flood   200,000 IPC registrations from one client: capped, the daemon's RSS
                           stays bounded
  f17_trim_other_uid       (issue #17) uid 65534's trim_clients asks none of root's clients for
                           their idle memory (only its own uid's: none), while another root
                           connection's does; an idle report beyond the bound is refused (root
                           only: skipped, 77, otherwise)
  f14_device_quota         (--client, --shim) a CUDA program whose device pool takes its segments
                           from the daemon (POOLSHIM_DEVICE_SOURCE=daemon) and needs 40 MiB of
                           device memory holds none of it from the daemon under a 32 MiB client
                           quota (it falls back to cuMemAlloc, and its data checks still pass)

Prints the figures; "FAIL: ..." and exit 1 when a check fails.
"""
import argparse
import os
import socket
import struct
import subprocess
import sys
import time

import daemon_loop_attack as dl
from daemon_loop_attack import PROTO_VERSION

MIB = 1 << 20
OPS = {"hello": 1, "lease_slab": 2, "return_slab": 3, "redeclare_slab": 4, "stats": 5, "client_stats": 6,
       "return_idle": 7, "ipc_register": 9, "buffer_create": 13, "buffer_close": 15, "buffer_unlink": 16,
       "trim_clients": 23}
K_IDLE_REPORT = 1  # return_idle's arg2: arg0 and arg1 are the idle device and pinned bytes
STATUS = {0: "ok", 6: "bad_argument", 7: "missing_fd", 8: "quota", 9: "no_memory", 10: "not_found",
          11: "not_permitted"}


def fail(msg):
    print(f"quota_attack {ARGS.scenario}: FAIL: {msg}", flush=True)
    sys.exit(1)


class Client:
    """One connection, raw records."""

    def __init__(self, d):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.s.settimeout(10)
        self.s.connect(d.sock)
        self.seq = 0

    def ask(self, op, arg0=0, arg1=0, payload=b"", fd=None, arg2=0):
        self.seq += 1
        rec = struct.pack("<IHHII4Q", 0x44485350, PROTO_VERSION, OPS[op], 256, self.seq, arg0, arg1, arg2, 0)
        rec += payload.ljust(128, b"\0") + bytes(80)
        if fd is None:
            self.s.send(rec)
        else:
            socket.send_fds(self.s, [rec], [fd])
        msg, fds, _, _ = socket.recv_fds(self.s, 256, 1)
        magic, ver, rop, size, seq, status, pressure = struct.unpack_from("<IHHIIiI", msg)
        vals = struct.unpack_from("<6Q", msg, 24)
        return status, vals, (fds[0] if fds else None)

    def close(self):
        self.s.close()


def slab_memfd(size, sealed):
    fd = os.memfd_create("not-a-daemon-slab", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    if sealed:
        import fcntl
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    return fd


def stats(c):
    st, v, _ = c.ask("stats")
    return {"region": v[0], "lent": v[1], "free": v[2], "clients": v[3], "leases": v[4]}


def device_lent(c):
    """The stats reply's device bytes lent (payload[0,8))."""
    c.seq += 1
    rec = struct.pack("<IHHII4Q", 0x44485350, PROTO_VERSION, OPS["stats"], 256, c.seq, 0, 0, 0, 0) + bytes(208)
    c.s.send(rec)
    msg = c.s.recv(256)
    return struct.unpack_from("<Q", msg, 72)[0]


def keep_memfds(test, attack, kept_as, held_through, take, let_go, again_what, figures=lambda c: ""):
    """The f2 scenarios: 24 rounds of take(c, i) -> (status, values, memfd) of 16 MiB, keeping the
    memfd and giving the memory back (let_go(c, i, values) -> a failure's text or None). What the
    kept memfds hold must count against the 64 MiB uid quota, and once they are closed the daemon
    serves take() again (it looks at /proc at most once a second). figures(c): more for the report."""
    size, quota = 16 * MIB, 64 * MIB
    d = dl.Daemon(extra=["--uid-quota", str(quota), "--region", "256M"])
    try:
        d.figures("before")
        c = Client(d)
        kept = []
        refused = 0
        for i in range(24):  # 384 MiB of memfds if nothing stops it
            st, v, fd = take(c, i)
            if st != 0:
                refused += 1
                continue
            kept.append(fd)
            problem = let_go(c, i, v)
            if problem:
                fail(problem)
        held = len(kept) * size
        beyond = max(0, held - quota)
        print(f"attack: 24 rounds of {attack}: {len(kept)} {kept_as} kept ({held // MIB} MiB), {refused} refused"
              f"{figures(c)}", flush=True)
        print(f"memory held beyond the uid quota of {quota // MIB} MiB: {beyond // MIB} MiB (goal: 0)", flush=True)
        if beyond != 0:
            fail(f"{beyond // MIB} MiB held through {held_through} beyond the quota")
        for fd in kept:
            os.close(fd)
        time.sleep(1.2)
        st, v, fd = take(c, "again")
        if st != 0:
            fail(f"after every kept memfd was closed, a {again_what} was refused: {STATUS.get(st, st)}")
        os.close(fd)
        print(f"after closing the kept memfds: a {again_what} is served again", flush=True)
        d.figures("after")
        print(f"quota_attack {test}: OK", flush=True)
    finally:
        d.stop()


def f2():
    def let_go(c, i, v):
        st, _, _ = c.ask("return_slab", v[0])
        return f"return_slab: {STATUS.get(st, st)}" if st != 0 else None

    keep_memfds("f2_keep_returned_slabs", "lease, keep the memfd, return", "slabs", "returned slabs",
                lambda c, i: c.ask("lease_slab", 16 * MIB), let_go, "lease",
                figures=lambda c: f"; the daemon reports lent={stats(c)['lent'] // MIB} MiB")


def f2_named():
    size = 16 * MIB

    def create(c, i):  # a host buffer of `size` u8 (dtype 1, one dimension)
        return c.ask("buffer_create", size, 1, f"kept{i}".encode().ljust(64, b"\0") + struct.pack("<Q", size),
                     arg2=1 | (1 << 16))

    def let_go(c, i, v):
        st_u, _, _ = c.ask("buffer_unlink", 0, 0, f"kept{i}".encode())
        st_c, _, _ = c.ask("buffer_close", v[0])
        return f"unlink/close: {STATUS.get(st_u, st_u)}/{STATUS.get(st_c, st_c)}" if st_u != 0 or st_c != 0 else None

    keep_memfds("f2_keep_named_buffers", "create, keep the memfd, unlink, close", "buffers", "freed named buffers",
                create, let_go, "create")


def f3():
    slab = 16 * MIB
    d = dl.Daemon(extra=["--region", "128M"])  # 8 slabs
    try:
        c = Client(d)
        taken = 0
        results = {}
        for i in range(8):
            fd = slab_memfd(slab, sealed=(i % 2 == 0))
            st, _, _ = c.ask("redeclare_slab", slab, fd=fd)
            os.close(fd)
            results[STATUS.get(st, st)] = results.get(STATUS.get(st, st), 0) + 1
            taken += st == 0
        # A slab leased and returned, kept and then re-declared.
        st, v, fd = c.ask("lease_slab", slab)
        if st != 0:
            fail(f"a plain lease was refused after the re-declarations: {STATUS.get(st, st)} (taken {taken})")
        c.ask("return_slab", v[0])
        st, _, _ = c.ask("redeclare_slab", slab, fd=fd)
        os.close(fd)
        results["returned: " + STATUS.get(st, str(st))] = 1
        taken += st == 0
        s = stats(c)
        print(f"attack: 8 memfds no daemon lent and 1 returned slab re-declared: {results}", flush=True)
        print(f"region slots taken by re-declaration: {taken} of 8 (goal: 0); lent now {s['lent'] // MIB} MiB",
              flush=True)
        if taken != 0:
            fail(f"{taken} re-declarations of memory the daemon never lent (or took back) were accepted")
        print("quota_attack f3_redeclare_any_memfd: OK", flush=True)
    finally:
        d.stop()


def f8():
    slab, quota = 16 * MIB, 16 * MIB
    d = dl.Daemon(extra=["--client-quota", str(quota)])
    try:
        conns = [Client(d) for _ in range(4)]
        got = []
        for c in conns:
            st, _, fd = c.ask("lease_slab", slab)
            if st == 0:
                got.append(fd)
        print(f"one process, 4 connections, client quota {quota // MIB} MiB: {len(got)} slabs of "
              f"{slab // MIB} MiB leased ({len(got) * slab // MIB} MiB; goal: {quota // MIB})", flush=True)
        if len(got) * slab > quota:
            fail(f"{len(got) * slab // MIB} MiB for one process under a {quota // MIB} MiB client quota")
        print("quota_attack f8_quota_per_connection: OK", flush=True)
    finally:
        d.stop()


NOBODY_PROBE = r"""
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(5)
s.connect(sys.argv[1])
seen = []
for i in range(64):
    s.send(struct.pack("<IHHII4Q", 0x44485350, PROTO_VERSION, 6, 256, i + 1, i, 0, 0, 0) + bytes(208))
    msg = s.recv(256)
    status = struct.unpack_from("<i", msg, 16)[0]
    if status != 0:
        break
    v = struct.unpack_from("<6Q", msg, 24)
    seen.append((v[0], v[1]))
print(" ".join(f"{p}:{u}" for p, u in seen))
"""
NOBODY_PROBE = NOBODY_PROBE.replace("PROTO_VERSION", str(PROTO_VERSION))  # a program of its own


def f12():
    if os.geteuid() != 0:
        print("quota_attack f12_client_detail: needs root (a second uid): skipped", flush=True)
        sys.exit(77)
    port = dl.free_port()
    d = dl.Daemon(extra=["--metrics-port", str(port)], dir_mode=0o755)
    try:
        c = Client(d)
        c.ask("hello")  # a root client, pid = this process
        # Debian's python3 (a python under /root is not for uid 65534 to run)
        py = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
        r = subprocess.run([py, "-c", NOBODY_PROBE, d.sock], capture_output=True, text=True,
                           timeout=20, user=65534, group=65534)
        seen = r.stdout.split()
        others = [x for x in seen if not x.endswith(":65534")]
        print(f"uid 65534 asked client_stats: saw {len(seen)} client(s): {seen}; another uid's: {len(others)} "
              f"(goal: 0)", flush=True)
        if r.returncode != 0:
            fail(f"the uid 65534 probe failed: {r.stderr.strip()}")
        if others:
            fail(f"uid 65534 saw other uids' clients: {others}")
        page = dl.metrics_get(port)
        named = [l for l in page.splitlines() if l.startswith("poolshimd_client_")]
        print(f"metrics page without --metrics-clients: {len(named)} per-client line(s) (goal: 0)", flush=True)
        if named:
            fail(f"the metrics page names clients: {named[:2]}")
        print("quota_attack f12_client_detail: OK", flush=True)
    finally:
        d.stop()


TRIM_PROBE = r"""
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(5)
s.connect(sys.argv[1])
s.send(struct.pack("<IHHII4Q", 0x44485350, PROTO_VERSION, 23, 256, 1, 0, 0, 0, 0) + bytes(208))
msg = s.recv(256)
status = struct.unpack_from("<i", msg, 16)[0]
v = struct.unpack_from("<6Q", msg, 24)
print(status, v[0], v[1], v[2])
""".replace("PROTO_VERSION", str(PROTO_VERSION))


def f17():
    if os.geteuid() != 0:
        print("quota_attack f17_trim_other_uid: needs root (a second uid): skipped", flush=True)
        sys.exit(77)
    d = dl.Daemon(dir_mode=0o755)
    try:
        c = Client(d)
        c.ask("hello")
        idle = 64 * MIB
        st, v, _ = c.ask("return_idle", idle, 8 * MIB, arg2=K_IDLE_REPORT)
        if st != 0:
            fail(f"root's idle report refused: {STATUS.get(st, st)}")
        py = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
        r = subprocess.run([py, "-c", TRIM_PROBE, d.sock], capture_output=True, text=True, timeout=20,
                           user=65534, group=65534)
        if r.returncode != 0:
            fail(f"the uid 65534 probe failed: {r.stderr.strip()}")
        status, asked, idle_dev, idle_pin = (int(x) for x in r.stdout.split())
        print(f"uid 65534 trim_clients: status {status}, {asked} client(s) asked, their idle {idle_dev} + "
              f"{idle_pin} bytes (goal: 0 asked, 0 bytes seen)", flush=True)
        if asked != 0 or idle_dev != 0 or idle_pin != 0:
            fail("uid 65534 reached (or saw) another uid's clients through trim_clients")
        st, v, _ = c.ask("return_idle", idle, 8 * MIB, arg2=K_IDLE_REPORT)
        if st != 0 or v[1] != 0 or v[2] != 0:
            fail(f"root's client was asked for {v[1]} device and {v[2]} pinned bytes after another uid's trim")
        other = Client(d)
        st, v, _ = other.ask("trim_clients")
        # Its idle figure is believed up to what the daemon lent it (review of issue #17): nothing.
        if st != 0 or v[0] != 1 or v[1] != 0:
            fail(f"a root connection's trim_clients: status {STATUS.get(st, st)}, {v[0]} asked, {v[1]} idle")
        st, v, _ = c.ask("return_idle", 0, 0, arg2=K_IDLE_REPORT)
        if st != 0 or v[1] != (1 << 64) - 1:
            fail(f"the same uid's trim did not reach root's client (asked {v[1]})")
        for args in [((1 << 46) + 1, 0, K_IDLE_REPORT), (0, (1 << 46) + 1, K_IDLE_REPORT), (1, 0, 0), (0, 0, 2)]:
            st, _, _ = c.ask("return_idle", args[0], args[1], arg2=args[2])
            if STATUS.get(st) != "bad_argument":
                fail(f"return_idle {args} answered {STATUS.get(st, st)}, want bad_argument")
        st, _, _ = other.ask("trim_clients", (1 << 46) + 1)
        if STATUS.get(st) != "bad_argument":
            fail(f"trim_clients past the bound answered {STATUS.get(st, st)}, want bad_argument")
        print("quota_attack f17_trim_other_uid: OK", flush=True)
    finally:
        d.stop()


def f13():
    d = dl.Daemon()
    try:
        c = Client(d)
        before = d.rss_kib()
        ok = refused = 0
        handle = b"\x01" * 64
        t0 = time.monotonic()
        for i in range(200000):
            st, _, _ = c.ask("ipc_register", i, 512, payload=handle)
            if st == 0:
                ok += 1
            else:
                refused += 1
                if refused > 1000:  # the cap holds: no need to go on
                    break
        after = d.rss_kib()
        print(f"attack: IPC registrations from one client: {ok} accepted, {refused} refused "
              f"({time.monotonic() - t0:.1f} s); daemon RSS {before} -> {after} KiB (+{(after - before) / 1024:.1f} "
              f"MiB)", flush=True)
        if ok > 65536:
            fail(f"{ok} registrations accepted from one client (cap: 65536)")
        if after - before > 16 * 1024:
            fail(f"the daemon grew by {(after - before) / 1024:.1f} MiB")
        st = stats(c)
        if d.proc.poll() is not None:
            fail("the daemon died")
        print("quota_attack f13_ipc_register_flood: OK", flush=True)
    finally:
        d.stop()


def f14():
    if not ARGS.client or not ARGS.shim:
        fail("f14 needs --client and --shim")
    quota = 32 * MIB  # less than the program's 40 MiB device buffer
    d = dl.Daemon(extra=["--client-quota", str(quota), "--device-limit", "256M"])
    prog = None
    try:
        ready = os.path.join(d.dir, "ready")
        env = dict(os.environ, LD_PRELOAD=ARGS.shim, POOLSHIM_SOCKET=d.sock, POOLSHIM_DEVICE_SOURCE="daemon",
                   POOLSHIM_TEST_EXPECT="shim")
        out = open(os.path.join(d.dir, "client.out"), "w")
        prog = subprocess.Popen([ARGS.client, "--buffers", "1", "--ready", ready, "--hold"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        for _ in range(1500):
            if os.path.exists(ready) or prog.poll() is not None:
                break
            time.sleep(0.02)
        if not os.path.exists(ready):
            fail("the CUDA program did not get ready: " + open(os.path.join(d.dir, "client.out")).read())
        c = Client(d)
        dev = device_lent(c)
        s = stats(c)
        held = dev + s["lent"]
        print(f"a CUDA program with a 40 MiB device buffer under a client quota of {quota // MIB} MiB: device "
              f"{dev // MIB} MiB + pinned {s['lent'] // MIB} MiB lent by the daemon (goal: at most {quota // MIB})",
              flush=True)
        if held > quota:
            fail(f"{held // MIB} MiB lent to one process under a {quota // MIB} MiB client quota")
        if s["clients"] < 2:
            fail(f"the program is not a client of the daemon (clients={s['clients']}): the scenario did not reach it")
        if prog.poll() is not None:
            fail("the CUDA program ended: " + open(os.path.join(d.dir, "client.out")).read())
        print("quota_attack f14_device_quota: OK", flush=True)
    finally:
        if prog is not None:
            prog.kill()
            prog.wait()
        d.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["f2_keep_returned_slabs", "f2_keep_named_buffers", "f3_redeclare_any_memfd",
                                         "f8_quota_per_connection", "f12_client_detail", "f13_ipc_register_flood",
                                         "f14_device_quota", "f17_trim_other_uid"])
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--client", help="daemon_client_program (f14)")
    ap.add_argument("--shim", help="libpoolshim.so (f14)")
    ARGS = ap.parse_args()
    dl.ARGS = ARGS
    {"f2_keep_returned_slabs": f2, "f2_keep_named_buffers": f2_named, "f3_redeclare_any_memfd": f3, "f8_quota_per_connection": f8,
     "f12_client_detail": f12, "f13_ipc_register_flood": f13, "f14_device_quota": f14,
     "f17_trim_other_uid": f17}[ARGS.scenario]()

#!/usr/bin/env python3
"""poolshim-stats against a hostile stats file (issue #13, findings 7, 10 and 11).

usage: stats_hostile_test.py SCENARIO --tool POOLSHIM_STATS --gen STATS_HOSTILE_FILE
  f7   hostile counts: stacks declaring more frames than the depth cap, a header whose depth_cap
       lies, stacks sharing one arena range: each file is rejected with a one-line error naming
       the file and the field, exit status 1 (never 134), peak RSS under 20x the file + 64 MiB
       (printed as a ratio); `list` over a folder holding a hostile and a good file lists the good
       one and names the hostile one as skipped
  f10  the file's owner truncates and restores it over and over while the tool reads it: never a
       signal (SIGBUS was 135), only a report or a clean error ("truncated")
  f11  program path, command line and module paths with terminal escapes: `report` (text, with
       and without symbols) and `list` print no control character (ESC, BEL, CR, DEL, C1 CSI), and
       say them as \\xNN
Prints PASS/FAIL lines; exit status 0 when all passed."""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

MiB = 1024 * 1024
failures = []


def check(ok, what):
    print(("PASS: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures.append(what)


def gen(args, mode, out, *extra):
    subprocess.run([args.gen, mode, out, *extra], check=True)


def limit_memory():
    # A reader that allocates what the file declares would take ~6 GB of a shared machine:
    # capped, it gets bad_alloc instead (the finding's exit 134 before the fix).
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def run_tool(args, argv, env=None, memory_limit=False, timeout=30):
    e = dict(os.environ)
    e.pop("POOLSHIM_STATS_DIR", None)
    if env:
        e.update(env)
    return subprocess.run([args.tool, *argv], capture_output=True, timeout=timeout, env=e,
                          preexec_fn=limit_memory if memory_limit else None)


def f7(args, tmp):
    for mode, field in (("deep", "depth"), ("cap", "depth_cap"), ("shared", "depth")):
        path = os.path.join(tmp, f"poolshim-{os.getuid()}-1-{mode}.stats")
        gen(args, mode, path)
        size = os.path.getsize(path)
        # One child at a time: RUSAGE_CHILDREN's ru_maxrss is the largest of all waited children,
        # so each file's figure is measured in a fresh interpreter.
        probe = (
            "import resource,subprocess,sys\n"
            "def lim():\n"
            "    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
            "p = subprocess.run(sys.argv[1:], capture_output=True, preexec_fn=lim, timeout=60)\n"
            "sys.stdout.write('%d %d\\n' % (p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
            "sys.stdout.write(p.stderr.decode('utf-8', 'replace'))\n")
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "-c", probe, args.tool, "report", path], capture_output=True,
                             timeout=90, text=True).stdout
        secs = time.monotonic() - t0
        first, _, err = out.partition("\n")
        rc, rss_kib = (int(v) for v in first.split())
        rss = rss_kib * 1024
        print(f"{mode}: file {size} bytes, exit {rc}, peak RSS {rss / MiB:.1f} MiB = {rss / size:.1f}x the file "
              f"({secs:.2f} s); stderr: {err.strip()[:300]}", flush=True)
        check(rc == 1, f"f7 {mode}: exit status 1 (got {rc}; 134 is an uncaught bad_alloc)")
        lines = [l for l in err.splitlines() if l.strip()]
        check(len(lines) == 1 and path in lines[0] and field in lines[0],
              f"f7 {mode}: one line naming the file and the field {field}")
        check(rss < 20 * size + 64 * MiB, f"f7 {mode}: peak RSS {rss / MiB:.1f} MiB < 20x file + 64 MiB")
    # list over a folder: the hostile files are named as skipped, the good one is listed.
    good = os.path.join(tmp, f"poolshim-{os.getuid()}-2-good.stats")
    gen(args, "valid", good)
    p = run_tool(args, ["list", "--dir", tmp], memory_limit=True)
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    print(f"list: exit {p.returncode}\n{out}{err}", flush=True)
    check(p.returncode == 0, "f7 list: exit status 0")
    check("hostile_program" in out, "f7 list: the good file is listed")
    check(sum("skipped" in l and "-deep.stats" in l for l in err.splitlines()) == 1 and
          sum("skipped" in l and "-shared.stats" in l for l in err.splitlines()) == 1,
          "f7 list: each hostile file named once as skipped")


def f10(args, tmp):
    path = os.path.join(tmp, "big.stats")
    gen(args, "big", path)
    with open(path, "rb") as f:
        data = f.read()
    size = len(data)
    stop = threading.Event()

    def owner():
        fd = os.open(path, os.O_RDWR)
        try:
            while not stop.is_set():
                os.ftruncate(fd, 4096)  # the owner cuts the file...
                time.sleep(0.0005)
                os.pwrite(fd, data[4096:], 4096)  # ...and writes it back
                time.sleep(0.0005)
        finally:
            os.close(fd)

    t = threading.Thread(target=owner)
    t.start()
    runs, outcomes, signals = 0, {}, []
    deadline = time.monotonic() + 5
    try:
        while time.monotonic() < deadline:
            p = run_tool(args, ["report", "--no-symbols", path])
            runs += 1
            err = p.stderr.decode(errors="replace").strip()
            if p.returncode < 0 or p.returncode > 128:
                signals.append(p.returncode)
                key = f"signal {-p.returncode if p.returncode < 0 else p.returncode - 128}"
            elif p.returncode == 0:
                key = "report"
            else:
                key = "error: " + ("truncated" if "truncated" in err else err[:120])
            outcomes[key] = outcomes.get(key, 0) + 1
    finally:
        stop.set()
        t.join()
    print(f"{runs} runs on a {size}-byte file truncated and restored meanwhile: {outcomes}", flush=True)
    check(not signals, f"f10: no run killed by a signal (got {len(signals)}: {sorted(set(signals))})")
    check(all(k == "report" or k == "error: truncated" for k in outcomes),
          "f10: each run a report or a 'truncated' error")
    p = run_tool(args, ["report", "--no-symbols", path])
    check(p.returncode == 0, "f10: the restored file reads")


def f11(args, tmp):
    folder = os.path.join(tmp, "dir")
    os.mkdir(folder)
    module = os.path.join(tmp, "\x1b]0;owned\x07lib\x1b[2J.so")
    path = os.path.join(folder, f"poolshim-{os.getuid()}-3-1.stats")
    gen(args, "escapes", path, module)
    # A name with an escape in the folder too: list names it (not a stats file) on stderr.
    with open(os.path.join(folder, "poolshim-\x1b[31mx.stats"), "wb") as f:
        f.write(b"junk")
    runs = {
        "report": ["report", path],
        "report --no-symbols": ["report", "--no-symbols", path],
        "list": ["list", "--dir", folder],
    }
    bad = set(range(0x20)) - {0x0a} | {0x7f, 0x9b}
    for name, argv in runs.items():
        p = run_tool(args, argv)
        shown = p.stdout + p.stderr
        found = sorted({b for b in shown if b in bad} | ({0x9b} if b"\xc2\x9b" in shown else set()))
        print(f"{name}: exit {p.returncode}\n{shown.decode(errors='backslashreplace')}", flush=True)
        check(p.returncode == 0, f"f11 {name}: exit status 0")
        check(not found, f"f11 {name}: no control character on the terminal (found {[hex(b) for b in found]})")
        check(b"\\x1b" in shown, f"f11 {name}: escapes shown as \\xNN")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["f7", "f10", "f11"])
    ap.add_argument("--tool", required=True)
    ap.add_argument("--gen", required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="poolshim-sec-stats-") as tmp:
        {"f7": f7, "f10": f10, "f11": f11}[args.scenario](args, tmp)
    print("FAILED: " + "; ".join(failures) if failures else "all passed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

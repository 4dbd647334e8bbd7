#!/usr/bin/env python3
"""integration.lookup_replay: NVIDIA cudart 13.0's 440 cuGetProcAddress_v2 lookups through the shim.

Runs lookup_replay (lookup_replay.cpp) twice on the same libcuda.so.1 (LD_LIBRARY_PATH decides: the
simulator under ctest, the real driver in the bundle on a GPU machine): without the shim, and with
the shim preloaded (POOLSHIM_MODE=observe, so every call reaches the driver), then checks

  * every lookup of a base name the shim hooks (its hook rows, poolshim_hook_name) that the driver
    answers with a pointer is answered with a pointer into libpoolshim.so that carries the same
    symbol name as the driver's answer without the shim: the same ABI variant, old ones included;
  * each such wrapper, called once with harmless arguments, was counted by the shim under that
    variant's hook row and entered the driver's export of that name exactly once (the simulator's
    poolshim_sim_calls; skipped, with a note, on a driver without it);
  * every other lookup comes back identical (result, status, object and symbol) with and without
    the shim;
  * the shim counted no unknown lookup (lookups_unknown = 0).

With --hook-list (shim/intercept/hook_list.h), one more lookup per hook row is replayed after the
fixture's, of its base name at its own cudaVersion (flags 2 for a per-thread row): every variant the
shim lists, including those cudart 13.0 never asks for (cuMemAlloc@2000, ...), is then looked up,
wrapped, called and seen to reach its own export; the rows must be the shim's hook rows.

The shim is taken from LD_PRELOAD (ctest sets it; the bundle rewrites it to its own lib/), or from
--shim. Prints one summary line and exits 0, or lists every problem and exits 1.

usage: lookup_replay.py --program PATH --fixture TSV [--hook-list HOOK_LIST_H] [--shim LIBPOOLSHIM]
                        [--sim-answers FILE] [--keep DIR]
--sim-answers: the simulator's answers (the build writes them, lookup_answers_sim.txt): the
number of lookups the driver here answers differently is reported (information only).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile


def parse(text):
    rows, hooks, calls, counters, sim_calls = [], [], [], {}, None
    for line in text.splitlines():
        f = line.split("\t")
        if f[0] == "row" and len(f) == 9:
            rows.append(dict(order=f[1], symbol=f[2], version=f[3], flags=f[4], result=f[5], status=f[6],
                             object=f[7], name=f[8]))
        elif f[0] == "hook" and len(f) == 3:
            hooks.append(f[2])
        elif f[0] == "call" and len(f) == 8:
            calls.append(dict(order=f[1], symbol=f[2], name=f[3], result=f[4], sim=f[5], shim=f[6], verdict=f[7]))
        elif f[0] == "counters":
            for kv in f[1:]:
                k, v = kv.split("=", 1)
                counters[k] = int(v)
        elif f[0] == "sim_calls" and len(f) == 2:
            sim_calls = f[1] == "present"
    return rows, hooks, calls, counters, sim_calls


def base_name(export):
    """cuStreamBeginCapture_v2_ptsz -> cuStreamBeginCapture (what cuGetProcAddress is asked for)."""
    return re.sub(r"(_v\d+)?(_ptsz|_ptds)?$", "", export)


def run(program, fixture, env, extra):
    p = subprocess.run([program, fixture] + extra, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=120)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        raise SystemExit("FAIL: %s %s exited with %d" % (program, " ".join(extra), p.returncode))
    return p.stdout, p.stderr


def hook_list_rows(path):
    """X(id, export, "base", version, per_thread) rows of POOLSHIM_DRIVER_HOOKS."""
    rows = re.findall(r'X\((\w+),\s*(\w+),\s*"(\w+)",\s*(\d+),\s*(true|false)\)', open(path).read())
    return [dict(export=r[1], base=r[2], version=r[3], per_thread=r[4] == "true") for r in rows]


def key(r):
    return (r["order"], r["symbol"], r["version"], r["flags"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--program", required=True)
    ap.add_argument("--fixture", required=True)
    ap.add_argument("--shim")
    ap.add_argument("--hook-list")
    ap.add_argument("--sim-answers")
    ap.add_argument("--keep", help="write both runs' output into this folder")
    args = ap.parse_args()

    preload = [p for p in os.environ.get("LD_PRELOAD", "").replace(":", " ").split() if p]
    shim = args.shim or next((p for p in preload if os.path.basename(p) == "libpoolshim.so"), None)
    if not shim or not os.path.exists(shim):
        raise SystemExit("FAIL: no libpoolshim.so (pass --shim or preload it)")
    shim = os.path.abspath(shim)
    others = [p for p in preload if os.path.basename(p) != "libpoolshim.so"]

    base_env = dict(os.environ)
    base_env.pop("LD_PRELOAD", None)
    if others:
        base_env["LD_PRELOAD"] = ":".join(others)
    shim_env = dict(base_env)
    shim_env["LD_PRELOAD"] = ":".join([shim] + others)
    shim_env["POOLSHIM_MODE"] = "observe"
    shim_env.setdefault("POOLSHIM_SOCKET", "/nonexistent/poolshimd.sock")

    fixture = args.fixture
    listed = []
    if args.hook_list:
        listed = hook_list_rows(args.hook_list)
        if not listed:
            raise SystemExit("FAIL: no rows found in %s" % args.hook_list)
        tmp = tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False)
        tmp.write(open(args.fixture).read().rstrip("\n") + "\n")
        for i, h in enumerate(listed):
            tmp.write("h%d\t%s\t%s\t%d\n" % (i, h["base"], h["version"], 2 if h["per_thread"] else 0))
        tmp.close()
        fixture = tmp.name
    try:
        plain_out, _ = run(args.program, fixture, base_env, [])
        shim_out, shim_err = run(args.program, fixture, shim_env, ["--call"])
    finally:
        if fixture != args.fixture:
            os.unlink(fixture)
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        for name, text in (("without_shim.txt", plain_out), ("with_shim.txt", shim_out)):
            with open(os.path.join(args.keep, name), "w") as f:
                f.write(text)

    plain, _, _, _, _ = parse(plain_out)
    wrapped, hooks, calls, counters, sim_calls = parse(shim_out)
    problems = []
    fixture_rows = sum(1 for line in open(args.fixture) if line.strip() and not line.startswith("#"))
    if len(plain) != fixture_rows + len(listed) or len(wrapped) != fixture_rows + len(listed):
        problems.append("expected %d lookups, got %d without and %d with the shim" %
                        (fixture_rows + len(listed), len(plain), len(wrapped)))
    if not hooks:
        problems.append("the shim reported no hook rows (poolshim_hook_name): was it loaded?")
    if listed and [h["export"] for h in listed] != hooks:
        problems.append("%s lists %s; the shim reports %s" %
                        (args.hook_list, " ".join(h["export"] for h in listed), " ".join(hooks)))
    hooked = {base_name(h) for h in hooks}
    shim_object = os.path.basename(shim)

    n_hooked = n_hooked_ptr = n_unhooked = 0
    wrappers = set()  # export names of the wrappers handed out
    fixture_wrappers = set()
    listed_ok = 0
    for index, (a, b) in enumerate(zip(plain, wrapped)):
        from_list = index >= fixture_rows
        if from_list:
            h = listed[index - fixture_rows]
            where = "hook row %s (%s@%s flags %s)" % (h["export"], a["symbol"], a["version"], a["flags"])
            if a["name"] == "-":
                # Nothing to wrap: a driver without that variant (the simulator before it had them).
                print("note: %s: this driver has no such variant (CUresult %s, status %s)" %
                      (where, a["result"], a["status"]))
                continue
            if "+" in a["name"] or a["name"] == "?":
                print("note: %s: the driver answered an internal address (%s)" % (where, a["name"]))
            elif a["name"] != h["export"]:
                problems.append("%s: the driver answers %s for this row's own cudaVersion, not %s (wrong version "
                                "in the hook list?)" % (where, a["name"], h["export"]))
            if b["object"] != shim_object:
                problems.append("%s: NOT WRAPPED: the driver's %s:%s passed through" % (where, b["object"], b["name"]))
            elif b["name"] != h["export"]:
                problems.append("%s: WRONG ABI: the shim hands out its %s" % (where, b["name"]))
            else:
                listed_ok += 1
                wrappers.add(b["name"])
            continue
        where = "#%s %s@%s flags %s" % (a["order"], a["symbol"], a["version"], a["flags"])
        if key(a) != key(b):
            problems.append("%s: the two runs replayed different rows (%s)" % (where, b["symbol"]))
            continue
        if a["symbol"] in hooked:
            n_hooked += 1
            if (a["result"], a["status"]) != (b["result"], b["status"]):
                problems.append("%s: CUresult/status %s/%s without the shim, %s/%s with it" %
                                (where, a["result"], a["status"], b["result"], b["status"]))
            if a["name"] == "-":
                if b["name"] != "-":
                    problems.append("%s: NULL without the shim, %s:%s with it" % (where, b["object"], b["name"]))
                continue
            n_hooked_ptr += 1
            if b["object"] != shim_object:
                problems.append("%s: NOT WRAPPED: the driver's %s:%s passed through (the shim has no row for "
                                "this ABI variant)" % (where, b["object"], b["name"]))
            elif b["name"] != a["name"]:
                if "+" in a["name"] or a["name"] == "?":
                    # A driver that hands out an internal address (a real one may): the shim chose
                    # the wrapper by asking the driver for the same version; say which.
                    wrappers.add(b["name"])
                    print("note: %s: the driver answered an internal address (%s); the shim wrapped it as %s" %
                          (where, a["name"], b["name"]))
                else:
                    problems.append("%s: WRONG ABI: the driver answers %s, the shim hands out its %s" %
                                    (where, a["name"], b["name"]))
            else:
                wrappers.add(b["name"])
                fixture_wrappers.add(b["name"])
        else:
            n_unhooked += 1
            fa = (a["result"], a["status"], a["object"], a["name"])
            fb = (b["result"], b["status"], b["object"], b["name"])
            if fa != fb:
                problems.append("%s: not hooked, yet answered %s without the shim and %s with it" %
                                (where, "/".join(fa), "/".join(fb)))

    called = {}
    for c in calls:
        called[c["name"]] = c
        if c["verdict"] != "ok":
            problems.append("call of %s (lookup #%s %s): %s (%s, %s, CUresult %s)" %
                            (c["name"], c["order"], c["symbol"], c["verdict"], c["sim"], c["shim"], c["result"]))
    for w in sorted(wrappers - set(called)):
        problems.append("wrapper %s was handed out but never called" % w)
    reached = sum(1 for c in calls if c["verdict"] == "ok" and c["name"] in fixture_wrappers)
    reached_all = sum(1 for c in calls if c["verdict"] == "ok")

    unknown = counters.get("lookups_unknown")
    if unknown is None:
        problems.append("the shim's counters were not read (poolshim_get_counters)")
    elif unknown != 0:
        problems.append("lookups_unknown=%d: the shim met %d pointer(s) of hooked names it does not know" %
                        (unknown, unknown))

    if args.sim_answers and os.path.exists(args.sim_answers):
        sim_rows, _, _, _, _ = parse(open(args.sim_answers).read())
        sim_by_key = {key(r): (r["result"], r["status"], r["object"], r["name"]) for r in sim_rows}
        mine = plain[:fixture_rows]
        differ = sum(1 for r in mine if sim_by_key.get(key(r)) != (r["result"], r["status"], r["object"], r["name"]))
        print("note: %d of %d lookups answered differently from the simulator's answers (%s)" %
              (differ, len(mine), os.path.basename(args.sim_answers)))
    if sim_calls is False:
        print("note: this libcuda.so.1 has no poolshim_sim_calls (a real driver): which export each call "
              "reached is not checked, only the shim's count per variant")

    if problems:
        print("lookup_replay FAILED: %d problem(s):" % len(problems))
        for p in problems:
            print("  " + p)
        if shim_err.strip():
            print("shim run stderr:\n" + shim_err.rstrip())
        return 1
    print("replay: %d lookups, %d hooked (all wrapped, %d variants called and reached%s), %d unhooked identical, "
          "lookups_unknown=%d" % (fixture_rows, n_hooked, reached,
                                  "" if sim_calls else ", driver side not checked", n_unhooked, unknown))
    if listed:
        print("hook list: %d ABI variants, each looked up at its own cudaVersion and wrapped as itself; "
              "%d wrappers called and reached in all" % (listed_ok, reached_all))
    print("the fixture's hooked lookups answered with a pointer: %d, as the variants %s" %
          (n_hooked_ptr, " ".join(sorted(fixture_wrappers))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

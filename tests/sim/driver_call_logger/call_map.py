#!/usr/bin/env python3
"""Runs programs under the driver-call logger and compares driver-call maps (stdlib only).

`run` records a map, `compare` holds a recording to a fixture (tests/sim/fixtures/driver_call_map.txt)
phase by phase, `check` does both; the ctest driver_call_map_matches_fixture and scripts/gpu-check.sh
use it. `lookups` holds the sequence of cuGetProcAddress_v2 lookups a program's cudart makes to a
record of NVIDIA's (tests/sim/fixtures/cudart-13.0-lookups.tsv): the same (symbol, cudaVersion,
flags), in the same order (ctest sim.cudart_lookups_match_record). Map format: see the fixture's
header and tests/sim/driver_call_logger/calllog.cpp.
"""

import argparse
import difflib
import os
import re
import subprocess
import sys

# Entry points whose routing matters to poolshim: the driver functions DESIGN.md hooks, in every
# version and per-thread flavour (a recording that shows the legacy name being called is exactly
# what the comparison must catch). Everything else a cudart calls is compared only with --all.
HOOKED = re.compile(
    r"^cu(MemAlloc|MemAllocPitch|MemFree|MemAllocHost|MemHostAlloc|MemFreeHost"
    r"|MemHostGetDevicePointer|MemHostGetFlags|MemGetInfo|MemAllocManaged|MemAllocAsync|MemFreeAsync"
    r"|MemCreate|MemRelease|IpcGetMemHandle|IpcOpenMemHandle|IpcCloseMemHandle"
    r"|StreamCreate|StreamCreateWithPriority|StreamDestroy|CtxCreate|CtxDestroy"
    r"|DevicePrimaryCtxRetain|DevicePrimaryCtxRelease|DevicePrimaryCtxReset"
    r"|StreamBeginCapture|StreamEndCapture)(_v[0-9]+)?(_ptsz|_ptds)?$")
# The lookup machinery itself: a cudart may look symbols up eagerly or lazily, which says nothing
# about which entry point serves a runtime call.
LOOKUP = re.compile(r"^cuGetProcAddress(_v2)?$")


class MapError(Exception):
    pass


class ProcessMap:
    def __init__(self, name):
        self.name = name
        self.phases = []          # in order
        self.calls = {}           # phase -> list of (frozenset(alternatives), via, calls or None)
        self.lookups = []
        self.sequence = []        # (phase, via, symbol, version, flags), from `seq` lines


def parse_map(path):
    """Returns {process name: ProcessMap}. Several blocks of one process name are merged."""
    procs = {}
    current = None
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise MapError(f"cannot read {path}: {e}")
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        kind = words[0]
        where = f"{path}:{number}"
        if kind == "process":
            if len(words) != 2:
                raise MapError(f"{where}: expected 'process NAME'")
            current = procs.setdefault(words[1], ProcessMap(words[1]))
            continue
        if current is None:
            raise MapError(f"{where}: '{kind}' before any 'process' line")
        if kind == "end":
            current = None
        elif kind == "phase":
            if len(words) != 3:
                raise MapError(f"{where}: expected 'phase INDEX NAME'")
            if words[2] not in current.phases:
                current.phases.append(words[2])
                current.calls.setdefault(words[2], [])
        elif kind == "lookup":
            current.lookups.append(line)
        elif kind == "seq":
            # seq ORDER PHASE via=R version=V flags=F status=S name=NAME (NAME may be empty), or
            # seq ORDER PHASE dropped
            if len(words) == 4 and words[3] == "dropped":
                current.sequence.append((words[2], None, None, None, None))
                continue
            fields = dict(w.split("=", 1) for w in words[3:] if "=" in w)
            if len(words) < 7 or not {"via", "version", "flags", "name"} <= fields.keys():
                raise MapError(f"{where}: expected 'seq ORDER PHASE via=R version=V flags=F status=S name=NAME'")
            current.sequence.append((words[2], fields["via"], fields["name"], int(fields["version"]),
                                     int(fields["flags"])))
        elif kind == "call":
            if len(words) < 4 or not words[3].startswith("via="):
                raise MapError(f"{where}: expected 'call PHASE ENTRY[|ENTRY...] via=ROUTE [calls=N]'")
            phase, entries, via = words[1], frozenset(words[2].split("|")), words[3][4:]
            calls = None
            for w in words[4:]:
                if w.startswith("calls="):
                    calls = int(w[6:])
            if phase not in current.phases:
                raise MapError(f"{where}: call in phase '{phase}' that has no 'phase' line")
            current.calls[phase].append((entries, via, calls))
        else:
            raise MapError(f"{where}: unknown line kind '{kind}'")
    if not procs:
        raise MapError(f"{path}: no 'process' block (was the logger preloaded?)")
    return procs


def in_scope(entry, compare_all):
    if LOOKUP.match(entry):
        return False
    return compare_all or bool(HOOKED.match(entry))


def fmt(pairs):
    return "{" + ", ".join(f"{e} via={v}" for e, v in sorted(pairs)) + "}" if pairs else "{}"


def compare_maps(fixture, recorded, compare_all):
    """Returns (ok, report lines)."""
    ok = True
    out = []
    for pname, fproc in fixture.items():
        rproc = recorded.get(pname)
        if rproc is None:
            out.append(f"DIFF {pname}: process missing from the recording")
            ok = False
            continue
        for phase in fproc.phases:
            where = f"{pname}/{phase}"
            if phase not in rproc.phases:
                out.append(f"DIFF {where}: phase missing from the recording")
                ok = False
                continue
            expected = [(alts, via) for alts, via, _ in fproc.calls[phase]
                        if any(in_scope(a, compare_all) for a in alts)]
            got = {(e, via) for alts, via, _ in rproc.calls[phase] for e in alts
                   if in_scope(e, compare_all)}
            matched = set()
            missing = []
            for alts, via in expected:
                hits = {(e, v) for e, v in got if e in alts and v == via}
                if hits:
                    matched |= hits
                else:
                    missing.append("|".join(sorted(alts)) + f" via={via}")
            extra = got - matched
            if missing or extra:
                ok = False
                out.append(f"DIFF {where}: expected {{{', '.join(missing)}}} not called; "
                           f"unexpected {fmt(extra)}; recorded {fmt(got)}")
            else:
                out.append(f"ok   {where}: {fmt(got)}")
        for phase in rproc.phases:
            if phase not in fproc.phases:
                got = {(e, via) for alts, via, _ in rproc.calls[phase] for e in alts
                       if in_scope(e, compare_all)}
                out.append(f"note {pname}/{phase}: not asserted by the fixture; recorded {fmt(got)}")
    for pname in recorded:
        if pname not in fixture:
            out.append(f"note {pname}: process not in the fixture")
    return ok, out


def run_under_logger(args):
    """Runs the command under the logger; returns its exit status."""
    if not args.command:
        raise MapError("no command given after --")
    env = dict(os.environ)
    if args.logger:
        env["LD_PRELOAD"] = os.path.abspath(args.logger) + (
            ":" + env["LD_PRELOAD"] if env.get("LD_PRELOAD") else "")
    if args.lib_dir:
        env["LD_LIBRARY_PATH"] = os.path.abspath(args.lib_dir) + (
            ":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    env["POOLSHIM_CALLLOG_OUT"] = os.path.abspath(args.out)
    if getattr(args, "sequence", False):
        env["POOLSHIM_CALLLOG_SEQUENCE"] = "1"
    env.pop("POOLSHIM_CALLLOG_PROCESS", None)
    try:
        os.unlink(args.out)   # the logger appends (child processes add their own blocks)
    except FileNotFoundError:
        pass
    proc = subprocess.run(args.command, env=env, timeout=args.timeout)
    if args.header and os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as f:
            body = f.read()
        with open(args.out, "w", encoding="utf-8") as f:
            f.write("".join(h + "\n" for h in args.header) + body)
    if proc.returncode != 0:
        print(f"call_map: {' '.join(args.command)} exited with status {proc.returncode}", file=sys.stderr)
    return proc.returncode


def significant(path):
    with open(path, encoding="utf-8") as f:
        return [l for l in f.read().splitlines() if l.strip() and not l.startswith("#")]


def cmd_run(args):
    rc = run_under_logger(args)
    if rc != 0:
        return 1
    if not os.path.exists(args.out):
        print(f"call_map: no map was written to {args.out} (was the logger preloaded?)", file=sys.stderr)
        return 1
    if args.expect_exact:
        want, got = significant(args.expect_exact), significant(args.out)
        if want != got:
            sys.stdout.writelines(l + "\n" for l in difflib.unified_diff(
                want, got, args.expect_exact, args.out, lineterm=""))
            print("call_map: the recorded map differs from the expected one", file=sys.stderr)
            return 1
        print(f"call_map: {args.out} matches {args.expect_exact}")
    return 0


def report(args, ok, lines):
    text = "\n".join(lines) + "\n" + ("MATCH\n" if ok else "MISMATCH\n")
    sys.stdout.write(text)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(text)


def cmd_compare(args):
    ok, lines = compare_maps(parse_map(args.fixture), parse_map(args.recorded), args.all)
    report(args, ok, lines)
    return 0 if ok else 1


def cmd_check(args):
    fixture = parse_map(args.fixture)   # fail on a bad fixture before running anything
    if run_under_logger(args) != 0:
        return 1
    ok, lines = compare_maps(fixture, parse_map(args.out), args.all)
    report(args, ok, lines)
    if not ok:
        print(f"call_map: {args.out} does not match {args.fixture}. If the fixture is a GPU recording, "
              "the simulator's cudart must change; see tests/sim/fixtures/README.md", file=sys.stderr)
    return 0 if ok else 1


EMPTY = "(empty)"   # how the record writes the empty symbol


def read_record(path):
    """The record's lookups: [(symbol, version, flags)] in order ('order<TAB>symbol<TAB>version<TAB>flags')."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise MapError(f"cannot read {path}: {e}")
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 4 or not cols[0].isdigit() or not cols[2].isdigit() or not cols[3].isdigit():
            raise MapError(f"{path}:{number}: expected 'order<TAB>symbol<TAB>cudaVersion<TAB>flags'")
        if int(cols[0]) != len(rows) + 1:
            raise MapError(f"{path}:{number}: order {cols[0]}, expected {len(rows) + 1}")
        rows.append(("" if cols[1] == EMPTY else cols[1], int(cols[2]), int(cols[3])))
    return rows


def lookup_line(row):
    symbol, version, flags = row
    return f"{symbol or EMPTY}\t{version}\t{flags}"


def compare_lookups(record, made):
    """Returns (ok, report lines): `made` must be `record`, element for element."""
    from collections import Counter
    missing = Counter(record) - Counter(made)
    extra = Counter(made) - Counter(record)
    same_order = record == made
    if same_order:
        order = "order identical"
    elif not missing and not extra:
        order = "order differs"
    else:
        order = "sequences differ"
    out = [f"lookups: {len(made)} made, {len(record)} in the record, {sum(missing.values())} missing, "
           f"{sum(extra.values())} extra, {order}"]
    if not same_order:
        for row in sorted(missing):
            out.append(f"missing: {lookup_line(row)} (x{missing[row]})")
        for row in sorted(extra):
            out.append(f"extra:   {lookup_line(row)} (x{extra[row]})")
        out.extend(difflib.unified_diff([lookup_line(r) for r in record], [lookup_line(r) for r in made],
                                        "record", "made", lineterm="", n=2))
    return same_order, out


def cmd_lookups(args):
    record = read_record(args.record)
    if args.recorded:
        path = args.recorded
    else:
        if not args.out:
            raise MapError("lookups: give --recorded MAP, or --out MAP and a program to run")
        args.sequence = True
        if run_under_logger(args) != 0:
            return 1
        path = args.out
    procs = parse_map(path)
    proc = procs.get(args.process)
    if proc is None:
        raise MapError(f"{path}: no process '{args.process}'")
    if not proc.sequence:
        raise MapError(f"{path}: no 'seq' lines (the logger records them with POOLSHIM_CALLLOG_SEQUENCE=1)")
    if any(via is None for _, via, _, _, _ in proc.sequence):
        raise MapError(f"{path}: the logger's tables overflowed; some lookups were not recorded")
    made = [(name, version, flags) for _, via, name, version, flags in proc.sequence if via == args.via]
    ok, lines = compare_lookups(record, made)
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(text)
    if not ok:
        print(f"call_map: the {args.via} lookups in {path} are not those of {args.record}", file=sys.stderr)
    return 0 if ok else 1


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def add_run_args(sp):
        sp.add_argument("--out", required=True, help="map file to write (removed first)")
        sp.add_argument("--logger", help="libpoolshim_calllog.so to preload")
        sp.add_argument("--lib-dir", help="directory put first on LD_LIBRARY_PATH (e.g. the simulator)")
        sp.add_argument("--header", action="append", default=[], help="comment line to put on top of the map")
        sp.add_argument("--timeout", type=float, default=240)
        sp.add_argument("command", nargs=argparse.REMAINDER, help="-- program and arguments")

    r = sub.add_parser("run", help="record a map")
    add_run_args(r)
    r.add_argument("--expect-exact", help="fail unless the map equals this file (comments ignored)")
    c = sub.add_parser("compare", help="compare a recorded map with a fixture")
    c.add_argument("fixture")
    c.add_argument("recorded")
    c.add_argument("--all", action="store_true", help="compare every entry point, not only the hooked ones")
    c.add_argument("--report", help="also write the report here")
    k = sub.add_parser("check", help="record a map and compare it with a fixture")
    add_run_args(k)
    k.add_argument("--fixture", required=True)
    k.add_argument("--all", action="store_true")
    k.add_argument("--report")

    lk = sub.add_parser("lookups", help="compare the lookups a program makes with a record (tsv)")
    lk.add_argument("--record", required=True, help="order<TAB>symbol<TAB>cudaVersion<TAB>flags rows")
    lk.add_argument("--recorded", help="compare this map (recorded with POOLSHIM_CALLLOG_SEQUENCE=1) "
                    "instead of running a program")
    lk.add_argument("--out", help="map file to write (removed first)")
    lk.add_argument("--logger", help="libpoolshim_calllog.so to preload")
    lk.add_argument("--lib-dir", help="directory put first on LD_LIBRARY_PATH (e.g. the simulator)")
    lk.add_argument("--header", action="append", default=[], help="comment line to put on top of the map")
    lk.add_argument("--timeout", type=float, default=240)
    lk.add_argument("--process", default="main", help="process block to compare (default main)")
    lk.add_argument("--via", default="cuGetProcAddress_v2", help="lookup route to compare")
    lk.add_argument("--report", help="also write the summary here")
    lk.add_argument("command", nargs=argparse.REMAINDER, help="-- program and arguments")

    args = p.parse_args(argv)
    if getattr(args, "command", None) and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    try:
        return {"run": cmd_run, "compare": cmd_compare, "check": cmd_check,
                "lookups": cmd_lookups}[args.cmd](args)
    except MapError as e:
        print(f"call_map: {e}", file=sys.stderr)
        return 2
    except subprocess.TimeoutExpired as e:
        print(f"call_map: timed out: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

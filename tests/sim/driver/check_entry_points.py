#!/usr/bin/env python3
"""Checks that tests/sim/driver/entry_points.inc lists every ABI variant of every name it knows.

For each base name N that entry_points.inc has at least one row for, the expected rows are:
  - the versions of N in cudaTypedefs.h: `PFN_<N>_v<version>` (legacy stream) and
    `PFN_<N>_v<version>_ptds|_ptsz` (per-thread default stream), including the old ones inside
    `#if defined(__CUDA_API_VERSION_INTERNAL)`;
  - the export of each version, from the toolkit's stub libcuda.so (`nm -D --defined-only`): the
    exports matching `N(_v[0-9])?` sorted (N, N_v2, N_v3, ...) belong to the legacy versions
    sorted ascending; the exports matching `N(_v[0-9])?(_ptds|_ptsz)` sorted likewise belong to
    the per-thread versions sorted ascending.
When the stub library is absent the export part is skipped (with a note) and the versions are
still checked. Prints one summary line; exits 1 listing each missing, extra or mis-versioned row.

Usage: check_entry_points.py --typedefs cudaTypedefs.h [--stub libcuda.so] [--table entry_points.inc]
"""
import argparse
import os
import re
import subprocess
import sys

ROW = re.compile(r'^\s*POOLSHIM_SIM_EP\(\s*"([A-Za-z0-9_]+)"\s*,\s*(\d+)\s*,\s*([01])\s*,\s*([A-Za-z0-9_]+)\s*\)')
PFN = re.compile(r'\(\s*CUDAAPI\s*\*\s*PFN_([A-Za-z0-9]+)_v(\d+)(_ptds|_ptsz)?\s*\)')


def parse_table(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if "POOLSHIM_SIM_EP(" not in line or line.lstrip().startswith("//"):
                continue
            m = ROW.match(line)
            if not m:
                raise SystemExit(f"{path}:{lineno}: cannot parse row: {line.strip()}")
            rows.append((m.group(1), int(m.group(2)), int(m.group(3)), m.group(4), lineno))
    return rows


def parse_typedefs(path):
    versions = {}  # base -> {per_thread: set(version)}
    with open(path, encoding="utf-8") as f:
        for m in PFN.finditer(f.read()):
            base, ver, pt = m.group(1), int(m.group(2)), 1 if m.group(3) else 0
            versions.setdefault(base, {0: set(), 1: set()})[pt].add(ver)
    return versions


def stub_exports(path):
    out = subprocess.run(["nm", "-D", "--defined-only", path], check=True, capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in "TtWi":
            names.add(parts[2])
    return names


def variant_key(export, base):
    """(per_thread, n) for export = base[_v<n>][_ptds|_ptsz], or None."""
    m = re.fullmatch(re.escape(base) + r"(?:_v([0-9]))?(_ptds|_ptsz)?", export)
    if not m:
        return None
    return (1 if m.group(2) else 0, int(m.group(1)) if m.group(1) else 1)


def expected_rows(base, typedefs, exports):
    """{(version, per_thread): export or None}, plus problems that are the headers' own."""
    problems = []
    vers = typedefs.get(base, {0: set(), 1: set()})
    exp = {}
    for pt in (0, 1):
        vs = sorted(vers[pt])
        if exports is None:
            for v in vs:
                exp[(v, pt)] = None
            continue
        keyed = [(variant_key(e, base), e) for e in exports]
        ex = [e for k, e in sorted((k[1], e) for k, e in keyed if k is not None and k[0] == pt)]
        if len(ex) != len(vs):
            problems.append(f"{base}: cudaTypedefs.h has {len(vs)} {'per-thread' if pt else 'legacy'} versions "
                            f"{vs} but the stub exports {ex}; cannot pair them")
        for v, e in zip(vs, ex):
            exp[(v, pt)] = e
        for v in vs[len(ex):]:
            exp[(v, pt)] = None
    return exp, problems


def check(table, typedefs_path, stub_path):
    rows = parse_table(table)
    typedefs = parse_typedefs(typedefs_path)
    exports = None
    if stub_path and os.path.exists(stub_path):
        exports = stub_exports(stub_path)
    else:
        print(f"note: stub library {stub_path or '(none given)'} not found; export names not checked")

    errors = []
    seen = {}
    for base, ver, pt, fn, lineno in rows:
        key = (base, ver, pt)
        if key in seen:
            errors.append(f"duplicate row {base} v{ver} {'per-thread' if pt else 'legacy'} "
                          f"(lines {seen[key]} and {lineno})")
        seen[key] = lineno

    bases = []
    for r in rows:
        if r[0] not in bases:
            bases.append(r[0])
    variants = 0
    exports_seen = {}
    for base in bases:
        have = {(ver, pt): (fn, lineno) for b, ver, pt, fn, lineno in rows if b == base}
        if base not in typedefs:
            errors.append(f"{base}: not in cudaTypedefs.h (unknown name)")
            continue
        exp, problems = expected_rows(base, typedefs, exports)
        errors.extend(problems)
        variants += len(exp)
        for (ver, pt), export in sorted(exp.items()):
            kind = "per-thread" if pt else "legacy"
            if (ver, pt) not in have:
                other = [v for (v, p) in have if p == pt and v not in {vv for (vv, pp) in exp if pp == pt}]
                hint = f" (table has it at {other})" if other else ""
                errors.append(f"missing {kind} variant {base} v{ver} -> {export or '?'}{hint}")
                continue
            fn, lineno = have[(ver, pt)]
            if export is not None and fn != export:
                errors.append(f"{table}:{lineno}: {base} v{ver} {kind} is {fn}, the driver exports {export}")
        for (ver, pt), (fn, lineno) in sorted(have.items()):
            if (ver, pt) not in exp:
                errors.append(f"{table}:{lineno}: extra or mis-versioned row {base} v{ver} "
                              f"{'per-thread' if pt else 'legacy'} ({fn}); cudaTypedefs.h has "
                              f"{sorted(v for (v, p) in exp if p == pt)}")
        for (ver, pt), (fn, lineno) in have.items():
            if fn in exports_seen:
                errors.append(f"{table}:{lineno}: export {fn} used by two rows ({exports_seen[fn]} and {base} v{ver})")
            exports_seen[fn] = f"{base} v{ver}"
    ok = not errors
    print(f"entry_points.inc: {len(bases)} names, {len(rows)} rows, {variants} variants expected "
          f"(cudaTypedefs.h{'' if exports is None else ' + stub exports'}), "
          f"{'ok' if ok else f'{len(errors)} problem(s)'}")
    for e in errors:
        print("  " + e)
    return ok


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", default=os.path.join(here, "entry_points.inc"))
    ap.add_argument("--typedefs", required=True, help="cudaTypedefs.h of the CUDA toolkit")
    ap.add_argument("--stub", help="the toolkit's stubs/libcuda.so (optional)")
    ap.add_argument("--drop-row", metavar="EXPORT",
                    help="self-test: check a copy of the table without the row of EXPORT; "
                         "succeeds only if the check then fails naming that export")
    args = ap.parse_args()
    if args.drop_row:
        import tempfile
        with open(args.table, encoding="utf-8") as f:
            lines = f.readlines()
        kept = [l for l in lines if not re.search(r",\s*" + re.escape(args.drop_row) + r"\s*\)", l)]
        if len(kept) != len(lines) - 1:
            print(f"self-test: no single row with export {args.drop_row}")
            return 1
        with tempfile.TemporaryDirectory() as d:
            copy = os.path.join(d, "entry_points.inc")
            with open(copy, "w", encoding="utf-8") as f:
                f.writelines(kept)
            import io
            import contextlib
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                ok = check(copy, args.typedefs, args.stub)
        print(buf.getvalue(), end="")
        caught = not ok and args.drop_row in buf.getvalue()
        print(f"self-test: removing {args.drop_row} {'was caught' if caught else 'was NOT caught'}")
        return 0 if caught else 1
    return 0 if check(args.table, args.typedefs, args.stub) else 1


if __name__ == "__main__":
    sys.exit(main())

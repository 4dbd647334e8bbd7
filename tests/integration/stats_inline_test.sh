#!/usr/bin/env bash
# Inlined frames, exact: stats_inline_program (inner inlined into middle inlined into outer, middle
# called from two lines) under the shim with POOLSHIM_STATS=native. poolshim-stats' JSON must give
# every frame the function, file and line that `llvm-addr2line -i -f -C` gives for its address
# (each return address expands to the inlined functions it lies in, innermost first), and the two
# calls of middle must stay two sites with their own bytes. LLVM's addr2line, not binutils': the
# latter (2.40) names the innermost inlined frame by the enclosing symbol. Skipped (77) without it.
# usage: stats_inline_test.sh --shim libpoolshim.so --program stats_inline_program --stats poolshim-stats
set -u
name=stats_inline_test
source "$(dirname "$0")/stats_script_start.sh"
addr2line=$(command -v llvm-addr2line || compgen -c llvm-addr2line- | sort -V | tail -1)
if [[ -z $addr2line ]]; then
  echo "stats_inline_test: SKIP: no llvm-addr2line to compare with"
  exit 77
fi
dir=$(mktemp -d /tmp/poolshim-stats-inline-XXXXXX)
trap 'rm -rf "$dir"' EXIT
out=$(env LD_PRELOAD="$shim" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$dir" "$program" 2>&1) ||
  fail "the program failed: $out"
"$stats" report --dir "$dir" --format json --top 0 >"$dir/report.json" || fail "report"
python3 - "$dir/report.json" "$addr2line" <<'PY' || fail "inlined frames"
import json, os, re, subprocess, sys
report = json.load(open(sys.argv[1]))
MiB = 1 << 20
base = os.path.basename
problems = []

# Every frame against llvm-addr2line -i: frames that share a pc are one return address and the
# inlined functions it lies in, innermost first, exactly what addr2line -i prints for that address.
checked = 0
for s in report["sites"]:
    frames = s["frames"]
    i = 0
    while i < len(frames):
        j = i
        while j < len(frames) and frames[j]["pc"] == frames[i]["pc"]:
            j += 1
        group, i = frames[i:j], j
        f = group[0]
        if not f["module"].startswith("/") or not os.path.isfile(f["module"]) or not f["function"]:
            continue
        out = subprocess.run([sys.argv[2], "-i", "-f", "-C", "-e", f["module"], hex(f["offset"] - 1)],
                             capture_output=True, text=True, check=True).stdout.splitlines()
        want = []
        for fn, where in zip(out[0::2], out[1::2]):
            file, _, line = re.sub(r" \(discriminator \d+\)$", "", where).rpartition(":")
            want.append((fn, base(file), int(line) if line.isdigit() else 0))
        if want and want[0][1] == "??":
            continue  # no line information: nothing to compare
        got = [(g["function"], base(g["file"]), g["line"]) for g in group]
        checked += 1
        if got != want:
            problems.append(f"site {s['id']} pc {f['pc']:#x} ({base(f['module'])}+{f['offset']:#x}):\n"
                            f"    poolshim-stats {got}\n    addr2line -i   {want}")
for p in problems:
    print("mismatch:", p)
assert not problems, f"{len(problems)} of {checked} return addresses differ from addr2line -i"
print(f"{checked} return addresses: every frame as addr2line -i gives it")

# The two calls of the inlined middle: two sites, each with its own bytes and its own line in outer.
src_path = next(f["file"] for s in report["sites"] for f in s["frames"]
                if f["file"].endswith("stats_inline_program.cpp"))
src = open(src_path).read().splitlines()
mark = lambda m: next(n + 1 for n, l in enumerate(src) if "mark: " + m in l)
sites = [s for s in report["sites"] if any("inner" in f["function"] for f in s["frames"])]
assert len(sites) == 2, [(s["bytes_allocated"], [f["function"] for f in s["frames"]]) for s in sites]
for s, size, call in zip(sorted(sites, key=lambda s: s["bytes_allocated"]), (MiB, 2 * MiB),
                         ("outer's first call", "outer's second call")):
    assert s["allocs"] == 1 and s["bytes_allocated"] == size, (s["allocs"], s["bytes_allocated"])
    names = [f["function"] for f in s["frames"]]
    k = next(n for n, name in enumerate(names) if "inner" in name)
    chain = [(f["function"].split("::")[-1].split("(")[0], f["line"]) for f in s["frames"][k:k + 3]]
    want = [("inner", mark("inner's call")), ("middle", mark("middle's call")), ("outer", mark(call))]
    assert chain == want, (chain, want)
    assert len({f["pc"] for f in s["frames"][k:k + 3]}) == 1, "one return address for the three"
    print(f"{size // MiB} MiB: " + " <- ".join(f"{n}:{l}" for n, l in chain))
PY
echo "stats_inline_test: OK"

#!/usr/bin/env bash
# Call-site statistics end to end: stats_sites_program under the shim with POOLSHIM_STATS=native,
# then poolshim-stats' JSON must name exactly its call sites (function and line) with exact bytes,
# shares of the peak and leaks — after a clean exit, and after kill -9 mid-run. Also the text and
# collapsed formats, POOLSHIM_STATS=python in a program without CPython (native frames, one warning),
# and clear errors for a truncated, foreign and newer-version file.
# usage: stats_test.sh --shim libpoolshim.so --program stats_sites_program --stats poolshim-stats
set -u
shim="" program="" stats=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --shim) shim=$2; shift 2 ;;
    --program) program=$2; shift 2 ;;
    --stats) stats=$2; shift 2 ;;
    *) echo "stats_test: unknown option $1" >&2; exit 2 ;;
  esac
done
fail() { echo "stats_test: FAIL: $*" >&2; exit 1; }
dir=$(mktemp -d /tmp/poolshim-stats-XXXXXX)
trap 'pkill -9 -f -- "$program --hold" 2>/dev/null; rm -rf "$dir"' EXIT
# exec: run is only called in subshells ($(...) and &), so a background pid is the program itself.
run() { exec env LD_PRELOAD="$shim" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$dir" "$@"; }

check() {  # check JSON_FILE STATE PEAK_LIVE_MIB: the sites and figures the program promises
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
state, peak_site_live = sys.argv[2], int(sys.argv[3])
MiB, KiB = 1 << 20, 1 << 10
def site(fn):
    named = lambda f: fn + "(" in f["function"] or f["function"].endswith(fn)
    found = [s for s in report["sites"] if any(named(f) for f in s["frames"][:3])]
    assert len(found) == 1, f"{fn}: {len(found)} sites"
    s = found[0]
    frame = next(f for f in s["frames"][:3] if named(f))
    assert frame["file"].endswith("stats_sites_program.cpp") and frame["line"] > 0, frame
    return s
want = {  # function: allocs, bytes allocated, live bytes, bytes at the process peak
    "site_pinned": (1, 64 * KiB, 64 * KiB, 64 * KiB),
    "site_leak": (3, 3 * MiB, 3 * MiB, 3 * MiB),
    "site_temp": (1, 2 * MiB, 0, 0),
    "site_peak": (1, 4 * MiB, peak_site_live * MiB, 4 * MiB),
}
for fn, (allocs, total, live, at_peak) in want.items():
    s = site(fn)
    got = (s["allocs"], s["bytes_allocated"], s["live_bytes"], s["bytes_at_peak"])
    assert got == (allocs, total, live, at_peak), f"{fn}: got {got}, want {(allocs, total, live, at_peak)}"
    print(f"{fn}: allocs {allocs}, total {total}, live {live}, at peak {at_peak}")
# Temporary: freed before the thread allocated anything else. site_temp's block always; site_peak's
# too after a clean exit (main frees it next); site_leak's never (each is followed by another).
assert site("site_temp")["temporary"] == 1, "site_temp's block was freed before the next allocation"
assert site("site_peak")["temporary"] == (1 if state == "exited" else 0), site("site_peak")["temporary"]
assert site("site_leak")["temporary"] == 0
assert report["peak_bytes"] == 64 * KiB + 7 * MiB, report["peak_bytes"]
assert report["state"] == state, report["state"]
leaked = 64 * KiB + 3 * MiB + peak_site_live * MiB
assert report["live_bytes"] == leaked, (report["live_bytes"], leaked)
print(f"state {state}, peak {report['peak_bytes']}, live {report['live_bytes']}: as the program promises")
PY
}

# A clean exit.
out=$(run "$program") || fail "the program failed: $out"
"$stats" report --dir "$dir" --format json --top 0 >"$dir/clean.json" || fail "report"
check "$dir/clean.json" exited 0 || fail "clean run"
"$stats" report --dir "$dir" --top 4 | tee "$dir/clean.txt"
grep -q "site_leak" "$dir/clean.txt" || fail "the text report lacks site_leak"
awk 'length > 100 { bad = 1 } END { exit bad }' "$dir/clean.txt" || echo "stats_test: note: lines over 100 columns"
"$stats" report --dir "$dir" --format collapsed --top 0 | grep -q "main;.*site_peak().*;cudaMalloc 4194304" ||
  fail "collapsed stacks"
rm -f "$dir"/*.stats

# kill -9 mid-run: site_peak's block is still allocated when the process dies.
run "$program" --hold >"$dir/hold.out" 2>&1 &
pid=$!
for _ in $(seq 500); do grep -q ready "$dir/hold.out" && break; sleep 0.01; done
kill -9 $pid; wait $pid 2>/dev/null
"$stats" list --dir "$dir" | grep -q "^$pid .*killed" || fail "list does not show the killed process"
"$stats" report "$pid" --dir "$dir" --format json --top 0 >"$dir/killed.json" || fail "report of the killed process"
check "$dir/killed.json" killed 4 || fail "killed run"

# POOLSHIM_STATS=python in a program that runs no CPython: one warning, the same exact native sites.
rm -f "$dir"/*.stats
out=$(env LD_PRELOAD="$shim" POOLSHIM_STATS=python POOLSHIM_STATS_DIR="$dir" "$program" 2>&1) ||
  fail "the program failed in python mode: $out"
[[ $(grep -c "runs no CPython interpreter: native frames only" <<<"$out") == 1 ]] ||
  fail "python mode without CPython: not exactly one warning: $out"
"$stats" report --dir "$dir" --format json --top 0 >"$dir/python-mode.json" || fail "report (python mode)"
check "$dir/python-mode.json" exited 0 || fail "python mode without CPython: native sites"

# Clear errors.
f=$(ls "$dir"/*.stats)
head -c 100 "$f" >"$dir/poolshim-0-1-1.stats"
msg=$("$stats" report "$dir/poolshim-0-1-1.stats" 2>&1) && fail "a truncated file was read"
echo "truncated: $msg"; [[ $msg == *truncated* ]] || fail "truncated: $msg"
head -c 4096 /dev/urandom >"$dir/poolshim-0-2-2.stats"
msg=$("$stats" report "$dir/poolshim-0-2-2.stats" 2>&1) && fail "a foreign file was read"
echo "foreign: $msg"; [[ $msg == *"not a poolshim stats file"* ]] || fail "foreign: $msg"
cp "$f" "$dir/poolshim-0-3-3.stats"
printf '\x63' | dd of="$dir/poolshim-0-3-3.stats" bs=1 seek=8 conv=notrunc status=none  # version 99
msg=$("$stats" report "$dir/poolshim-0-3-3.stats" 2>&1) && fail "a newer file was read"
echo "newer: $msg"; [[ $msg == *newer* ]] || fail "newer: $msg"
echo "stats_test: OK"

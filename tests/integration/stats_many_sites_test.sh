#!/usr/bin/env bash
# More call sites than a thread's shard holds, from two threads at once (stats_many_sites_program):
# the report must give each of the 100 sites its exact allocations, bytes and live bytes, so shard
# entries that collide fold into the shared counters without losing or doubling a count.
# usage: stats_many_sites_test.sh --shim libpoolshim.so --program stats_many_sites_program --stats poolshim-stats
set -u
shim="" program="" stats=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --shim) shim=$2; shift 2 ;;
    --program) program=$2; shift 2 ;;
    --stats) stats=$2; shift 2 ;;
    *) echo "stats_many_sites_test: unknown option $1" >&2; exit 2 ;;
  esac
done
fail() { echo "stats_many_sites_test: FAIL: $*" >&2; exit 1; }
dir=$(mktemp -d /tmp/poolshim-many-sites-XXXXXX)
trap 'rm -rf "$dir"' EXIT
out=$(env LD_PRELOAD="$shim" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$dir" "$program" 2>&1) || fail "program: $out"
[[ $out == *"sites done"* ]] || fail "program: $out"
"$stats" report --dir "$dir" --format json --top 0 >"$dir/report.json" || fail "report"
python3 - "$dir/report.json" <<'PY' || fail "per-site figures"
import json, re, sys
r = json.load(open(sys.argv[1]))
got = {}
for s in r["sites"]:
    names = [re.search(r"site_(\d+)\(", f["function"]) for f in s["frames"][:5]]
    n = next((int(m.group(1)) for m in names if m), None)
    assert n is not None, f"a site outside site_N: {[f['function'] for f in s['frames'][:4]]}"
    a = got.setdefault(n, [0, 0, 0])
    a[0] += s["allocs"]; a[1] += s["bytes_allocated"]; a[2] += s["live_bytes"]
assert sorted(got) == list(range(100)), sorted(set(range(100)) - set(got))
for n in range(100):
    count, size = n % 3 + 1, (n % 5 + 1) * 4096
    want = [2 * count, 2 * count * size, 2 * size if n % 2 == 0 else 0]
    assert got[n] == want, f"site_{n}: got {got[n]}, want {want}"
total = sum(2 * (n % 3 + 1) for n in range(100))
assert sum(k["allocs"] for k in r["kinds"]) == total, r["kinds"]
print(f"100 sites x 2 threads: exact ({total} allocations)")
PY
echo "stats_many_sites_test: OK"

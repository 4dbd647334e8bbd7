#!/usr/bin/env bash
# More call sites than a thread's shard holds, from two threads at once (stats_many_sites_program):
# the report must give each of the 100 sites its exact allocations, bytes and live bytes, so shard
# entries that collide fold into the shared counters without losing or doubling a count.
# usage: stats_many_sites_test.sh --shim libpoolshim.so --program stats_many_sites_program --stats poolshim-stats
set -u
name=stats_many_sites_test
source "$(dirname "$0")/stats_script_start.sh"
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
# Collapsed stacks feed a flame graph, read as the whole picture: without --top they hold every
# site (cut to the text report's 10 they left 90 of these out without a word), and their figures
# add up to the JSON report's; --top given still cuts.
"$stats" report --dir "$dir" --format collapsed >"$dir/peak.folded" || fail "collapsed"
"$stats" report --dir "$dir" --format collapsed --sort count >"$dir/count.folded" || fail "collapsed --sort count"
"$stats" report --dir "$dir" --format collapsed --top 5 >"$dir/top5.folded" || fail "collapsed --top 5"
python3 - "$dir/report.json" "$dir/peak.folded" "$dir/count.folded" "$dir/top5.folded" <<'PY' || fail "collapsed stacks"
import json, re, sys
r = json.load(open(sys.argv[1]))
def folded(path):
    out = []
    for line in open(path).read().splitlines():
        stack, value = line.rsplit(" ", 1)
        out.append((stack.split(";"), int(value)))
    return out
peak, count, top5 = folded(sys.argv[2]), folded(sys.argv[3]), folded(sys.argv[4])
for name, lines in (("peak", peak), ("count", count)):
    assert len(lines) == len(r["sites"]), f"{name}: {len(lines)} lines for the JSON's {len(r['sites'])} sites"
    got = {int(m.group(1)) for frames, _ in lines for f in frames for m in [re.search(r"site_(\d+)\(", f)] if m}
    assert got == set(range(100)), f"{name}: sites missing: {sorted(set(range(100)) - got)}"
total = sum(k["allocs"] for k in r["kinds"])
assert sum(v for _, v in count) == total, f"--sort count: {sum(v for _, v in count)}, the JSON's total {total}"
at_peak = sum(s["bytes_at_peak"] for s in r["sites"])
assert sum(v for _, v in peak) == at_peak, f"bytes at the peak: {sum(v for _, v in peak)}, the JSON's {at_peak}"
assert len(top5) == 5, f"--top 5: {len(top5)} lines"
print(f"collapsed: all {len(peak)} sites, {total} allocations and {at_peak} bytes at the peak as in the JSON")
PY
echo "stats_many_sites_test: OK"

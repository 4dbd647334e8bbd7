#!/usr/bin/env bash
# Memory over time and allocation sizes end to end (stats_series_program under the shim with
# POOLSHIM_STATS=native): the JSON report's size histograms per kind and per site hold exactly the
# program's allocations in their power-of-two buckets, the temporary counts are exact and weigh the
# collapsed output with --sort temporary, and the timeline shows the program's phases: the peak,
# the drop after the spike's free, what was left at exit, and the lines of the sites with the
# largest own peaks (site_spike's 16 MiB at the peak, site_hold's 4 MiB from the first sample on);
# the text report, the HTML page (an inline SVG, no script added) and `top` show them too.
# usage: stats_series_test.sh --shim libpoolshim.so --program stats_series_program --stats poolshim-stats
set -u
name=stats_series_test
source "$(dirname "$0")/stats_script_start.sh"
dir=$(mktemp -d /tmp/poolshim-series-XXXXXX)
holder=""
trap '[[ -n $holder ]] && kill -9 "$holder" 2>/dev/null; rm -rf "$dir"' EXIT
run() { exec env LD_PRELOAD="$shim" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$dir" "$@"; }

out=$(run "$program") || fail "the program failed: $out"
"$stats" report --dir "$dir" --format json --top 0 >"$dir/r.json" || fail "report --format json"
python3 - "$dir/r.json" <<'PY' || fail "the JSON report's sizes, temporaries or timeline"
import json, sys
r = json.load(open(sys.argv[1]))
KiB, MiB = 1 << 10, 1 << 20
def bucket(n):  # include/poolshim/stats_file.h: <=1K, then (2^(9+i), 2^(10+i)]
    w = (n - 1).bit_length() if n > 1024 else 0
    return 0 if w <= 10 else min(w - 10, 23)
def hist(pairs):
    h = [0] * 24
    for size, count in pairs:
        h[bucket(size)] += count
    return h
kinds = {k["kind"]: k["sizes"] for k in r["kind_sizes"]}
want_device = hist([(MiB, 4), (8 * KiB, 5 + 32), (16 * MiB, 1)])
assert kinds.get("device") == want_device, (kinds.get("device"), want_device)
assert kinds.get("pinned") == hist([(3 * KiB, 2)]), kinds.get("pinned")
assert set(kinds) == {"device", "pinned"}, set(kinds)
def sites(fn):
    return [s for s in r["sites"] if any(fn in f["function"] for f in s["frames"][:5])]
# site_pad is called from two places of main: two sites of 16 each.
want = {"site_hold": (1, [(MiB, 4)], 0), "site_temp": (1, [(8 * KiB, 5)], 5), "site_pinned": (1, [(3 * KiB, 2)], 0),
        "site_spike": (1, [(16 * MiB, 1)], 0), "site_pad": (2, [(8 * KiB, 16)], 16)}
for fn, (n, sizes, temporary) in want.items():
    found = sites(fn)
    assert len(found) == n, (fn, len(found))
    for s in found:
        assert s["sizes"] == hist(sizes), (fn, s["sizes"])
        assert s["temporary"] == temporary, (fn, s["temporary"], temporary)
    print(f"{fn}: {n} site(s), sizes and temporary ({temporary}) exact")
t = r["timeline"]
samples = t["samples"]
assert len(samples) >= 4, samples
cols = [(c["device"], c["kind"]) for c in t["columns"]]
assert cols == [(0, "device"), (0, "pinned")], cols
times = [s[0] for s in samples]
assert times == sorted(times) and times[0] >= r["start_ns"] and times[-1] <= r["end_ns"], "times rise, within the run"
for s in samples:
    assert s[1] == s[2] + s[3], f"total {s[1]} is not the sum of the columns {s[2:]}"
peak = 4 * MiB + 16 * MiB + 6 * KiB + 8 * KiB  # site_pad's first block, while the spike is held
assert r["peak_bytes"] == peak, r["peak_bytes"]
assert max(s[1] for s in samples) == peak, f"the peak is in the series: {max(s[1] for s in samples)} != {peak}"
at_peak = next(i for i, s in enumerate(samples) if s[1] == peak)
assert samples[at_peak][2] == peak - 6 * KiB and samples[at_peak][3] == 6 * KiB, samples[at_peak]
after = [s[1] for s in samples[at_peak + 1:]]
assert any(v in (4 * MiB + 6 * KiB, 4 * MiB + 6 * KiB + 8 * KiB) for v in after), f"the drop after the spike: {after}"
assert samples[-1][1] == 6 * KiB and samples[-1][3] == 6 * KiB, f"the end: {samples[-1]} (6 KiB leaked)"
before = [s[1] for s in samples[:at_peak]]
assert before and before[0] >= MiB and all(v <= 4 * MiB + 8 * KiB + 6 * KiB for v in before), before
print(f"timeline: {len(samples)} samples, peak {peak} at sample {at_peak}, ends at {samples[-1][1]}")
# The call sites' lines: the 5 largest own peaks, from the samples alone (no event ring here).
lines = t["sites"]
assert 1 <= len(lines) <= 5 and all(len(l["live"]) == len(samples) for l in lines), lines
peaks = [l["own_peak"] for l in lines]
assert peaks == sorted(peaks, reverse=True), peaks
def line(fn):
    (l,) = [l for l in lines if l["call_site"].startswith(f"(anonymous namespace)::{fn}()")]
    site = next(s for s in r["sites"] if s["id"] == l["id"])
    assert l["own_peak"] == site["own_peak"], (l, site["own_peak"])
    return l["live"]
spike, hold = line("site_spike"), line("site_hold")
assert lines[0]["call_site"].startswith("(anonymous namespace)::site_spike()"), "the largest own peak first"
assert spike[at_peak] == 16 * MiB and hold[at_peak] == 4 * MiB, (spike[at_peak], hold[at_peak])
assert hold[0] is not None and hold[0] >= MiB, f"site_hold followed from the first sample: {hold[:3]}"
assert spike[-1] == 0 and hold[-1] == 0, "both freed before the exit"
assert all(v is None or v <= s[1] for l in lines for v, s in zip(l["live"], samples)), "a site within the total"
assert all(v is None for v in spike[:1]), f"site_spike did not exist at the first sample: {spike[:1]}"
print("site lines:", [(l["call_site"].split("(")[1].split("::")[-1], l["own_peak"]) for l in lines])
PY
"$stats" report --dir "$dir" --format collapsed --sort temporary >"$dir/c.txt" || fail "collapsed --sort temporary"
[[ $(grep -c "site_pad.* 16$" "$dir/c.txt") == 2 ]] || fail "site_pad's two sites weigh 16 temporaries each: $(cat "$dir/c.txt")"
grep -q "site_temp.* 5$" "$dir/c.txt" || fail "site_temp weighs 5 temporaries"
grep -q "site_hold.* 0$" "$dir/c.txt" || fail "site_hold weighs no temporary"
"$stats" report --dir "$dir" --sort temporary --top 2 >"$dir/r.txt" || fail "report --sort temporary"
grep -q "top 2 call sites by temporary allocations" "$dir/r.txt" || fail "the text report's sort"
grep -q "device sizes: 8K:37 1M:4 16M:1" "$dir/r.txt" || fail "the text report's device sizes: $(grep sizes "$dir/r.txt")"
grep -q "pinned sizes: 4K:2" "$dir/r.txt" || fail "the text report's pinned sizes"
grep -q "sizes 8K:16" "$dir/r.txt" || fail "site_pad's sizes in the text report"
grep -Eq "live over [0-9.]+ s \([0-9]+ samples\): \[.*@.*\] max 20.0 MiB" "$dir/r.txt" ||
  fail "the text report's timeline: $(grep 'live over' "$dir/r.txt")"
grep -Eq "^ +site #1: \[.*@.*\] max 16.0 MiB  \(anonymous namespace\)::site_spike\(\) \(stats_series_program.cpp:[0-9]+\)" \
  "$dir/r.txt" || fail "the text report's site lines: $(grep 'site #' "$dir/r.txt")"
[[ $(grep -c "^ *site #[0-9]: \[" "$dir/r.txt") -le 5 ]] || fail "more than 5 site lines"
"$stats" report --dir "$dir" --format html --output "$dir/r.html" || fail "report --format html"
grep -q '<svg class="timeline"' "$dir/r.html" || fail "the HTML page has no timeline chart"
python3 - "$dir/r.html" "$dir/r.json" <<'PY' || fail "the HTML chart's site lines"
import json, re, sys
page, report = open(sys.argv[1], encoding="utf-8").read(), json.load(open(sys.argv[2]))
drawn = re.findall(r'<path class="site-line" data-site-id="(\d+)" d="M[^"]+"', page)
assert drawn == [str(l["id"]) for l in report["timeline"]["sites"]], (drawn, report["timeline"]["sites"])
assert "site #1: (anonymous namespace)::site_spike()" in page
print(f"HTML: {len(drawn)} site lines in the chart, as in the JSON")
PY
grep -q '<section id="sizes">' "$dir/r.html" || fail "the HTML page has no size table"
[[ $(grep -c '<script' "$dir/r.html") == 2 ]] || fail "the HTML page's scripts: only its own two"
cat "$dir/r.txt" | head -20

# top: a running process's line over time.
rm -f "$dir"/*.stats
coproc prog { run "$program" --hold; }
holder=$prog_PID
read -r -t 20 ready <&"${prog[0]}" || fail "the held program did not start"
[[ $ready == ready ]] || fail "the held program said $ready"
"$stats" top --dir "$dir" --iterations 1 >"$dir/top.txt" || fail "top"
grep -Eq "^    live over [0-9.]+ s \([0-9]+ samples\): \[.*\] max 20.0 MiB" "$dir/top.txt" ||
  fail "top shows no timeline: $(cat "$dir/top.txt")"
# Under it, the lines of the 3 sites (--sites) with the largest own peaks, their sparklines in the
# process line's columns.
python3 - "$dir/top.txt" <<'PY' || fail "top's site lines: $(cat "$dir/top.txt")"
import re, sys
text = open(sys.argv[1]).read().splitlines()
(i,) = [k for k, l in enumerate(text) if l.startswith("    live over ")]
lines = [l for l in text[i + 1:i + 4] if re.match(r"^ +\S.*  \[.*\] max ", l)]
assert len(lines) == 3, text[i:i + 4]
assert all(l.index("[") == text[i].index("[") for l in lines), "sparklines in one column"
assert re.match(r"^ +site_spike\S*  \[.*@.*\] max 16.0 MiB$", lines[0]), lines[0]
assert re.match(r"^ +site_hold\S*  \[.*@.*\] max 4.0 MiB$", lines[1]), lines[1]
print("top:", *lines, sep="\n  ")
PY
echo "stats_series_test: OK"

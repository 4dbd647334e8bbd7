#!/usr/bin/env bash
# Sites that must not read alike, and ties that must not fall in stack-id order (issue #16):
# stats_alike_program under the shim with POOLSHIM_STATS=native. Two sites in one function and
# two calls of one helper must have distinct labels in the HTML table and distinct collapsed
# stacks (the call site's file:line, a caller where needed); --sort live puts the sites that hold
# nothing in the order of their bytes at the peak; --sort own-peak sorts by each site's own peak,
# which the text, HTML and top show. The text report names each of the two sites in one function by
# its own line; top's rows never read alike either: by file:line, by the caller where needed, two
# stacks that differ only in hidden frames folded into one row (and with --all-frames two rows that
# name the runtime's entry point).
# usage: stats_alike_test.sh --shim libpoolshim.so --program stats_alike_program --stats poolshim-stats
set -u
name=stats_alike_test
source "$(dirname "$0")/stats_script_start.sh"
dir=$(mktemp -d /tmp/poolshim-stats-alike-XXXXXX)
held=""
trap '[[ -n $held ]] && kill -9 "$held" 2>/dev/null; rm -rf "$dir"' EXIT
out=$(env LD_PRELOAD="$shim" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$dir" "$program" 2>&1) || fail "the program: $out"
src=$(dirname "$0")/stats_alike_program.cpp
mark() { grep -n "mark: $1\$" "$src" | cut -d: -f1; }

# Ties: the order of every site by each key, named by the function that allocates.
for sort in live own-peak; do
  "$stats" report --dir "$dir" --format json --top 0 --sort "$sort" >"$dir/$sort.json" || fail "report --sort $sort"
done
python3 - "$dir/live.json" "$dir/own-peak.json" <<'PY' || fail "the order of tied sites"
import json, sys
def order(path):
    names = []
    for s in json.load(open(path))["sites"]:
        fn = next((f["function"] for f in s["frames"] if f["file"].endswith("stats_alike_program.cpp")), "?")
        names.append(fn.split("::")[-1].split("(")[0])
    return names
live, own = order(sys.argv[1]), order(sys.argv[2])
print("--sort live:", live)
print("--sort own-peak:", own)
want = ["two_sites", "two_sites", "helper", "helper", "held_4", "held_3", "held_2", "held_1", "tiny"]
assert live == want, f"--sort live: {live}, want {want} (live ties by bytes at the peak)"
want = ["held_4", "held_3", "held_2", "held_1", "two_sites", "two_sites", "helper", "helper", "tiny"]
assert own == want, f"--sort own-peak: {own}, want {want}"
PY

# Own peak in the text report: one per site shown.
"$stats" report --dir "$dir" --top 0 >"$dir/report.txt" || fail "text"
[[ $(grep -c "own peak" "$dir/report.txt") -eq 9 ]] || fail "text: not one own peak per site: $(cat "$dir/report.txt")"
grep -q "#1   at peak 4.0 MiB, own peak 4.0 MiB, live 0 B in 0" "$dir/report.txt" || fail "text: held_4's own peak"

# The text report: each of the two sites in one function names its own line first.
python3 - "$dir/report.txt" "$(mark "two_sites first")" "$(mark "two_sites second")" <<'PY' || fail "text: two_sites' lines"
import re, sys
text = open(sys.argv[1]).read()
blocks = re.split(r"\n  #\d+ +at peak", text)[1:]
firsts = [next(l.strip() for l in b.splitlines()[1:] if not re.match(r"\s+(\d+ allocs|sizes|\d+ of them)", l))
          for b in blocks]
two = sorted(f for f in firsts if "two_sites" in f)
want = sorted(f"(anonymous namespace)::two_sites(void**, void**) (stats_alike_program.cpp:{l})" for l in sys.argv[2:4])
assert two == want, (two, want)
print("text: two_sites' two sites each by its own line:", two)
PY

# The HTML table: every call-site cell its own, by file:line and the caller where needed.
"$stats" report --dir "$dir" --format html --top 0 >"$dir/report.html" || fail "html"
python3 - "$dir/report.html" "$(mark "two_sites first")" "$(mark "two_sites second")" "$(mark "helper's call")" <<'PY' ||
import html, re, sys
page = open(sys.argv[1], encoding="utf-8").read()
first, second, helper = sys.argv[2:5]
table = re.search(r'<table class="grid" id="site-table">(.*?)</table>', page, re.S).group(1)
assert "<th>own peak</th>" in table, "no own peak column"
cells = []
for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)[1:]:
    cell = re.findall(r'<td class="left">(.*?)</td>', row, re.S)[-1]
    cell = re.sub(r"<details>.*", "", cell, flags=re.S)
    cells.append(html.unescape(re.sub(r"<[^>]+>", "", cell)).strip())
for c in cells:
    print("  call site:", c)
assert len(cells) == 9 and len(set(cells)) == 9, f"call sites that read alike: {cells}"
two = [c for c in cells if "two_sites" in c]
assert sorted(two) == sorted(f"{n} stats_alike_program.cpp:{l}" for n, l in
                             (("(anonymous namespace)::two_sites(void**, void**)", first),
                              ("(anonymous namespace)::two_sites(void**, void**)", second))), two
helpers = [c for c in cells if "helper" in c]
assert len(helpers) == 2 and all(f"stats_alike_program.cpp:{helper} \u2190 called from" in c for c in helpers), helpers
assert any("caller_a" in c for c in helpers) and any("caller_b" in c for c in helpers), helpers
PY
  fail "html: call sites that read alike"

# Collapsed stacks: no two lines alike; the call site, innermost (the runtime's frames hidden), with
# its file:line.
"$stats" report --dir "$dir" --format collapsed >"$dir/report.folded" || fail "collapsed"
cat "$dir/report.folded"
[[ $(cut -d' ' -f1 "$dir/report.folded" | sort | uniq -d | wc -l) -eq 0 ]] || fail "collapsed: two sites alike"
for m in "two_sites first" "two_sites second"; do
  grep -q "two_sites(void\*\*,_void\*\*)_(stats_alike_program.cpp:$(mark "$m")) [0-9]*$" "$dir/report.folded" ||
    fail "collapsed: no frame of $m with its line"
done

# top shows each live site's own peak.
rm -f "$dir"/*.stats
env LD_PRELOAD="$shim" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$dir" "$program" --hold >"$dir/hold.out" 2>&1 &
held=$!
for _ in $(seq 500); do grep -q ready "$dir/hold.out" && break; sleep 0.01; done
"$stats" top --dir "$dir" --iterations 1 --sites 10 >"$dir/top.txt" || fail "top"
cat "$dir/top.txt"
grep -q "1.0 MiB live in 1 (1 allocs), own peak 1.0 MiB" "$dir/top.txt" || fail "top: no own peak"
# top's rows never read alike: five sites live (two_sites' two lines, helper's two callers, and the
# one line of same_line, its two stacks folded into one row), each named apart.
"$stats" top --dir "$dir" --iterations 1 --sites 10 --all-frames >"$dir/top-all.txt" || fail "top --all-frames"
cat "$dir/top-all.txt"
python3 - "$dir/top.txt" "$dir/top-all.txt" "$(mark "two_sites first")" "$(mark "two_sites second")" \
  "$(mark "same line")" <<'PY' || fail "top: rows that read alike"
import re, sys
first, second, same = sys.argv[3:6]
def rows(path):
    out = []
    for l in open(path):
        m = re.match(r"^    \S+ \S+ live in \d+ \(\d+ allocs\), own peak \S+ \S+\s+(.*)$", l.rstrip("\n"))
        if m:
            out.append(m.group(1))
    return out
top, every = rows(sys.argv[1]), rows(sys.argv[2])
for r in top:
    print("  top row:", r)
assert len(top) == 5 and len(set(top)) == 5, f"top: rows that read alike: {top}"
# Each named by function and line, in whichever form fits the 100 columns.
def at(r, fn, line):
    return re.match(rf"^{fn}\S* \(stats_alike_program\.cpp:{line}\)|^{fn}:{line}\b", r) is not None
for line in (first, second):
    assert sum(at(r, "two_sites", line) for r in top) == 1, (line, top)
helpers = [r for r in top if r.startswith("helper")]
assert len(helpers) == 2 and sorted(re.search(r"< (caller_\w)", r).group(1) for r in helpers) == ["caller_a", "caller_b"], helpers
folded = [r for r in top if at(r, "same_line", same)]
assert len(folded) == 1 and folded[0].endswith("[2 stacks]"), folded
for r in every:
    print("  top --all-frames row:", r)
assert len(every) == 6 and len(set(every)) == 6, f"top --all-frames: rows that read alike: {every}"
parted = [r for r in every if at(r, "same_line", same)]
assert len(parted) == 2 and all(" via " in r for r in parted), f"the same line's two stacks, each a row of its own: {every}"
print("top: every row its own (by line, by caller); the same line's two stacks one row, two with --all-frames")
PY
echo "stats_alike_test: OK"

#!/usr/bin/env bash
# The report's views end to end on stats_views_program (known call sites, see its header), run under
# the shim with POOLSHIM_STATS=native and an event ring: by default the CUDA runtime's and libc's
# frames are hidden in JSON, text, collapsed stacks, the HTML page and the memory_viz snapshot (each
# site's first frame is the program's call, its two lambdas two sites); --all-frames brings them
# back and parts the two stacks that differ only in them (cudaMalloc and cudaMallocManaged on one
# line, folded by default and said so); --hide-function folds more; a bad pattern is a usage error;
# report --bottom-up shows helper() above its two callers, in text and in JSON (the same tree, the
# same figures); the HTML page has the bottom-up view and
# the filter, driven in headless Chromium when there is one; memory_viz has the pool's segments
# holding the blocks at the addresses cuMemGetAddressRange gave the program, and the failed
# allocation as an oom event (stats_views_check.py checks each).
# usage: stats_views_test.sh --shim libpoolshim.so --program stats_views_program --stats poolshim-stats
set -u
name=stats_views_test
source "$(dirname "$0")/stats_script_start.sh"
here=$(cd "$(dirname "$0")" && pwd)
source_file=$here/stats_views_program.cpp
check() { python3 "$here/stats_views_check.py" "$1" "$source_file" "${@:2}"; }
dir=$(mktemp -d /tmp/poolshim-stats-views-XXXXXX)
trap 'rm -rf "$dir"' EXIT

env LD_PRELOAD="$shim" POOLSHIM_STATS=native POOLSHIM_STATS_EVENTS=4096 POOLSHIM_STATS_DIR="$dir" "$program" \
  >"$dir/program.out" 2>"$dir/program.err" || { cat "$dir/program.out" "$dir/program.err"; fail "the program failed"; }
grep -q '^done$' "$dir/program.out" || fail "the program did not finish"

# Frames shown: JSON, text, collapsed, and with --all-frames.
"$stats" report --dir "$dir" --format json --top 0 >"$dir/report.json" || fail "report --format json"
check json "$dir/report.json" || fail "JSON: hidden frames"
"$stats" report --dir "$dir" --format json --top 0 --all-frames >"$dir/all.json" || fail "report --all-frames"
check json-all "$dir/all.json" || fail "JSON --all-frames"
"$stats" report --dir "$dir" --top 0 >"$dir/report.txt" || fail "report (text)"
check text "$dir/report.txt" || { cat "$dir/report.txt"; fail "text: hidden frames"; }
"$stats" report --dir "$dir" --top 0 --all-frames >"$dir/all.txt" || fail "report --all-frames (text)"
grep -q "__libc_start_main\|_start" "$dir/all.txt" && grep -q "cudaMalloc" "$dir/all.txt" ||
  fail "text --all-frames: no runtime or libc frame"
grep -q "differ only in hidden frames" "$dir/all.txt" && fail "text --all-frames: still folded"
"$stats" report --dir "$dir" --format collapsed >"$dir/collapsed.txt" || fail "collapsed"
check collapsed "$dir/collapsed.txt" || { cat "$dir/collapsed.txt"; fail "collapsed: hidden frames"; }
"$stats" report --dir "$dir" --format collapsed --all-frames >"$dir/collapsed-all.txt" || fail "collapsed --all-frames"
check collapsed-all "$dir/collapsed-all.txt" || { cat "$dir/collapsed-all.txt"; fail "collapsed --all-frames"; }

# More hidden by pattern: without its callers and main, helper's two call sites are one site of 2
# stacks; without its callers alone, they stay two (main calls them from two lines).
"$stats" report --dir "$dir" --format json --top 0 --hide-function='caller_(one|two)' >"$dir/hide1.json" &&
  "$stats" report --dir "$dir" --format json --top 0 --hide-function 'caller_' --hide-function='^main$' \
    >"$dir/hide2.json" || fail "report --hide-function"
python3 - "$dir/hide1.json" "$dir/hide2.json" <<'PY' || fail "--hide-function"
import json, sys
def helper(path):
    sites = json.load(open(path))["sites"]
    return [s for s in sites if s["frames"] and s["frames"][0]["function"].startswith("(anonymous namespace)::helper")]
one = helper(sys.argv[1])
assert len(one) == 2 and all([f["function"] for f in s["frames"]][1:] == ["main"] for s in one), one
assert all(s["hidden_frames"] == 7 and s["folded_stacks"] == 1 for s in one), one
(two,) = helper(sys.argv[2])
assert len(two["frames"]) == 1 and two["folded_stacks"] == 2 and two["allocs"] == 2, two
print("--hide-function: helper's callers hidden (two sites, by main's lines); with main too, one site of 2 stacks")
PY
"$stats" report --dir "$dir" --format json --hide-module '[' >/dev/null 2>"$dir/bad.err"
[[ $? -eq 2 ]] && grep -q "bad --hide-module" "$dir/bad.err" || fail "a bad pattern is not a usage error: $(cat "$dir/bad.err")"
"$stats" report --help | grep -q -- "--hide-function RE" || fail "report --help lacks --hide-function"
"$stats" top --help | grep -q -- "--all-frames" || fail "top --help lacks --all-frames"

# Bottom-up.
"$stats" report --dir "$dir" --bottom-up --top 0 >"$dir/bottom-up.txt" || fail "report --bottom-up"
cat "$dir/bottom-up.txt"
check bottom-up "$dir/bottom-up.txt" || fail "bottom-up"
"$stats" report --dir "$dir" --bottom-up --top 0 --format json >"$dir/bottom-up.json" || fail "report --bottom-up --format json"
check bottom-up-json "$dir/bottom-up.json" "$dir/bottom-up.txt" || fail "bottom-up in JSON"
"$stats" report --dir "$dir" --format json | python3 -c 'import json, sys; assert json.load(sys.stdin)["bottom_up"] is None' ||
  fail "bottom_up is not null without --bottom-up"
"$stats" report --dir "$dir" --bottom-up --format collapsed >/dev/null 2>&1
[[ $? -eq 2 ]] || fail "--bottom-up --format collapsed is not a usage error"

# The HTML page: the bottom-up view and the filter, frames hidden in its data.
"$stats" report --dir "$dir" --format html --output "$dir/report.html" || fail "report --format html"
"$stats" report --dir "$dir" --format html --bottom-up --output "$dir/bottom-up.html" || fail "html --bottom-up"
python3 - "$dir/report.html" "$dir/bottom-up.html" <<'PY' || fail "HTML page"
import json, re, sys
for path, view in ((sys.argv[1], "top-down"), (sys.argv[2], "bottom-up")):
    page = open(path, encoding="utf-8").read()
    data = json.loads(re.search(r'<script type="application/json" id="poolshim-data">(.*?)</script>', page, re.S).group(1))
    assert data["view"] == view, data["view"]
    mods = {f["m"].rsplit("/", 1)[-1] for f in data["frames"]}
    assert not any(m.startswith(("libcudart", "libc.so")) for m in mods), mods
    for needle in ('name="view" value="bottom-up"', 'id="flame-filter"', 'id="filter-mode"', 'data-site="0"',
                   'id="frames-hidden"'):
        assert needle in page, needle
print("HTML: view and filter controls, rows tied to the data, the runtime's frames hidden")
PY
browser=""
for b in chromium chromium-headless-shell chromium-browser google-chrome; do
  command -v "$b" >/dev/null 2>&1 && { browser=$(command -v "$b"); break; }
done
if [[ -n $browser ]]; then
  browse() {  # browse URL: the DOM after the page's script ran (offline, fresh profile)
    env -u LD_PRELOAD -u LD_LIBRARY_PATH HOME="$dir/home" timeout 60 "$browser" --headless --no-sandbox --disable-gpu \
      --user-data-dir="$dir/profile" --no-first-run --disable-extensions --disable-background-networking \
      --disable-sync --disable-component-update --proxy-server=127.0.0.1:9 --host-resolver-rules="MAP * ~NOTFOUND" \
      --window-size=1400,1000 --dump-dom "$1" 2>>"$dir/chromium.log"
  }
  total=$(python3 -c 'import json,sys; print(len([s for s in json.load(open(sys.argv[1]))["sites"]]))' "$dir/report.json")
  browse "file://$dir/report.html#view=bottom-up&filter=helper" >"$dir/keep.dom" || fail "chromium (keep)"
  browse "file://$dir/report.html#filter=helper&mode=drop" >"$dir/drop.dom" || fail "chromium (drop)"
  browse "file://$dir/report.html#filter=caller_&mode=hide" >"$dir/hide.dom" || fail "chromium (hide)"
  browse "file://$dir/bottom-up.html" >"$dir/bottom-up.dom" || fail "chromium (bottom-up page)"
  python3 - "$dir" "$total" <<'PY' || fail "the HTML page in Chromium"
import html, re, sys
d, total = sys.argv[1], int(sys.argv[2])
def page(name):
    dom = open(f"{d}/{name}.dom", encoding="utf-8").read()
    attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', re.search(r"<body([^>]*)>", dom).group(1)))
    labels = [html.unescape(t) for t in re.findall(r'<text class="flame-label"[^>]*>([^<]*)</text>', dom)]
    rows = len(re.findall(r'<tr data-site="\d+"(?![^>]*hidden)', dom))
    return attrs, labels, rows, dom
a, labels, rows, dom = page("keep")
assert a["flame-view"] == "bottom-up" and a["sites-shown"] == "2" and a["rows-shown"] == "2", a
# Bottom-up: the allocating function is the first row under the root.
first_row = re.findall(r'<g class="flame-node[^"]*" transform="translate\([\d.]+,18\)"[^>]*>.*?</g>', dom)
assert any("helper" in html.unescape(g) for g in first_row), first_row[:3]
a, labels, rows, _ = page("drop")
assert a["flame-view"] == "top-down" and int(a["sites-shown"]) == total - 2 and int(a["rows-shown"]) == total - 2, a
assert not any("helper" in l for l in labels), labels
a, labels, rows, _ = page("hide")
assert int(a["sites-shown"]) == total and not any("caller_" in l for l in labels), (a, labels)
a, labels, rows, _ = page("bottom-up")
assert a["flame-view"] == "bottom-up" and int(a["flame-rects"]) >= 5, a
print(f"Chromium: bottom-up view, filter keep/drop/hide on the graph and the table ({total} sites)")
PY
else
  echo "stats_views_test: note: no chromium: the page's bottom-up view and filter were not run in a browser"
fi

# memory_viz: the pool's segments with the program's blocks in them, and the failed allocation.
"$stats" report --dir "$dir" --format memory_viz --output "$dir/s.pickle" 2>"$dir/mv.err" ||
  { cat "$dir/mv.err"; fail "memory_viz"; }
cat "$dir/mv.err"
grep -q "1 failed allocations (oom)" "$dir/mv.err" || fail "memory_viz: no note of the failed allocation"
check memory_viz "$dir/s.pickle" "$dir/program.out" || fail "memory_viz: segments and oom"
echo "stats_views_test: OK"

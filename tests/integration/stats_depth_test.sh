#!/usr/bin/env bash
# Stacks deeper than the depth cap (issue #16): stats_deep_program's 30-deep recursion under the
# default POOLSHIM_STATS_DEPTH of 32 must be marked as cut in every format — JSON (sites[].cut,
# whole_depth, depth_needed), text, collapsed (under a "[stack cut ...]" frame, not a root of its
# own), HTML (note, table, flame-graph data) and the memory_viz snapshot — with the depth that keeps
# it whole; run again with that depth, the stack is whole (main in it) and not marked. A stack
# deeper than the most POOLSHIM_STATS_DEPTH keeps says so. The shallow site is never marked.
# usage: stats_depth_test.sh --shim libpoolshim.so --program stats_deep_program --stats poolshim-stats
set -u
name=stats_depth_test
source "$(dirname "$0")/stats_script_start.sh"
dir=$(mktemp -d /tmp/poolshim-stats-depth-XXXXXX)
trap 'rm -rf "$dir"' EXIT
run() {  # run SUBDIR ENV... -- ARGS: the program with its stats file in $dir/SUBDIR
  local sub=$1; shift
  mkdir -p "$dir/$sub"
  env LD_PRELOAD="$shim" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$dir/$sub" POOLSHIM_STATS_EVENTS=64 "$@" >/dev/null
}
run cut "$program" 30 || fail "the program failed (depth 30)"
"$stats" report --dir "$dir/cut" --format json --top 0 >"$dir/cut.json" || fail "report json"
whole=$(python3 - "$dir/cut.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["depth_cap"] == 32, r["depth_cap"]
deep = [s for s in r["sites"] if any("dive" in f["function"] for f in s["frames"])]
shallow = [s for s in r["sites"] if s["bytes_allocated"] == 64 << 10]
assert len(deep) == 1 and len(shallow) == 1, (len(deep), len(shallow))
d, s = deep[0], shallow[0]
assert d["cut"] is True, f"the 30-deep stack is not marked as cut: cut={d.get('cut')}"
names = [f["function"] for f in d["frames"]]
assert not any(n == "main" for n in names), "main in a stack that was cut"
assert d["whole_depth"] is not None and d["whole_depth"] > 32, d["whole_depth"]
assert r["depth_needed"] == d["whole_depth"], (r["depth_needed"], d["whole_depth"])
assert s["cut"] is False and s["whole_depth"] is None, (s["cut"], s["whole_depth"])
assert any(f["function"] == "main" for f in s["frames"]), "the shallow stack lacks main"
print(d["whole_depth"])
PY
) || fail "json"
echo "the 30-deep recursion: cut at 32, $whole frames deep"
want="[stack cut at 32 frames: $whole deep, POOLSHIM_STATS_DEPTH=$whole keeps it whole]"
"$stats" report --dir "$dir/cut" --top 0 >"$dir/cut.txt" || fail "report text"
grep -qF "       $want" "$dir/cut.txt" || fail "text: no '$want' under the site: $(cat "$dir/cut.txt")"
grep -q "note: 1 stack cut at the depth cap of 32 frames" "$dir/cut.txt" || fail "text: no note of the cut stack"
grep -q "POOLSHIM_STATS_DEPTH=$whole keeps it whole" "$dir/cut.txt" || fail "text: no depth that keeps it whole"
"$stats" report --dir "$dir/cut" --format collapsed >"$dir/cut.folded" || fail "collapsed"
cat "$dir/cut.folded"
grep -q "^\[stack_cut_at_32_frames\];.*dive.* 1048576$" "$dir/cut.folded" || fail "collapsed: the cut stack is not under [stack cut]"
[[ $(grep -c "^\[stack_cut" "$dir/cut.folded") -eq 1 ]] || fail "collapsed: not exactly the cut stack under [stack cut]"
"$stats" report --dir "$dir/cut" --format html >"$dir/cut.html" || fail "html"
grep -q '<p class="note" id="stacks-cut">1 stack was cut at the depth cap of 32 frames' "$dir/cut.html" ||
  fail "html: no note of the cut stack"
grep -qF "POOLSHIM_STATS_DEPTH=$whole keeps it whole." "$dir/cut.html" || fail "html: no depth in the note"
grep -qF "<li class=\"cut\">$want</li>" "$dir/cut.html" || fail "html: the table's stack does not end with the mark"
grep -qF '"cut":"[stack cut at 32 frames]"' "$dir/cut.html" || fail "html: the flame graph's data has no cut site"
"$stats" report --dir "$dir/cut" --format memory_viz --output "$dir/cut.pickle" 2>/dev/null || fail "memory_viz"
grep -qaF "$want" "$dir/cut.pickle" || fail "memory_viz: the cut stack's frames do not end with the mark"

# With the depth the report named, the whole stack, unmarked.
run whole env POOLSHIM_STATS_DEPTH="$whole" "$program" 30 || fail "the program failed (depth $whole)"
"$stats" report --dir "$dir/whole" --format json --top 0 >"$dir/whole.json" || fail "report json (whole)"
python3 - "$dir/whole.json" <<'PY' || fail "POOLSHIM_STATS_DEPTH=$whole does not keep the stack whole"
import json, sys
r = json.load(open(sys.argv[1]))
d = next(s for s in r["sites"] if any("dive" in f["function"] for f in s["frames"]))
assert d["cut"] is False and r["depth_needed"] is None, (d["cut"], r["depth_needed"])
assert any(f["function"] == "main" for f in d["frames"]), [f["function"] for f in d["frames"]]
print("whole:", len(d["frames"]), "frames, main among them")
PY
"$stats" report --dir "$dir/whole" --format collapsed | grep -q "stack_cut" && fail "collapsed: a whole stack marked"

# Deeper than the most POOLSHIM_STATS_DEPTH keeps (64).
run deeper env POOLSHIM_STATS_DEPTH=64 "$program" 80 || fail "the program failed (depth 80)"
"$stats" report --dir "$dir/deeper" --top 0 >"$dir/deeper.txt" || fail "report text (deeper)"
grep -Eq "\[stack cut at 64 frames: (more than )?[0-9]+ deep, deeper than POOLSHIM_STATS_DEPTH can keep \(64\)\]" \
  "$dir/deeper.txt" || fail "text: a stack deeper than 64 frames: $(grep -i cut "$dir/deeper.txt")"
echo "stats_depth_test: OK"

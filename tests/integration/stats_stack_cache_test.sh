#!/usr/bin/env bash
# The recorder's stack cache against stacks that break its premises (stats_stack_cache_program):
# - alloca: 2000 allocations alternating between via_p and via_q at the same stack pointer. The
#   cache takes via_q for via_p until a sampled re-check finds the wrong hit and turns the thread's
#   cache off: the report must show both sites, each with most of its 1000 allocations (and all
#   2000 in all). Without the re-check one site gets all 2000.
# - coroutine: a stack cached on a coroutine stack that is then partly unmapped, and an event at
#   the same stack pointer on what is left: the program must exit cleanly (no SIGSEGV).
# usage: stats_stack_cache_test.sh --shim libpoolshim.so --program stats_stack_cache_program --stats poolshim-stats
set -u
name=stats_stack_cache_test
source "$(dirname "$0")/stats_script_start.sh"
dir=$(mktemp -d /tmp/poolshim-stats-cache-XXXXXX)
trap 'rm -rf "$dir"' EXIT

mkdir -p "$dir/alloca" "$dir/co"
out=$(env LD_PRELOAD="$shim" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$dir/alloca" "$program" alloca 2000 2>&1) ||
  fail "alloca run: $out"
"$stats" report --dir "$dir/alloca" --format json --top 0 --output "$dir/alloca.json" || fail "report (alloca)"
python3 - "$dir/alloca.json" <<'PY' || fail "alloca: the sites are not told apart"
import json, sys
report = json.load(open(sys.argv[1]))
def count(fn):
    return sum(s["allocs"] for s in report["sites"] if any(fn + "(" in f["function"] for f in s["frames"]))
p, q = count("via_p"), count("via_q")
print(f"via_p {p}, via_q {q} (1000 each made)")
assert p + q == 2000, (p, q)
assert p >= 700 and q >= 700, "a wrong cache hit went unnoticed for too long"
PY

for run in 1 2 3; do
  rm -f "$dir"/co/*
  env LD_PRELOAD="$shim" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$dir/co" "$program" coroutine >"$dir/co.out" 2>&1
  rc=$?
  [[ $rc -eq 0 ]] || { cat "$dir/co.out" >&2; fail "coroutine run $run: exit status $rc"; }
done
"$stats" report --dir "$dir/co" --format json --top 0 --output "$dir/co.json" || fail "report (coroutine)"
python3 - "$dir/co.json" <<'PY' || fail "coroutine: allocations missing"
import json, sys
report = json.load(open(sys.argv[1]))
n = sum(s["allocs"] for s in report["sites"] if any("h3(" in f["function"] for f in s["frames"]))
print(f"coroutine: {n} allocations from h3")
assert n == 8, n
PY
echo "stats_stack_cache_test: OK"

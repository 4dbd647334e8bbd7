#!/usr/bin/env bash
# poolshim-replay end to end (issue #17, item 3).
#   table     every trace of tests/data/traces through the four policies: the table printed, the
#             JSON checked for what must hold whatever the figures (no policy reserves less than
#             is live, no caching saves nothing, hits never exceed allocations, nothing fails
#             without a device limit, the goal is judged on every trace)
#   recorded  tests/examples/legacy_inference under the shim with an event ring: its stats file
#             replays to the very figures of the committed legacy_inference.trace (the program's
#             allocations do not depend on the run), through `poolshim-stats replay` too, and
#             --export writes that trace again, event for event
#   ring      a synthetic stats file (stats_fake_file: ring of 8 holding the newest of 10 events,
#             three devices' and kinds' events mixed): only device memory of the device asked for,
#             frees of allocations older than the ring skipped and said, a file without a ring or a
#             device without events refused
# usage: replay_test.sh SCENARIO --replay poolshim-replay --traces DIR
#                       [--stats poolshim-stats --shim libpoolshim.so --program legacy_inference_shared]
#                       [--fake stats_fake_file]
set -u
scenario=${1:?scenario}; shift
replay="" traces="" stats="" shim="" program="" fake=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --replay) replay=$2; shift 2 ;;
    --traces) traces=$2; shift 2 ;;
    --stats) stats=$2; shift 2 ;;
    --shim) shim=$2; shift 2 ;;
    --program) program=$2; shift 2 ;;
    --fake) fake=$2; shift 2 ;;
    *) echo "replay_test: unknown option $1" >&2; exit 2 ;;
  esac
done
fail() { echo "replay_test $scenario: FAIL: $*" >&2; exit 1; }
dir=$(mktemp -d /tmp/poolshim-replay-XXXXXX)
trap 'rm -rf "$dir"' EXIT

case "$scenario" in
  table)
    "$replay" "$traces" || fail "poolshim-replay on $traces"
    # Bad usage is exit 2 with a reason; an unreadable trace exit 1.
    for bad in "--policies none,lru" "--cache-limit 12q" "--format xml" "--device 99" "--granule 0" "--bogus 1" \
      "--idle-percent 2000" "--idle-percent none" "--reuse-bits 0" "--class-bits 7" "--grow-segments 2"; do
      # shellcheck disable=SC2086
      "$replay" $bad "$traces" >/dev/null 2>"$dir/err.txt"
      rc=$?
      [[ $rc -eq 2 && -s "$dir/err.txt" ]] || fail "$bad: exit $rc, $(cat "$dir/err.txt")"
    done
    printf '# poolshim-trace 1\na 1 512\nf 2\n' >"$dir/broken.trace"
    "$replay" "$dir/broken.trace" >/dev/null 2>"$dir/err.txt"
    rc=$?
    [[ $rc -eq 1 ]] && grep -q "broken.trace:3: free of a name that is not live" "$dir/err.txt" ||
      fail "a broken trace: exit $rc, $(cat "$dir/err.txt")"
    "$replay" "$traces" --format json >"$dir/table.json" || fail "poolshim-replay --format json"
    python3 - "$dir/table.json" "$traces" <<'EOF' || fail "the JSON table"
import glob, json, os, sys
doc = json.load(open(sys.argv[1]))
names = sorted(os.path.basename(p)[:-6] for p in glob.glob(os.path.join(sys.argv[2], "*.trace")))
got = [t["trace"] for t in doc["traces"]]
assert got == names, f"traces {got}, expected {names}"
for t in doc["traces"]:
    pol = {p["policy"]: p for p in t["policies"]}
    assert sorted(pol) == ["none", "poolshim", "region", "torch"], pol.keys()
    assert t["allocations"] > 0 and t["peak_live"] > 0, t["trace"]
    for p in t["policies"]:
        where = f'{t["trace"]}/{p["policy"]}'
        assert p["failures"] == 0 and p["served"] == t["allocations"], where + ": failures without a device limit"
        assert p["peak_reserved"] >= t["peak_live"], where + ": reserved less than live"
        assert abs(p["ratio"] - p["peak_reserved"] / t["peak_live"]) < 1e-5, where
        assert 0 <= p["hits"] <= p["served"], where
        assert p["segments"] + p["hits"] >= p["served"], where + ": an allocation neither hit nor took a segment"
    none = pol["none"]
    assert none["hits"] == 0 and none["segments"] == t["allocations"] and abs(none["calls_saved"]) < 1e-9, t["trace"]
    assert none["ratio"] < 1.01, t["trace"] + ": no caching rounds to 512 B only"
    assert "goal" in t, t["trace"]
print(f"replay_test table: {len(got)} traces x 4 policies checked")
EOF
    ;;
  recorded)
    [[ -n "$shim" && -n "$program" && -n "$stats" ]] || fail "recorded needs --shim, --program and --stats"
    env LD_PRELOAD="$shim" POOLSHIM_STATS=native POOLSHIM_STATS_EVENTS=4096 POOLSHIM_STATS_DIR="$dir" \
      "$program" 100 >"$dir/out.txt" 2>&1 || fail "the program: $(cat "$dir/out.txt")"
    file=$(ls "$dir"/poolshim-*.stats 2>/dev/null | head -1)
    [[ -n "$file" ]] || fail "no stats file written"
    "$replay" --format json "$file" >"$dir/live.json" || fail "replay of $file"
    "$stats" replay --format json "$traces/legacy_inference.trace" >"$dir/committed.json" ||
      fail "poolshim-stats replay of the committed trace"
    python3 - "$dir/live.json" "$dir/committed.json" <<'EOF' || fail "the recorded run and the committed trace differ"
import json, sys
live, committed = (json.load(open(p))["traces"][0] for p in sys.argv[1:3])
for key in ("allocations", "frees", "peak_live"):
    assert live[key] == committed[key], (key, live[key], committed[key])
assert live["policies"] == committed["policies"], (live["policies"], committed["policies"])
print(f'replay_test recorded: {live["allocations"]} allocations, peak live {live["peak_live"]}, same figures')
EOF
    "$replay" --export "$dir/again.trace" "$file" || fail "--export"
    diff <(grep -v '^[#t]' "$dir/again.trace") <(grep -v '^[#t]' "$traces/legacy_inference.trace") >/dev/null ||
      fail "--export of a fresh recording differs from legacy_inference.trace (events or names)"
    ;;
  ring)
    [[ -n "$fake" ]] || fail "ring needs --fake"
    "$fake" "$dir/fake.stats" >/dev/null || fail "stats_fake_file"
    "$fake" "$dir/noring.stats" --no-ring >/dev/null || fail "stats_fake_file --no-ring"
    "$replay" --format json "$dir/fake.stats" >"$dir/d0.json" || fail "replay of device 0"
    "$replay" --format json --device 1 "$dir/fake.stats" >"$dir/d1.json" || fail "replay of device 1"
    python3 - "$dir/d0.json" "$dir/d1.json" <<'EOF' || fail "the synthetic ring's traces"
import json, sys
d0, d1 = (json.load(open(p))["traces"][0] for p in sys.argv[1:3])
# Device 0 keeps: free A1 (allocated before the ring: skipped), alloc A3, free A3, alloc A4, free of
# an address never allocated (skipped). Pinned P and device 1's B1 are not device 0's.
assert (d0["allocations"], d0["frees"], d0["peak_live"]) == (2, 1, 1 << 20), d0
notes = " | ".join(d0["notes"])
assert "the event ring kept the newest 8 of 10 events" in notes, notes
assert "2 frees of allocations older than the ring skipped" in notes, notes
assert (d1["allocations"], d1["frees"], d1["peak_live"]) == (1, 0, 3 << 20), d1
print("replay_test ring: device 0 and device 1 as the file holds them")
EOF
    "$replay" --export - "$dir/fake.stats" >"$dir/d0.trace" || fail "--export -"
    [[ "$(grep -v '^[#t]' "$dir/d0.trace" | tr '\n' ' ')" == "a 0 1048576 f 0 a 0 1048576 " ]] ||
      fail "--export: $(cat "$dir/d0.trace")"
    "$replay" "$dir/noring.stats" >/dev/null 2>"$dir/err.txt" && fail "a file without a ring was replayed"
    grep -q "no event ring" "$dir/err.txt" || fail "no ring: $(cat "$dir/err.txt")"
    "$replay" --device 2 "$dir/fake.stats" >/dev/null 2>"$dir/err.txt" && fail "device 2 has no events"
    grep -q "no device allocation of device 2" "$dir/err.txt" || fail "device 2: $(cat "$dir/err.txt")"
    ;;
  *) fail "unknown scenario" ;;
esac
echo "replay_test $scenario: ok"

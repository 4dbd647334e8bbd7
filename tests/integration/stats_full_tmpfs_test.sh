#!/usr/bin/env bash
# No room for the stats file must not kill the program (a sparse file on a full tmpfs raises SIGBUS;
# a file beyond ulimit -f raises SIGXFSZ): with ulimit -f 4 MiB, and in a private 1 MiB tmpfs, the
# shim counts per device and kind without stacks and says so, and the report's figures are still
# exact; with ulimit -f 256 KiB, and in a 64 KiB tmpfs, it records nothing, says so, and the
# program still runs. The ulimit cases run everywhere; the tmpfs is mounted in a user and mount
# namespace (unshare -rm), and those cases are skipped (exit 77 at the end) where namespaces are
# not allowed.
# Under the same limits, a program using pinned memory only (--pinned-program) must live too: the
# pool's slabs are 64 MiB memfds, which the limit would turn into SIGXFSZ.
# usage: stats_full_tmpfs_test.sh --shim libpoolshim.so --program stats_sites_program
#        --pinned-program pinned_only_program --stats poolshim-stats
set -u
shim="" program="" pinned="" stats=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --shim) shim=$2; shift 2 ;;
    --program) program=$2; shift 2 ;;
    --pinned-program) pinned=$2; shift 2 ;;
    --stats) stats=$2; shift 2 ;;
    *) echo "stats_full_tmpfs_test: unknown option $1" >&2; exit 2 ;;
  esac
done
fail() { echo "stats_full_tmpfs_test: FAIL: $*" >&2; exit 1; }
work=$(mktemp -d /tmp/poolshim-fulltmpfs-XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/mnt" "$work/dir"

check_small() {  # the report of a small file: no stacks, exact figures per kind
  python3 - "$work/report.json" <<'PY' || fail "the report of the small file ($1)"
import json, sys
r = json.load(open(sys.argv[1]))
MiB, KiB = 1 << 20, 1 << 10
assert r["stacks_off"] is True, r["stacks_off"]
assert r["peak_bytes"] == 64 * KiB + 7 * MiB, r["peak_bytes"]
assert r["live_bytes"] == 64 * KiB + 3 * MiB, r["live_bytes"]
kinds = {k["kind"]: k for k in r["kinds"]}
assert kinds["device"]["allocs"] == 5 and kinds["device"]["frees"] == 2, kinds["device"]
assert kinds["device"]["bytes_allocated"] == 9 * MiB, kinds["device"]
assert kinds["pinned"]["allocs"] == 1 and kinds["pinned"]["live_bytes"] == 64 * KiB, kinds["pinned"]
assert [s["id"] for s in r["sites"]] == [0], [s["id"] for s in r["sites"]]
PY
  echo "$1: no stacks, figures per kind exact"
}

# with_fsize BLOCKS: the program under ulimit -f BLOCKS (1 KiB each), its stats in $work/dir.
with_fsize() {
  rm -f "$work/dir"/*
  (ulimit -f "$1" && exec env LD_PRELOAD="$shim" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$work/dir" \
    POOLSHIM_LOG_LEVEL=warn "$program") >"$work/program.out" 2>&1
  echo "program_exit=$?" >"$work/status"
  "$stats" report --dir "$work/dir" --format json --top 0 >"$work/report.json" 2>"$work/report.err"
  echo "report_exit=$?" >>"$work/status"
  ls "$work/dir" >"$work/files"
}

for blocks in 4096 256; do
  out=$( (ulimit -f "$blocks" && exec env LD_PRELOAD="$shim" POOLSHIM_STATS=off "$pinned") 2>&1)
  [[ $out == *"pinned ok"* ]] || fail "pinned memory under ulimit -f $blocks KiB: $out"
done
echo "pinned memory under ulimit -f 4 MiB and 256 KiB: the program lives"

with_fsize 4096
grep -q "program_exit=0" "$work/status" || fail "the program died under ulimit -f 4 MiB: $(cat "$work/status" "$work/program.out")"
grep -q "counting without call stacks" "$work/program.out" || fail "ulimit -f 4 MiB: no warning: $(cat "$work/program.out")"
grep -q "report_exit=0" "$work/status" || fail "ulimit -f 4 MiB: no report: $(cat "$work/report.err")"
check_small "ulimit -f 4 MiB"
with_fsize 256
grep -q "program_exit=0" "$work/status" || fail "the program died under ulimit -f 256 KiB: $(cat "$work/status" "$work/program.out")"
grep -q "no call-site statistics" "$work/program.out" || fail "ulimit -f 256 KiB: no warning: $(cat "$work/program.out")"
[[ ! -s "$work/files" ]] || fail "ulimit -f 256 KiB: a file was left behind: $(cat "$work/files")"
echo "ulimit -f 256 KiB: nothing recorded, said so, nothing left behind"

if ! unshare -rm sh -c "mount -t tmpfs -o size=64k tmpfs '$work/mnt'" 2>/dev/null; then
  echo "stats_full_tmpfs_test: SKIPPED (the tmpfs cases): cannot mount a private tmpfs here (unshare -rm)"
  exit 77
fi

# in_tmpfs SIZE: runs the program under the shim with its stats folder in a fresh tmpfs of SIZE,
# then the report (JSON) from inside the same namespace (the tmpfs goes with it).
in_tmpfs() {
  unshare -rm env SIZE="$1" MNT="$work/mnt" SHIM="$shim" PROGRAM="$program" STATS="$stats" OUT="$work" bash -c '
    mount -t tmpfs -o size=$SIZE tmpfs "$MNT" || exit 3
    env LD_PRELOAD="$SHIM" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$MNT" POOLSHIM_LOG_LEVEL=warn "$PROGRAM" \
      >"$OUT/program.out" 2>&1
    echo "program_exit=$?" >"$OUT/status"
    ls "$MNT" >"$OUT/files"
    "$STATS" report --dir "$MNT" --format json --top 0 >"$OUT/report.json" 2>"$OUT/report.err"
    echo "report_exit=$?" >>"$OUT/status"'
}

in_tmpfs 1m
cat "$work/status"
grep -q "program_exit=0" "$work/status" || fail "the program died with a 1 MiB stats folder: $(cat "$work/program.out")"
grep -q "counting without call stacks" "$work/program.out" || fail "no warning about counting without stacks"
grep -q "report_exit=0" "$work/status" || fail "no report: $(cat "$work/report.err")"
check_small "1 MiB tmpfs"

in_tmpfs 64k
cat "$work/status"
grep -q "program_exit=0" "$work/status" || fail "the program died with a 64 KiB stats folder: $(cat "$work/program.out")"
grep -q "no call-site statistics" "$work/program.out" || fail "no warning that nothing is recorded"
[[ ! -s "$work/files" ]] || fail "a partial file was left behind: $(cat "$work/files")"
echo "64 KiB folder: nothing recorded, said so, nothing left behind"
echo "stats_full_tmpfs_test: ok"

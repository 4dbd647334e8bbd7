#!/usr/bin/env bash
# A full stats folder must not kill the program (a sparse file on a full tmpfs raises SIGBUS): in a
# private 1 MiB tmpfs the shim counts per device and kind without stacks and says so, and the
# report's figures are still exact; in a 64 KiB one it records nothing, says so, and the program
# still runs. The tmpfs is mounted in a user and mount namespace (unshare -rm); exits 77 (skipped)
# where namespaces are not allowed.
# usage: stats_full_tmpfs_test.sh --shim libpoolshim.so --program stats_sites_program --stats poolshim-stats
set -u
shim="" program="" stats=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --shim) shim=$2; shift 2 ;;
    --program) program=$2; shift 2 ;;
    --stats) stats=$2; shift 2 ;;
    *) echo "stats_full_tmpfs_test: unknown option $1" >&2; exit 2 ;;
  esac
done
fail() { echo "stats_full_tmpfs_test: FAIL: $*" >&2; exit 1; }
work=$(mktemp -d /tmp/poolshim-fulltmpfs-XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/mnt"
if ! unshare -rm sh -c "mount -t tmpfs -o size=64k tmpfs '$work/mnt'" 2>/dev/null; then
  echo "stats_full_tmpfs_test: SKIPPED: cannot mount a private tmpfs here (unshare -rm)"
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
python3 - "$work/report.json" <<'PY' || fail "the report of the small file"
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
print("1 MiB folder: no stacks, figures per kind exact:", r["peak_bytes"], r["live_bytes"])
PY

in_tmpfs 64k
cat "$work/status"
grep -q "program_exit=0" "$work/status" || fail "the program died with a 64 KiB stats folder: $(cat "$work/program.out")"
grep -q "no call-site statistics" "$work/program.out" || fail "no warning that nothing is recorded"
[[ ! -s "$work/files" ]] || fail "a partial file was left behind: $(cat "$work/files")"
echo "64 KiB folder: nothing recorded, said so, nothing left behind"
echo "stats_full_tmpfs_test: ok"

#!/usr/bin/env bash
# Call-site statistics end to end: stats_sites_program under the shim with POOLSHIM_STATS=native,
# then poolshim-stats' JSON must name exactly its call sites (function and line) with exact bytes,
# shares of the peak and leaks — after a clean exit, and after kill -9 mid-run. Also the text and
# collapsed formats, POOLSHIM_STATS=python in a program without CPython (native frames, one warning),
# and clear errors for a truncated, foreign and newer-version file; hostile files (offsets that
# wrap or are misaligned, fields without their NUL, a FIFO, another user's file posing as the
# newest; stats_header.py patches the header), odd headers (pid 0 or -1, an end before the start,
# no stacks) and bad numbers; valid JSON from a program whose path is not UTF-8.
# usage: stats_test.sh --shim libpoolshim.so --program stats_sites_program --stats poolshim-stats
set -u
name=stats_test
source "$(dirname "$0")/stats_script_start.sh"
dir=$(mktemp -d /tmp/poolshim-stats-XXXXXX)
trap 'pkill -9 -f -- "$program --hold" 2>/dev/null; [[ -n ${holder:-} ]] && kill "$holder" 2>/dev/null; rm -rf "$dir"' EXIT
# exec: run is only called in subshells ($(...) and &), so a background pid is the program itself.
run() { exec env LD_PRELOAD="$shim" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$dir" "$@"; }

check() {  # check JSON_FILE STATE PEAK_LIVE_MIB: the sites and figures the program promises
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
state, peak_site_live = sys.argv[2], int(sys.argv[3])
MiB, KiB = 1 << 20, 1 << 10
def site(fn):
    named = lambda f: fn + "(" in f["function"] or f["function"].endswith(fn)
    found = [s for s in report["sites"] if any(named(f) for f in s["frames"][:5])]
    assert len(found) == 1, f"{fn}: {len(found)} sites"
    s = found[0]
    frame = next(f for f in s["frames"][:5] if named(f))
    assert frame["file"].endswith("stats_sites_program.cpp") and frame["line"] > 0, frame
    return s
want = {  # function: allocs, bytes allocated, live bytes, bytes at the process peak
    "site_pinned": (1, 64 * KiB, 64 * KiB, 64 * KiB),
    "site_leak": (3, 3 * MiB, 3 * MiB, 3 * MiB),
    "site_temp": (1, 2 * MiB, 0, 0),
    "site_peak": (1, 4 * MiB, peak_site_live * MiB, 4 * MiB),
}
for fn, (allocs, total, live, at_peak) in want.items():
    s = site(fn)
    got = (s["allocs"], s["bytes_allocated"], s["live_bytes"], s["bytes_at_peak"])
    assert got == (allocs, total, live, at_peak), f"{fn}: got {got}, want {(allocs, total, live, at_peak)}"
    print(f"{fn}: allocs {allocs}, total {total}, live {live}, at peak {at_peak}")
# Temporary: freed before the thread allocated anything else. site_temp's block always; site_peak's
# too after a clean exit (main frees it next); site_leak's never (each is followed by another).
assert site("site_temp")["temporary"] == 1, "site_temp's block was freed before the next allocation"
assert site("site_peak")["temporary"] == (1 if state == "exited" else 0), site("site_peak")["temporary"]
assert site("site_leak")["temporary"] == 0
# leak_block is inlined into site_leak: two frames from one return address, each at its own line.
frames = site("site_leak")["frames"]
names = [f["function"] for f in frames]
i = next(k for k, n in enumerate(names) if "leak_block" in n)
assert "site_leak" in names[i + 1], names
src = open(frames[i]["file"]).read().splitlines()
mark = lambda m: next(n + 1 for n, l in enumerate(src) if "mark: " + m in l)
assert frames[i]["line"] == mark("leak_block's call"), (frames[i], mark("leak_block's call"))
assert frames[i + 1]["line"] == mark("site_leak's call"), (frames[i + 1], mark("site_leak's call"))
assert frames[i]["pc"] == frames[i + 1]["pc"]
print(f"inline frames: leak_block:{frames[i]['line']} <- site_leak:{frames[i + 1]['line']}")
assert report["peak_bytes"] == 64 * KiB + 7 * MiB, report["peak_bytes"]
# site_peak's allocation reaches the process peak and the device kind's at once: one moment.
device = next(k for k in report["kinds"] if k["kind"] == "device")
assert device["peak_ns"] == report["peak_ns"], \
    f"kinds[device].peak_ns {device['peak_ns']} is {device['peak_ns'] - report['peak_ns']} ns off peak_ns"
assert report["state"] == state, report["state"]
leaked = 64 * KiB + 3 * MiB + peak_site_live * MiB
assert report["live_bytes"] == leaked, (report["live_bytes"], leaked)
print(f"state {state}, peak {report['peak_bytes']}, live {report['live_bytes']}: as the program promises")
PY
}

# A clean exit.
out=$(run "$program") || fail "the program failed: $out"
"$stats" report --dir "$dir" --format json --top 0 >"$dir/clean.json" || fail "report"
check "$dir/clean.json" exited 0 || fail "clean run"
"$stats" report --dir "$dir" --top 4 | tee "$dir/clean.txt"
grep -q "site_leak" "$dir/clean.txt" || fail "the text report lacks site_leak"
awk 'length > 100 { bad = 1 } END { exit bad }' "$dir/clean.txt" || echo "stats_test: note: lines over 100 columns"
"$stats" report --dir "$dir" --format collapsed --top 0 | grep -q "^main;.*site_peak()[^;]* 4194304$" ||
  fail "collapsed stacks"
# Several processes in one report (JSON Lines, one object each), and report --diff (the diff command).
# In a subshell, as every run: run execs (a plain call here replaced this script with the program,
# which exited 0, and nothing below ever ran).
out=$(run "$program") || fail "second run: $out"
pids=$("$stats" list --dir "$dir" | awk 'NR > 1 { print $1 }')
[[ $(wc -w <<<"$pids") == 2 ]] || fail "list: $pids"
"$stats" report $pids --dir "$dir" --format json --top 0 >"$dir/two.json" || fail "report of two pids"
python3 - "$dir/two.json" $pids <<'PY' || fail "report of two pids: one JSON object per line, each its pid's"
import json, sys
reports = [json.loads(l) for l in open(sys.argv[1])]
assert [r["pid"] for r in reports] == [int(p) for p in sys.argv[2:]], [r["pid"] for r in reports]
assert all(r["peak_bytes"] == reports[0]["peak_bytes"] for r in reports)
PY
"$stats" report --diff --dir "$dir" | grep -q "4 unchanged" || fail "report --diff of two identical runs"
rm -f "$dir"/*.stats

# kill -9 mid-run: site_peak's block is still allocated when the process dies. Its parent (sh, then
# sleep) never reaps it: a zombie, which answers kill(pid, 0), is killed all the same, not running.
# (bash would reap its own child at once.)
sh -c 'LD_PRELOAD="$1" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$2" "$3" --hold >"$2/hold.out" 2>&1 &
       echo $! >"$2/hold.pid"; exec sleep 60' sh "$shim" "$dir" "$program" &
holder=$!
for _ in $(seq 500); do grep -q ready "$dir/hold.out" 2>/dev/null && break; sleep 0.01; done
pid=$(cat "$dir/hold.pid")
kill -9 "$pid"
for _ in $(seq 500); do [[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break; sleep 0.01; done
[[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) == Z ]] || fail "the killed program is not a zombie"
line=$("$stats" list --dir "$dir" | grep "^$pid ")
[[ $line == *killed* ]] || fail "list shows a killed process not yet reaped as: $line"
"$stats" report "$pid" --dir "$dir" --format json | grep -q '"state":"killed"' || fail "report: the zombie is not killed"
kill "$holder"; wait "$holder" 2>/dev/null
"$stats" list --dir "$dir" | grep -q "^$pid .*killed" || fail "list does not show the killed process"
"$stats" report "$pid" --dir "$dir" --format json --top 0 >"$dir/killed.json" || fail "report of the killed process"
check "$dir/killed.json" killed 4 || fail "killed run"

# POOLSHIM_STATS=python in a program that runs no CPython: one warning, the same exact native sites.
rm -f "$dir"/*.stats
out=$(env LD_PRELOAD="$shim" POOLSHIM_STATS=python POOLSHIM_STATS_DIR="$dir" "$program" 2>&1) ||
  fail "the program failed in python mode: $out"
[[ $(grep -c "runs no CPython interpreter: native frames only" <<<"$out") == 1 ]] ||
  fail "python mode without CPython: not exactly one warning: $out"
"$stats" report --dir "$dir" --format json --top 0 >"$dir/python-mode.json" || fail "report (python mode)"
check "$dir/python-mode.json" exited 0 || fail "python mode without CPython: native sites"

# Clear errors.
f=$(ls "$dir"/*.stats)
head -c 100 "$f" >"$dir/poolshim-0-1-1.stats"
msg=$("$stats" report "$dir/poolshim-0-1-1.stats" 2>&1) && fail "a truncated file was read"
echo "truncated: $msg"; [[ $msg == *truncated* ]] || fail "truncated: $msg"
head -c 4096 /dev/urandom >"$dir/poolshim-0-2-2.stats"
msg=$("$stats" report "$dir/poolshim-0-2-2.stats" 2>&1) && fail "a foreign file was read"
echo "foreign: $msg"; [[ $msg == *"not a poolshim stats file"* ]] || fail "foreign: $msg"
cp "$f" "$dir/poolshim-0-3-3.stats"
printf '\x63' | dd of="$dir/poolshim-0-3-3.stats" bs=1 seek=8 conv=notrunc status=none  # version 99
msg=$("$stats" report "$dir/poolshim-0-3-3.stats" 2>&1) && fail "a newer file was read"
echo "newer: $msg"; [[ $msg == *newer* ]] || fail "newer: $msg"

# Hostile headers: offsets near 2^64 (an unchecked sum wraps back into the file), misaligned, or
# past the end. Each must be a clear error (status 1), never a crash or a report.
header() { python3 "$(dirname "$0")/stats_header.py" "$@"; }
header "$f" header_size >/dev/null || fail "stats_header.py cannot read the file"
mkdir "$dir/bad"
n=0
for patch in kinds_offset=0xffffffffffffffc0 live_offset=0xfffffffffffffff8 sites_offset=0xffffffffffff0000 \
             modules_offset=0xffffffffffffffc0 slots_offset=0xffffffffffffff00 arena_offset=0xfffffffffffffff8 \
             "shard_count=1 shards_offset=0xfffffffffffff000" "event_capacity=8 events_offset=0xffffffffffffff80" \
             "python_size=64 python_offset=0xffffffffffffffc0" "kinds_offset=$(($(header "$f" kinds_offset) + 4))" \
             kinds_offset=4 "kinds_offset=$(header "$f" file_size)"; do
  n=$((n + 1))
  bad="$dir/bad/poolshim-0-$n-$n.stats"
  cp "$f" "$bad"
  # shellcheck disable=SC2086  # the patch is one or two FIELD=VALUE words
  header "$bad" $patch || fail "patching $patch"
  for cmd in "report $bad" "report $bad --format json" "report $bad --format html"; do
    # shellcheck disable=SC2086
    msg=$(timeout 20 "$stats" $cmd 2>&1 >/dev/null); rc=$?
    [[ $rc -eq 1 && $msg == *"corrupt (a region lies outside the file or is not 8-byte aligned)"* ]] ||
      fail "hostile header ($patch): '$cmd' exited $rc (want 1 and a clear error): $msg"
  done
  echo "hostile $patch: $msg"
done
msg=$(timeout 20 "$stats" list --dir "$dir/bad" 2>&1); rc=$?
[[ $rc -eq 1 && $(grep -c "corrupt" <<<"$msg") -eq $n ]] || fail "list of the hostile files exited $rc: $msg"
rm -rf "$dir/bad"

# Text fields that fill their array without a NUL: read up to the array's end, not beyond.
mkdir "$dir/odd"
odd="$dir/odd/poolshim-0-7-7.stats"
cp "$f" "$odd"
header "$odd" "exe=$(printf 'A%.0s' $(seq 256))" "cmdline=$(printf 'B%.0s' $(seq 512))" || fail "patching exe"
"$stats" report "$odd" --top 1 >"$dir/odd.txt" || fail "report of a file whose exe has no NUL"
head -1 "$dir/odd.txt" | grep -Eq "^pid [0-9]+ \([a-z]+\) A{256}$" || fail "exe without a NUL: $(head -1 "$dir/odd.txt")"
sed -n 2p "$dir/odd.txt" | grep -Eq "^  B{512}$" || fail "cmdline without a NUL: $(sed -n 2p "$dir/odd.txt")"
"$stats" report "$odd" --format json >"$dir/odd.json" || fail "json report of a file whose exe has no NUL"
python3 -c '
import json, sys
r = json.load(open(sys.argv[1], encoding="utf-8"))
assert r["exe"] == "A" * 256 and r["cmdline"] == "B" * 512, (len(r["exe"]), len(r["cmdline"]))' "$dir/odd.json" ||
  fail "json: exe or cmdline read past its field"
"$stats" list --dir "$dir/odd" | grep -Eq " B{512}$" || fail "list: cmdline read past its field"
# An end before the start (the clock stepped back): no wrapped run time.
header "$odd" end_ns=1000 start_ns=2000000000 || fail "patching end_ns"
"$stats" report "$odd" --top 1 | tee "$dir/odd.txt" | sed -n 3p
grep -q "ran 0.00 s" "$dir/odd.txt" || fail "an end before the start: $(sed -n 3p "$dir/odd.txt")"
# pid 0 and -1 with no exit recorded: killed, not running (kill(0 or -1, 0) asks about many processes).
for pid in 0 -1; do
  header "$odd" pid=$pid end_ns=0 || fail "patching pid"
  state=$("$stats" report "$odd" --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])')
  [[ $state == killed ]] || fail "pid $pid without an exit: state $state, not killed"
  "$stats" report "$odd" --format html | grep -q '<span class="state killed">killed</span>' ||
    fail "pid $pid without an exit: the HTML page does not say killed"
done
echo "fields without a NUL, an end before the start, pid 0 and -1: as they should be"
# No call stacks (flags bit 1: the folder had no room for the full file): said in text and HTML.
header "$odd" flags=2 || fail "patching flags"
"$stats" report "$odd" | grep -q "note: no call stacks" || fail "text: no note of the missing stacks"
"$stats" report "$odd" --format html | grep -q '<p class="note" id="stacks-off">No call stacks: the stats folder had no room' ||
  fail "html: no note of the missing stacks"
rm -rf "$dir/odd"

# Bad numbers are usage errors (status 2).
for top in -1 "" 1x " 3" +2 99999999999999999999; do
  msg=$("$stats" report --dir "$dir" --top "$top" 2>&1); rc=$?
  [[ $rc -eq 2 && $msg == *"bad --top"* ]] || fail "--top '$top' exited $rc: $msg"
done
echo "bad --top values: usage errors"

# A FIFO named like a stats file (the folder is writable by all, e.g. /dev/shm): list and report
# go on at once, saying what they skipped; opening it would block forever.
mkdir "$dir/fifo"
cp "$f" "$dir/fifo/"
mkfifo "$dir/fifo/poolshim-0-9-9.stats"
msg=$(timeout 20 "$stats" list --dir "$dir/fifo" 2>&1); rc=$?
[[ $rc -eq 0 ]] || fail "list with a FIFO in the folder exited $rc: $msg"
[[ $msg == *"skipped $dir/fifo/poolshim-0-9-9.stats: a FIFO"* ]] || fail "list did not say it skipped the FIFO: $msg"
timeout 20 "$stats" report --dir "$dir/fifo" --top 1 >/dev/null || fail "report with a FIFO in the folder"
msg=$(timeout 20 "$stats" report "$dir/fifo/poolshim-0-9-9.stats" 2>&1); rc=$?
[[ $rc -eq 1 && $msg == *"a FIFO, not a poolshim stats file"* ]] || fail "report of the FIFO exited $rc: $msg"
ln -s "$f" "$dir/fifo/link.stats"
msg=$(timeout 20 "$stats" report "$dir/fifo/link.stats" 2>&1); rc=$?
[[ $rc -eq 1 && $msg == *"symbolic link"* ]] || fail "report of a symbolic link exited $rc: $msg"
echo "FIFO and symbolic link: skipped or refused at once"
rm -rf "$dir/fifo"

# Another user's file in the folder, newer than ours and with a pid of its own: neither the
# newest nor "report PID" may pick it; named by its path it is read (root reading a user's file).
if [[ $(id -u) -eq 0 ]] && id nobody >/dev/null 2>&1; then
  mkdir "$dir/others"
  cp "$f" "$dir/others/"
  mine_pid=$(header "$f" pid)
  forged="$dir/others/poolshim-65534-999999-1.stats"
  cp "$f" "$forged"
  header "$forged" pid=999999 start_ns=now-0 exe=/forged cmdline=forged || fail "patching the forged file"
  chown nobody "$forged"
  "$stats" list --dir "$dir/others" >"$dir/others.txt" 2>&1 || fail "list with another user's file"
  cat "$dir/others.txt"
  grep -q "another user's file (uid $(id -u nobody))" "$dir/others.txt" || fail "list did not say it skipped the other user's file"
  grep -q "forged" <(grep -v "skipped" "$dir/others.txt") && fail "list shows the other user's file"
  pid=$("$stats" report --dir "$dir/others" --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)["pid"])')
  [[ $pid == "$mine_pid" ]] || fail "the newest file is another user's (pid $pid)"
  msg=$("$stats" report 999999 --dir "$dir/others" 2>&1); rc=$?
  [[ $rc -eq 1 && $msg == *"no stats file of pid 999999"*"1 file of other users not read"* ]] ||
    fail "report PID of another user's file exited $rc: $msg"
  "$stats" report "$forged" --top 1 | head -1 | grep -q "^pid 999999 .*/forged$" || fail "a named file of another user"
  echo "another user's file: left out of the folder's files, readable by its path"
  rm -rf "$dir/others"
else
  echo "stats_test: note: not root (or no user nobody): the check of another user's file is skipped"
fi

# A program whose path is not UTF-8 (a byte 0xff): exe, cmdline and module paths carry it; every
# JSON output must still be valid (U+FFFD in its place).
rm -f "$dir"/*.stats
mkdir "$dir/bin"
odd_program="$dir/bin/stats_sites_"$'\xff'"program"
cp "$program" "$odd_program"
out=$(run "$odd_program") || fail "the copy with a 0xff byte in its name failed: $out"
"$stats" report --dir "$dir" --format json --top 0 >"$dir/odd-name.json" || fail "report of the program named with 0xff"
python3 -c '
import json, sys
r = json.load(open(sys.argv[1], encoding="utf-8"))  # strict: a raw 0xff is an error
assert r["exe"].endswith("/stats_sites_\ufffdprogram"), r["exe"]
assert "stats_sites_\ufffdprogram" in r["cmdline"], r["cmdline"]
mods = {f["module"] for s in r["sites"] for f in s["frames"]}
assert any(m.endswith("stats_sites_\ufffdprogram") for m in mods), mods
print("exe", ascii(r["exe"]))' "$dir/odd-name.json" || fail "the JSON of a program named with 0xff"
check "$dir/odd-name.json" exited 0 || fail "the program named with 0xff: its sites"
"$stats" node --dir "$dir" --socket "$dir/none.sock" --format json >"$dir/odd-node.json" || fail "node json"
python3 -c 'import json, sys; json.load(open(sys.argv[1], encoding="utf-8"))' "$dir/odd-node.json" ||
  fail "node: invalid JSON for a program named with 0xff"
"$stats" report --dir "$dir" --format html | python3 -c '
import json, re, sys
page = sys.stdin.buffer.read().decode("utf-8")  # strict
data = re.search(r"<script type=\"application/json\" id=\"poolshim-data\">(.*?)</script>", page, re.S).group(1)
json.loads(data)' || fail "html: invalid UTF-8 or JSON for a program named with 0xff"
echo "a program named with 0xff: valid JSON (report, node, html)"
echo "stats_test: OK"

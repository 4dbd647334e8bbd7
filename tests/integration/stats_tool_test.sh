#!/usr/bin/env bash
# poolshim-stats' diff, node, top, memory_viz, pool hit rate and clean, end to end: stats_tool_program
# (known call sites; arguments change them) under the shim with POOLSHIM_STATS=native, and a
# synthetic stats file with a known event ring (stats_fake_file). Every figure checked is one the
# program or the synthetic file promises.
# usage: stats_tool_test.sh SCENARIO --shim libpoolshim.so --program stats_tool_program
#                           --stats poolshim-stats --fake stats_fake_file --daemon poolshimd
#                           --schema REPORT_SCHEMA.md (diff and node: their JSON checked against it)
# Scenarios: diff, node, top, memory_viz, pool_hit_rate, clean, collapsed_names, cli
set -u
scenario=${1:?scenario}; shift
shim="" program="" stats="" fake="" daemon="" schema="" pair="" chpair=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --shim) shim=$2; shift 2 ;;
    --program) program=$2; shift 2 ;;
    --stats) stats=$2; shift 2 ;;
    --fake) fake=$2; shift 2 ;;
    --daemon) daemon=$2; shift 2 ;;
    --schema) schema=$2; shift 2 ;;
    --pair) pair=$2; shift 2 ;;  # buffer_pair: a named buffer held while node runs
    --channel-pair) chpair=$2; shift 2 ;;  # channel_pair: a channel's writer held while node runs
    *) echo "stats_tool_test: unknown option $1" >&2; exit 2 ;;
  esac
done
fail() { echo "stats_tool_test $scenario: FAIL: $*" >&2; exit 1; }
dir=$(mktemp -d /tmp/poolshim-stats-tool-XXXXXX)
chmod 700 "$dir"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
# exec: run is only called in subshells ($(...) and &), so a background pid is the program itself.
run() { exec env LD_PRELOAD="$shim" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$dir" "$@"; }
wait_ready() {  # wait_ready FILE: the program printed "ready"
  for _ in $(seq 1000); do grep -q ready "$1" 2>/dev/null && return 0; sleep 0.01; done
  cat "$1" >&2
  fail "the program did not get ready"
}
expect_error() {  # expect_error STATUS TEXT COMMAND...: fails with STATUS and says TEXT
  local want=$1 text=$2; shift 2
  local msg rc
  msg=$("$@" 2>&1); rc=$?
  echo "error ($rc): $msg"
  [[ $rc -eq $want ]] || fail "'$*' exited $rc, not $want: $msg"
  [[ $msg == *"$text"* ]] || fail "'$*' did not say '$text': $msg"
}
check_schema() {  # check_schema KIND JSON...: exactly the keys and types REPORT_SCHEMA.md's part for KIND has
  [[ -f "$schema" ]] || fail "no --schema REPORT_SCHEMA.md given"
  python3 "$(dirname "$0")/check_report_schema.py" --all-paths --kind "$@" || fail "the $1 JSON does not match $schema"
}

case "$scenario" in
diff)
  out=$(run "$program" --leaks 2 --only-a) || fail "first run: $out"
  old=$(ls "$dir"/*.stats)
  sleep 0.01
  out=$(run "$program" --leaks 5 --only-b) || fail "second run: $out"
  new=$(ls "$dir"/*.stats | grep -v "$old")
  old_pid=$(basename "$old" | cut -d- -f3)
  new_pid=$(basename "$new" | cut -d- -f3)
  "$stats" diff "$old_pid" "$new_pid" --dir "$dir" --format json --top 0 >"$dir/diff.json" || fail "diff by pid"
  "$stats" diff "$old" "$new" --format json --top 0 >"$dir/by_path.json" || fail "diff by path"
  "$stats" diff previous latest --dir "$dir" --format json --top 0 >"$dir/by_name.json" || fail "diff by name"
  python3 - "$dir/diff.json" "$dir/by_path.json" "$dir/by_name.json" "$old_pid" "$new_pid" <<'PY' || fail "diff json"
import json, sys
MiB, KiB = 1 << 20, 1 << 10
d = json.load(open(sys.argv[1]))
for other in sys.argv[2:4]:
    o = json.load(open(other))
    assert [s["change"] for s in o["sites"]] == [s["change"] for s in d["sites"]], other
    assert o["old"]["pid"] == d["old"]["pid"] and o["new"]["pid"] == d["new"]["pid"], other
assert d["old"]["pid"] == int(sys.argv[4]) and d["new"]["pid"] == int(sys.argv[5]), (d["old"], d["new"])
def fn(s):
    for f in s["frames"][:5]:
        for name in ("site_leak", "site_only_a", "site_only_b", "site_reuse", "site_pinned"):
            if name + "(" in f["function"] or f["function"].endswith(name):
                assert f["file"].endswith("stats_tool_program.cpp") and f["line"] > 0, f
                return name
    return None
got = [(fn(s), s["status"], s["change"]) for s in d["sites"]]
for g in got: print(g)
ch = lambda peak, live, total, allocs: {"bytes_at_peak": peak, "live_bytes": live, "bytes_allocated": total, "allocs": allocs}
want = [
    ("site_leak", "changed", ch(3 * MiB, 3 * MiB, 3 * MiB, 3)),
    ("site_only_b", "new", ch(768 * KiB, 768 * KiB, 768 * KiB, 1)),
    ("site_only_a", "gone", ch(-256 * KiB, -256 * KiB, -256 * KiB, -1)),
]
assert got == want, f"got {got}, want {want} (largest change of bytes at the peak first)"
leak = d["sites"][0]
assert leak["old"]["allocs"] == 2 and leak["new"]["allocs"] == 5, leak
assert d["sites"][1]["old"] is None and d["sites"][2]["new"] is None
c = d["counts"]
assert (c["changed"], c["new"], c["gone"]) == (1, 1, 1) and c["unchanged"] >= 2, c  # site_pinned, site_reuse
dev = [k for k in d["kinds"] if k["device"] == 0 and k["kind"] == "device"]
assert len(dev) == 1 and dev[0]["change"]["allocs"] == 3 and dev[0]["change"]["bytes_allocated"] == 3 * MiB + 512 * KiB, dev
print("diff: site_leak +3 MiB, site_only_b new, site_only_a gone, others unchanged")
PY
  check_schema diff "$schema" "$dir/diff.json"
  "$stats" diff --dir "$dir" | tee "$dir/diff.txt"
  grep -q "^old: pid $old_pid " "$dir/diff.txt" || fail "the default OLD is not the previous run"
  grep -q "^new: pid $new_pid " "$dir/diff.txt" || fail "the default NEW is not the latest run"
  grep -Eq "^  #1 +changed +peak \+3\.0 MiB \(2\.0 MiB -> 5\.0 MiB\)" "$dir/diff.txt" || fail "text: site_leak's line"
  grep -A1 "^  #1 " "$dir/diff.txt" | grep -Eq "^       live \+3\.0 MiB, total \+3\.0 MiB, allocs \+3 \(2 -> 5\)$" ||
    fail "text: site_leak's second line"
  # Below the two lines of figures: the simulator's cudaMalloc (three frames: the lambda inlined into
  # api<>, inlined into cudaMalloc), then site_leak.
  grep -A5 "^  #1 " "$dir/diff.txt" | grep -q "site_leak() (stats_tool_program.cpp:" || fail "text: site_leak's frame"
  # Readable at 100 columns: the sites' lines (one line of all the figures was 106 columns wide).
  long=$(grep -E "^  #[0-9]|^       live " "$dir/diff.txt" | awk 'length($0) > 100')
  [[ -z $long ]] || fail "text: site lines over 100 columns: $long"
  grep -Eq "^  #2 +new " "$dir/diff.txt" && grep -Eq "^  #3 +gone " "$dir/diff.txt" || fail "text: new and gone"
  grep -q "call sites: 1 changed, 1 new, 1 gone" "$dir/diff.txt" || fail "text: counts"
  "$stats" diff --dir "$dir" --sort count --format json | python3 -c '
import json, sys; d = json.load(sys.stdin); assert [s["change"]["allocs"] for s in d["sites"]] == [3, 1, -1], d' ||
    fail "--sort count"
  # report merges stacks as diff does (one key): a run against itself is all unchanged, as many
  # sites as the report has.
  "$stats" diff "$new" "$new" --format json --top 0 >"$dir/self.json" || fail "diff of a run with itself"
  "$stats" report "$new" --format json --top 0 >"$dir/new.json" || fail "report of the new run"
  python3 - "$dir/self.json" "$dir/new.json" <<'PY' || fail "report and diff merge sites differently"
import json, sys
d, r = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
c = d["counts"]
assert (c["changed"], c["new"], c["gone"]) == (0, 0, 0) and c["unchanged"] == len(r["sites"]), (c, len(r["sites"]))
print(f"diff of a run with itself: {c['unchanged']} sites unchanged, as many as the report's")
PY
  # A symbol without line information (here _start, from crt1.o, built without -g; shown with
  # --all-frames) keeps its module in the text: "_start (stats_tool_program+0x...)", not the name
  # alone; the JSON has module and offset apart, unchanged.
  "$stats" report "$new" --top 0 --all-frames >"$dir/new.txt" || fail "text report of the new run"
  "$stats" report "$new" --top 0 --all-frames --format json >"$dir/new-all.json" || fail "report --all-frames"
  python3 - "$dir/new-all.json" "$dir/new.txt" <<'PY' || fail "frames without line information"
import json, os, sys
r, text = json.load(open(sys.argv[1])), open(sys.argv[2]).read().splitlines()
bare = {(f["function"], os.path.basename(f["module"]), f["offset"]) for s in r["sites"] for f in s["frames"]
        if f["function"] and not f["file"] and f["module"]}
assert bare, "no frame with a function but no file: nothing to check"
for fn, module, offset in sorted(bare):
    want = f"       {fn} ({module}+{offset:#x})"
    assert want in text, f"no line {want!r}; {fn}'s lines: {[l for l in text if fn in l][:3]}"
    assert f"       {fn}" not in text, f"{fn} shown without its module"
print(f"{len(bare)} frames without lines name their module, e.g. {sorted(bare)[0]}")
PY
  # Clear errors.
  expect_error 1 "no stats file of pid 999999999" "$stats" diff 999999999 latest --dir "$dir"
  expect_error 1 "No such file" "$stats" diff "$dir/none.stats" latest --dir "$dir"
  expect_error 1 "names no process" "$stats" diff bogus latest --dir "$dir"
  expect_error 2 "give OLD and NEW" "$stats" diff latest --dir "$dir"
  expect_error 2 "bad --format" "$stats" diff --dir "$dir" --format collapsed
  # A file the folder holds but that cannot be read (here: a newer poolshim's) is named with the
  # reason, not passed over as if there were none.
  mkdir "$dir/newer"
  cp "$new" "$dir/newer/"
  python3 "$(dirname "$0")/stats_header.py" "$dir/newer/$(basename "$new")" version=99 || fail "patching the version"
  expect_error 1 "not read: $dir/newer/$(basename "$new"): written by a newer poolshim (stats file version 99" \
    "$stats" report --dir "$dir/newer"
  expect_error 1 "no stats file of pid $new_pid in $dir/newer; not read: $dir/newer/$(basename "$new"): written by a newer" \
    "$stats" report "$new_pid" --dir "$dir/newer"
  expect_error 1 "written by a newer poolshim" "$stats" diff --dir "$dir/newer"
  # list says so of what it does not take, rather than printing its table for `list --format json`.
  expect_error 2 "list takes --dir only, not --format" "$stats" list --format json --dir "$dir"
  expect_error 2 "list takes no process: '$new_pid'" "$stats" list "$new_pid" --dir "$dir"
  "$stats" list --dir "$dir" | grep -q "^$new_pid " || fail "list"
  # Symbols come from the file the process ran only: a program rebuilt (here: replaced by another
  # executable) since its run has another build-id, and its frames stay module+offset, with a note,
  # instead of naming the new file's functions.
  mkdir "$dir/rebuilt"
  cp "$program" "$dir/rebuilt/prog"
  out=$(run env POOLSHIM_STATS_DIR="$dir/rebuilt" "$dir/rebuilt/prog" --leaks 1) || fail "the copied program: $out"
  "$stats" report --dir "$dir/rebuilt" --top 0 2>"$dir/same.err" | tee "$dir/same.txt" | grep -q "site_leak() (stats_tool_program.cpp:" ||
    fail "the copied program's sites are not symbolised: $(cat "$dir/same.txt" "$dir/same.err")"
  grep -q "build-id" "$dir/same.err" && fail "a build-id note for the very file that ran: $(cat "$dir/same.err")"
  cp "$fake" "$dir/rebuilt/prog"
  "$stats" report --dir "$dir/rebuilt" --top 0 --format json 2>"$dir/rebuilt.err" >"$dir/rebuilt.json" || fail "report of the replaced program"
  cat "$dir/rebuilt.err"
  grep -q "^poolshim-stats: $dir/rebuilt/prog is not the file the process ran (its build-id differs" "$dir/rebuilt.err" ||
    fail "no note of the replaced program"
  python3 - "$dir/rebuilt.json" "$dir/rebuilt/prog" <<'PY' || fail "frames of the replaced program"
import json, sys
d, prog = json.load(open(sys.argv[1])), sys.argv[2]
mine = [f for s in d["sites"] for f in s["frames"] if f["module"] == prog]
assert mine, "no frame in the program"
named = [f for f in mine if f["function"] or f["file"]]
assert not named, f"frames named from a file the process did not run: {named}"
others = [f for s in d["sites"] for f in s["frames"] if f["module"] != prog and f["function"]]
assert others, "the other modules' frames lost their names too"
print(f"{len(mine)} frames of the replaced program as module+offset; {len(others)} others named")
PY
  rm -f "$dir"/*.stats
  (run "$program") >/dev/null || fail "third run"  # a subshell: run execs
  expect_error 1 "no second stats file" "$stats" diff --dir "$dir"
  ;;

node)
  [[ -x "$daemon" ]] || fail "no daemon given"
  sock=$dir/poolshimd.sock
  "$daemon" --socket "$sock" --region 256M --slab 64M --fill-threads 1 >"$dir/daemon.log" 2>&1 &
  dpid=$!
  pids+=("$dpid")
  for _ in $(seq 300); do [[ -S "$sock" ]] && "$daemon" --status --socket "$sock" >/dev/null 2>&1 && break; sleep 0.02; done
  "$daemon" --status --socket "$sock" >/dev/null 2>&1 || { cat "$dir/daemon.log" >&2; fail "the daemon did not come up"; }
  out=$(POOLSHIM_SOCKET=$sock run "$program" --leaks 1) || fail "the exiting run: $out"
  exited_pid=$(basename "$(ls "$dir"/*.stats)" | cut -d- -f3)
  POOLSHIM_SOCKET=$sock run "$program" --hold >"$dir/hold.out" 2>&1 &
  held_pid=$!
  pids+=("$held_pid")
  wait_ready "$dir/hold.out"
  # The exited run's slab goes back when the daemon sees its process end: wait for that.
  for _ in $(seq 200); do "$daemon" --status --socket "$sock" | grep -q " clients=1 " && break; sleep 0.01; done
  # A named buffer, held by a process of its own while node looks (issue #14).
  [[ -x "$pair" ]] || fail "no --pair buffer_pair given"
  mkfifo "$dir/hold.in"
  POOLSHIM_SOCKET=$sock "$pair" hold node.frames <"$dir/hold.in" >"$dir/pair.out" 2>&1 &
  pids+=("$!")
  exec 7>"$dir/hold.in"
  for _ in $(seq 200); do grep -q "holding node.frames" "$dir/pair.out" && break; sleep 0.01; done
  grep -q "holding node.frames" "$dir/pair.out" || { cat "$dir/pair.out"; fail "no named buffer held"; }
  # A channel, its writer a process of its own (issue #15).
  [[ -x "$chpair" ]] || fail "no --channel-pair channel_pair given"
  POOLSHIM_SOCKET=$sock "$chpair" writer-hold node.chan >"$dir/chan.out" 2>&1 &
  pids+=("$!")
  for _ in $(seq 200); do grep -q "ready" "$dir/chan.out" && break; sleep 0.01; done
  grep -q "ready" "$dir/chan.out" || { cat "$dir/chan.out"; fail "no channel held"; }
  # The holders are clients too: the query below waits for 3 clients.
  for _ in $(seq 200); do "$daemon" --status --socket "$sock" | grep -q " clients=3 " && break; sleep 0.01; done
  "$stats" node --dir "$dir" --socket "$sock" | tee "$dir/node.txt"
  "$stats" node --dir "$dir" --socket "$sock" --format json >"$dir/node.json" || fail "node json"
  "$daemon" --status --socket "$sock" | tee "$dir/status.txt"
  python3 - "$dir/node.json" "$held_pid" "$exited_pid" "$dir/status.txt" <<'PY' || fail "node json"
import json, re, sys
MiB, KiB = 1 << 20, 1 << 10
d = json.load(open(sys.argv[1]))
held, exited = int(sys.argv[2]), int(sys.argv[3])
procs = {p["pid"]: p for p in d["processes"]}
assert set(procs) == {held, exited}, procs.keys()
h, e = procs[held], procs[exited]
# held: 64 KiB pinned + 3 x 1 MiB live; its peak adds one 64 KiB block of site_reuse.
assert (h["state"], h["live_bytes"], h["peak_bytes"]) == ("running", 3 * MiB + 64 * KiB, 3 * MiB + 128 * KiB), h
assert (e["state"], e["live_bytes"], e["peak_bytes"]) == ("exited", 1 * MiB + 64 * KiB, 1 * MiB + 128 * KiB), e
kinds = {(k["device"], k["kind"]): k for k in d["kinds"]}
dev, pin = kinds[(0, "device")], kinds[(0, "pinned")]
assert (dev["processes"], dev["live_bytes_running"], dev["peak_bytes_sum"], dev["allocs"]) == \
    (2, 3 * MiB, 3 * MiB + 64 * KiB + 1 * MiB + 64 * KiB, 3 + 4 + 1 + 4), dev
assert (pin["processes"], pin["live_bytes_running"], pin["peak_bytes_sum"], pin["allocs"]) == (2, 64 * KiB, 128 * KiB, 2), pin
dm = d["daemon"]
assert dm["answered"] is True, dm
status = open(sys.argv[4]).read().splitlines()
first = dict(kv.split("=") for kv in status[0].split())
for key in ("region_bytes", "lent_bytes", "free_bytes", "device_lent_bytes"):
    assert dm[key] == int(first[key]), (key, dm[key], first[key])
assert dm["region_bytes"] == 256 * MiB, dm
assert dm["clients"] == int(first["clients"]), (dm["clients"], first["clients"])
clients = {c["pid"]: c for c in dm["per_client"]}
lent = {int(re.search(r"pid=(\d+)", l).group(1)): int(re.search(r"lent_bytes=(\d+)", l).group(1))
        for l in status[1:] if l.startswith("client")}
assert {p: c["lent_bytes"] for p, c in clients.items()} == lent, (clients, lent)
assert sum(c["lent_bytes"] for c in dm["per_client"]) == dm["lent_bytes"], dm
# The held program's pinned block came from a slab the daemon lent it (the exited one's went back).
assert held in clients and dm["clients"] == 3, (clients, dm)  # and the named buffer's and channel's holders
nb = dm["named_buffers"]
assert len(nb) == 1 and (nb[0]["name"], nb[0]["kind"], nb[0]["shared"], nb[0]["bytes"], nb[0]["references"]) == \
    ("node.frames", "host", False, 4096, 1), nb
assert nb[0]["creator_pid"] in clients and dm["named_bytes"] == 64 * MiB, (nb, dm["named_bytes"])
print(f"named buffer {nb[0]['name']}: {nb[0]['bytes']} bytes, one 64 MiB slab of the region")
ch = dm["channels"]
assert len(ch) == 1 and (ch[0]["name"], ch[0]["writer"], ch[0]["readers"], ch[0]["max_readers"], ch[0]["capacity"],
                         ch[0]["backlog"], ch[0]["held_bytes"], ch[0]["messages"], ch[0]["shared"]) == \
    ("node.chan", "open", 0, 2, 4096, 0, 0, 0, False) and ch[0]["writer_pid"] in clients, ch
print(f"channel {ch[0]['name']}: writer pid {ch[0]['writer_pid']}, {ch[0]['readers']}/{ch[0]['max_readers']} readers")
assert h["daemon_lent_bytes"] == clients[held]["lent_bytes"] == 64 * MiB, (h, clients)  # one 64 MiB slab
print(f"held pid {held}: the daemon lent it {h['daemon_lent_bytes']} bytes")
assert e["daemon_lent_bytes"] is None, e
print("node: processes, sums and the daemon's figures as promised")
PY
  grep -Eq "^  $held_pid +running +3\.1 MiB +3\.1 MiB " "$dir/node.txt" || fail "text: the held process's line"
  grep -Eq "^  $exited_pid +exited +1\.1 MiB +1\.1 MiB +- " "$dir/node.txt" || fail "text: the exited process's line"
  grep -A1 "^daemon on $sock:$" "$dir/node.txt" | grep -Eq "^  pinned region 256\.0 MiB, lent [0-9.]+ [KMG]?i?B, free " ||
    fail "text: the daemon's lines"
  grep -Eq "^  buffer node\.frames +host +4\.0 KiB, 1 reference, created by pid [0-9]+" "$dir/node.txt" ||
    fail "text: the named buffer's line"
  grep -Eq "^  channel node\.chan +0/2 readers, 4\.0 KiB ring, 0 B backlog, 0 B held, 0 messages, writer pid [0-9]+$" \
    "$dir/node.txt" || fail "text: the channel's line"
  exec 7>&-  # the holder lets its buffer go
  # No daemon: one line, status 0, in text and JSON.
  out=$("$stats" node --dir "$dir" --socket "$dir/none.sock") || fail "node failed without a daemon: $out"
  echo "$out" | tail -1
  [[ $(echo "$out" | grep -c "^daemon") -eq 1 ]] || fail "more than one line about the absent daemon"
  echo "$out" | tail -1 | grep -q "^daemon: none answers (" || fail "no line about the absent daemon: $out"
  "$stats" node --dir "$dir" --socket "$dir/none.sock" --format json >"$dir/node_none.json" || fail "node json without a daemon"
  python3 -c '
import json, sys; d = json.load(open(sys.argv[1]))["daemon"]; assert d["answered"] is False and d["why"], d' \
    "$dir/node_none.json" || fail "json without a daemon"
  # Both forms of $.daemon: the one that answered and the one that did not.
  check_schema node "$schema" "$dir/node.json" "$dir/node_none.json"
  # An untrusted socket directory is refused before a byte is sent, not an error of node.
  mkdir -m 777 "$dir/open" && ln -s "$sock" "$dir/open/poolshimd.sock"
  out=$("$stats" node --dir "$dir" --socket "$dir/open/poolshimd.sock") || fail "node failed on an untrusted socket"
  echo "$out" | tail -1 | grep -q "^daemon: none answers (not trusting" || fail "untrusted socket: $out"
  expect_error 1 "No such file" "$stats" node --dir "$dir/missing"
  expect_error 2 "node takes no process" "$stats" node 1234 --dir "$dir"
  ;;

top)
  run "$program" --grow >"$dir/grow.out" 2>&1 &
  grow_pid=$!
  pids+=("$grow_pid")
  wait_ready "$dir/grow.out"
  "$stats" top --dir "$dir" --interval 0.5 --iterations 3 >"$dir/top.txt" || fail "top"
  cat "$dir/top.txt"
  if grep -q $'\x1b' "$dir/top.txt"; then fail "escape codes although stdout is no terminal"; fi
  python3 - "$dir/top.txt" "$grow_pid" <<'PY' || fail "top output"
import re, sys
text, pid = open(sys.argv[1]).read(), sys.argv[2]
frames = [f for f in re.split(r"^--- poolshim-stats top ", text, flags=re.M) if f.strip()]
assert len(frames) == 3, f"{len(frames)} refreshes"
counts, rates = [], []
for n, f in enumerate(frames):
    lines = f.splitlines()
    assert f"({n + 1} of 3): 1 running, " in lines[0] and not lines[0].endswith("..."), f"title: {lines[0]}"
    row = [i for i, l in enumerate(lines) if re.match(rf"^  {pid} ", l)]
    assert len(row) == 1, f"pid {pid} not shown once:\n{f}"
    cols = lines[row[0]].split()
    rates.append(cols[5])
    site = [l for l in lines[row[0] + 1:] if "site_grow" in l and " live in " in l]
    assert len(site) == 1, f"not one site_grow row:\n{f}"
    # Its line over time, under the process's (the sites with the largest own peaks, --sites 3).
    # The sampler finds a site within some tens of ms of samples (README): the first refresh may
    # come before that on a loaded machine (it read "live over 0.04 s (3 samples)" in a CI run);
    # the later ones, 0.5 s apart, must have it.
    over_time = [l for l in lines[row[0] + 1:] if re.match(r"^ +site_grow\S*  \[.*\] max ", l)]
    assert len(over_time) == 1 or (n == 0 and not over_time), f"not one site_grow line over time:\n{f}"
    m = re.search(r"live in (\d+) \((\d+) allocs\)", site[0])
    assert m and "stats_tool_program.cpp:" in site[0], site[0]
    counts.append(int(m.group(1)))
print("site_grow live counts:", counts, "allocs/s:", rates)
assert counts[0] < counts[1] < counts[2], counts
assert rates[0] == "-" and all(5 <= float(r) <= 500 for r in rates[1:]), rates  # every 20 ms: about 50/s
# Not a terminal: 100 columns, as the text report (a site with its caller reached 119).
long = [l for l in text.splitlines() if len(l) > 100]
assert not long, f"lines over 100 columns: {long}"
PY
  # A line that does not fit even so (a long folder in the title) is cut at 100, and says so.
  long_dir="$dir/$(printf 'd%.0s' {1..90})"
  mkdir "$long_dir"
  "$stats" top --dir "$long_dir" --iterations 1 >"$dir/top_long.txt" || fail "top in a long folder"
  title=$(head -1 "$dir/top_long.txt")
  echo "$title"
  [[ ${#title} -eq 100 && $title == "--- poolshim-stats top "*"..." ]] || fail "the long title is not cut at 100: $title"
  # Every command that takes --no-symbols says so in its usage lines (top's and diff's did not).
  "$stats" --help >"$dir/help.txt" || fail "--help"
  "$stats" top --dir "$dir" --no-symbols --iterations 1 >/dev/null || fail "top --no-symbols"
  grow_file=$(ls "$dir"/*-"$grow_pid"-*.stats)
  "$stats" diff "$grow_file" "$grow_file" --no-symbols >/dev/null || fail "diff --no-symbols"
  python3 - "$dir/help.txt" <<'PY' || fail "usage lines"
import re, sys
usage, block = {}, None
for line in open(sys.argv[1]).read().split("\n\n")[0].splitlines():
    m = re.match(r"^(?:Usage:)? +poolshim-stats (\w+)", line)
    if m:
        block = usage.setdefault(m.group(1), [])
    block.append(line)
for cmd in ("report", "diff", "top"):
    text = "\n".join(usage.get(cmd, []))
    assert "[--no-symbols]" in text, f"{cmd}'s usage lacks --no-symbols:\n{text}"
print("usage: report, diff and top name --no-symbols")
PY
  expect_error 2 "bad --interval" "$stats" top --dir "$dir" --interval 0
  expect_error 2 "bad --iterations" "$stats" top --dir "$dir" --iterations x
  expect_error 1 "No such file" "$stats" top --dir "$dir/missing" --iterations 1
  ;;

cli)
  # The command line (issue #16): --name=value forms, each command's own --help, which process a
  # report without a name picked, a missing pid's error, and the schema check of one user's report.
  out=$(run "$program" --leaks 2) || fail "first run: $out"
  first_pid=$(basename "$(ls "$dir"/*.stats)" | cut -d- -f3)
  sleep 0.01
  out=$(run "$program" --leaks 3) || fail "second run: $out"
  second_pid=$(basename "$(ls "$dir"/*.stats | grep -v -- "-$first_pid-")" | cut -d- -f3)
  "$stats" report --dir "$dir" --top 3 --format json >"$dir/spaced.json" 2>/dev/null || fail "report --top 3"
  "$stats" report --dir="$dir" --top=3 --format=json --sort=live >"$dir/equals.json" 2>/dev/null ||
    fail "report --dir=DIR --top=3 --format=json --sort=live"
  "$stats" report --dir "$dir" --top 3 --format json --sort live >"$dir/spaced_live.json" 2>/dev/null || fail "--sort live"
  cmp -s "$dir/spaced_live.json" "$dir/equals.json" || fail "--top=3 --format=json differs from --top 3 --format json"
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); assert len(r["sites"]) == 3, len(r["sites"])' \
    "$dir/equals.json" || fail "--top=3: not 3 sites"
  "$stats" diff --dir="$dir" --format=json --top=2 | python3 -c 'import json, sys; assert len(json.load(sys.stdin)["sites"]) <= 2' ||
    fail "diff --format=json --top=2"
  expect_error 2 "takes no value" "$stats" report --dir "$dir" --no-symbols=yes
  expect_error 2 "bad --top" "$stats" report --dir "$dir" --top=
  # report --help: report's usage and options only; likewise clean's and node's.
  "$stats" report --help >"$dir/report-help.txt" || fail "report --help"
  cat "$dir/report-help.txt"
  help_has() {  # help_has FILE yes|no TEXT
    if grep -qF -- "$3" "$1"; then [[ $2 == yes ]] || fail "$1 has '$3'"; else [[ $2 == no ]] || fail "$1 lacks '$3'"; fi
  }
  for t in "poolshim-stats report [PID|FILE...]" "report     one process" "--sort KEY" "--format FMT" "--output FILE" \
           "--no-symbols" "-h, --help"; do help_has "$dir/report-help.txt" yes "$t"; done
  for t in "poolshim-stats node" "poolshim-stats clean" "--older-than" "--socket" "--interval" "top        a live"; do
    help_has "$dir/report-help.txt" no "$t"
  done
  "$stats" clean --help >"$dir/clean-help.txt" || fail "clean --help"
  help_has "$dir/clean-help.txt" yes "--older-than"; help_has "$dir/clean-help.txt" no "--sort"
  "$stats" node --help >"$dir/node-help.txt" || fail "node --help"
  help_has "$dir/node-help.txt" yes "--socket"; help_has "$dir/node-help.txt" no "--top N"
  "$stats" diff --help >"$dir/diff-help.txt" || fail "diff --help"
  help_has "$dir/diff-help.txt" yes "poolshim-stats diff [OLD NEW]"; help_has "$dir/diff-help.txt" no "--output FILE"
  # No process named while the folder holds two: the newest, said on stderr with the other one.
  "$stats" report --dir "$dir" --top 1 2>"$dir/picked.err" >/dev/null || fail "report of the newest"
  cat "$dir/picked.err"
  grep -q "^poolshim-stats: reporting pid $second_pid (exited, .*the newest of 2 processes in $dir" "$dir/picked.err" ||
    fail "report does not say which process it picked"
  grep -q "also: pid $first_pid (exited" "$dir/picked.err" || fail "report does not name the other process"
  "$stats" report "$second_pid" --dir "$dir" --top 1 2>"$dir/named.err" >/dev/null || fail "report PID"
  [[ ! -s "$dir/named.err" ]] || fail "a note although the process was named: $(cat "$dir/named.err")"
  # A pid without a file: the error says where to look.
  expect_error 1 "(poolshim-stats list --dir $dir shows the processes that have one)" "$stats" report 999999999 --dir "$dir"
  # One user's report (no framework, only some sites) passes the schema check; a key not in the
  # document still fails it.
  python3 "$(dirname "$0")/check_report_schema.py" "$schema" "$dir/equals.json" || fail "one user's report"
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); r["bogus"] = 1; json.dump(r, open(sys.argv[2], "w"))' \
    "$dir/equals.json" "$dir/bogus.json"
  msg=$(python3 "$(dirname "$0")/check_report_schema.py" "$schema" "$dir/bogus.json" 2>&1) &&
    fail "an undocumented key passed"
  [[ $msg == *'$.bogus: in the report but not documented'* ]] || fail "an undocumented key: ${msg//FAIL/fail}"
  echo "an undocumented key: refused by the schema check"
  ;;

memory_viz)
  mkdir "$dir/fake"
  "$fake" "$dir/fake/poolshim-0-4242-1.stats" || fail "stats_fake_file"
  "$stats" report "$dir/fake/poolshim-0-4242-1.stats" --format memory_viz --output "$dir/fake.pickle" \
    2>"$dir/fake.err" || { cat "$dir/fake.err"; fail "memory_viz of the synthetic file"; }
  cat "$dir/fake.err"
  grep -q "newest 8 of 10 events" "$dir/fake.err" || fail "no note of the events the ring lost"
  grep -q "2 pinned-host events left out" "$dir/fake.err" || fail "no note of the pinned events"
  grep -q "1 frees of allocations of unknown size" "$dir/fake.err" || fail "no note of the unknown free"
  "$stats" report "$dir/fake/poolshim-0-4242-1.stats" --format memory_viz 2>/dev/null >"$dir/stdout.pickle" ||
    fail "memory_viz to stdout"
  cmp -s "$dir/fake.pickle" "$dir/stdout.pickle" || fail "--output and stdout differ"
  python3 "$(dirname "$0")/memory_viz_check.py" "$dir/fake.pickle" --synthetic || fail "the synthetic snapshot"
  "$fake" "$dir/fake/poolshim-0-4243-2.stats" --no-ring || fail "stats_fake_file --no-ring"
  expect_error 1 "POOLSHIM_STATS_EVENTS" "$stats" report "$dir/fake/poolshim-0-4243-2.stats" --format memory_viz \
    --output "$dir/none.pickle"
  [[ -e "$dir/none.pickle" ]] && fail "a snapshot was written without an event ring"
  # A real run: its known sites and sizes in the timeline (site_small's 1200 blocks make lists of
  # more than one batch of 1000).
  out=$(POOLSHIM_STATS_EVENTS=4096 run "$program" --leaks 3 --small 1200) || fail "the program failed: $out"
  "$stats" report --dir "$dir" --format memory_viz --output "$dir/real.pickle" 2>"$dir/real.err"
  rc=$?
  cat "$dir/real.err"
  [[ $rc -eq 0 ]] || fail "memory_viz of a real run with POOLSHIM_STATS_EVENTS=4096"
  python3 "$(dirname "$0")/memory_viz_check.py" "$dir/real.pickle" --program 1200 || fail "the real run's snapshot"
  # An allocation on a created stream (cudaMallocAsync): its events carry that stream, not 0.
  rm -f "$dir"/*.stats
  out=$(POOLSHIM_STATS_EVENTS=64 run "$program" --leaks 1 --async) || fail "the program failed (--async): $out"
  stream=$(sed -n 's/^stream \([0-9]*\)$/\1/p' <<<"$out")
  [[ -n $stream && $stream != 0 ]] || fail "the program printed no stream: $out"
  "$stats" report --dir "$dir" --format memory_viz --output "$dir/async.pickle" 2>/dev/null || fail "memory_viz (--async)"
  python3 - "$dir/async.pickle" "$stream" <<'PY' || fail "the stream of an allocation on a created stream"
import pickle, sys
snap, stream = pickle.load(open(sys.argv[1], "rb")), int(sys.argv[2])
mine = [e for t in snap["device_traces"] for e in t if e["size"] == 96 << 10]
assert mine and all(e["stream"] == stream for e in mine), [(e["action"], e["stream"]) for e in mine]
others = [e for t in snap["device_traces"] for e in t if e["size"] != 96 << 10]
assert others and all(e["stream"] == 0 for e in others), "cudaMalloc's events on a stream"
print(f"{len(mine)} events of the stream-ordered allocation on stream {stream:#x}")
PY
  # Without POOLSHIM_STATS_EVENTS, the clear error.
  rm -f "$dir"/*.stats
  out=$(run "$program" --leaks 1) || fail "the program failed: $out"
  expect_error 1 "POOLSHIM_STATS_EVENTS=N" "$stats" report --dir "$dir" --format memory_viz --output "$dir/x.pickle"
  ;;

pool_hit_rate)
  mkdir "$dir/fake"
  "$fake" "$dir/fake/poolshim-0-4242-1.stats" || fail "stats_fake_file"
  "$stats" report "$dir/fake/poolshim-0-4242-1.stats" | tee "$dir/fake.txt"
  grep -q "^  pool hit rate: device 87.5% (7 of 8 allocations), pinned -$" "$dir/fake.txt" || fail "text"
  "$stats" report "$dir/fake/poolshim-0-4242-1.stats" --format json | python3 -c '
import json, sys
r = json.load(sys.stdin)["pool_hit_rate"]
assert r == {"device": {"hits": 7, "allocs": 8, "rate": 0.875}, "pinned": {"hits": 0, "allocs": 0, "rate": None}}, r
print("json:", r)' || fail "json"
  # A live-pointer table that overflowed (the header's flag, patched into a copy): the text says
  # those frees count as untracked, the JSON sets live_table_full, and the schema's untracked_frees
  # names that cause next to frees of memory allocated before the file existed.
  cp "$dir/fake/poolshim-0-4242-1.stats" "$dir/full.stats"
  python3 "$(dirname "$0")/stats_header.py" "$dir/full.stats" flags=4 || fail "patching flags"
  "$stats" report "$dir/full.stats" | grep -q "did not fit the live-pointer table: their frees count as untracked" ||
    fail "text: no note of the full live table"
  "$stats" report "$dir/full.stats" --format json | python3 -c '
import json, sys; r = json.load(sys.stdin); assert r["live_table_full"] is True, r["live_table_full"]' ||
    fail "json: live_table_full"
  [[ -f "$schema" ]] || fail "no --schema REPORT_SCHEMA.md given"
  grep -E '^\| `untracked_frees` \|' "$schema" | grep -q 'before the stats file existed.*`live_table_full`' ||
    fail "$schema: untracked_frees does not name the frees of allocations that did not fit the live table"
  # A real run in pool mode: 3 + 4 device allocations (site_reuse's last 3 come from the cache),
  # one pinned, and one of 1 TiB that fails: no allocation, so not one the pool served.
  out=$(POOLSHIM_MODE=pool run "$program" --leaks 3 --fail) || fail "the program failed: $out"
  "$stats" report --dir "$dir" --format json >"$dir/real.json" || fail "report"
  "$stats" report --dir "$dir" | grep "pool hit rate"
  python3 - "$dir/real.json" <<'PY' || fail "the real run's hit rate"
import json, sys
report = json.load(open(sys.argv[1]))
r = report["pool_hit_rate"]
print(r)
d, p = r["device"], r["pinned"]
device = sum(k["allocs"] for k in report["kinds"] if k["kind"] == "device")
assert device == 7, f"{device} device allocations in the kinds table, not 7"
assert d["allocs"] == 7, f"the hit rate counts {d['allocs']} device allocations, the kinds table {device}"
assert 3 <= d["hits"] <= 7 and abs(d["rate"] - d["hits"] / 7) < 1e-6, d
assert p["allocs"] == 1 and p["hits"] <= 1, p
PY
  # Killed before it exited: the hit figures of its first allocations are in the file all the same.
  rm -f "$dir"/*.stats
  POOLSHIM_MODE=pool run "$program" --hold >"$dir/killed.out" 2>&1 &
  killed_pid=$!
  wait_ready "$dir/killed.out"
  kill -9 "$killed_pid"
  wait "$killed_pid" 2>/dev/null
  "$stats" report --dir "$dir" --format json >"$dir/killed.json" || fail "report of the killed run"
  python3 - "$dir/killed.json" <<'PY' || fail "the killed run's hit rate"
import json, sys
report = json.load(open(sys.argv[1]))
r = report["pool_hit_rate"]
print("killed:", r)
assert report["state"] == "killed", report["state"]
device = sum(k["allocs"] for k in report["kinds"] if k["kind"] == "device")
assert device > 0 and r["device"]["allocs"] == device, (device, r["device"])
PY
  ;;

clean)
  header() { python3 "$(dirname "$0")/stats_header.py" "$@"; }
  exists() { [[ -e "$1" || -p "$1" ]]; }
  out=$(run "$program" --leaks 1) || fail "the exiting run: $out"
  exited=$(ls "$dir"/*.stats)
  run "$program" --hold >"$dir/held.out" 2>&1 &
  held_pid=$!
  pids+=("$held_pid")
  wait_ready "$dir/held.out"
  held=$(ls "$dir"/*-"$held_pid"-*.stats)
  run "$program" --hold >"$dir/killed.out" 2>&1 &
  killed_pid=$!
  wait_ready "$dir/killed.out"
  kill -9 "$killed_pid"
  wait "$killed_pid" 2>/dev/null
  killed=$(ls "$dir"/*-"$killed_pid"-*.stats)
  # One that exited two days ago (the exited run's copy, its end moved back).
  old="$dir/poolshim-$(id -u)-$(header "$exited" pid)-1.stats"
  cp "$exited" "$old"
  header "$old" end_ns=now-172800 || fail "patching end_ns"
  # Never removed: a file that does not read as a stats file (perhaps one being created), a FIFO.
  junk="$dir/poolshim-junk.stats"
  head -c 4096 /dev/zero >"$junk"
  fifo="$dir/poolshim-fifo.stats"
  mkfifo "$fifo"
  other=""
  if [[ $(id -u) -eq 0 ]] && id nobody >/dev/null 2>&1; then
    other="$dir/poolshim-$(id -u nobody)-1-1.stats"
    cp "$exited" "$other"
    chown nobody "$other"
  else
    echo "stats_tool_test clean: note: not root (or no user nobody): the check of another user's file is skipped"
  fi
  ls -l "$dir"
  # A killed process recorded no end: no allocations per second counted up to now (which would
  # fall the longer its file is kept); an exited one has its rate.
  "$stats" report "$killed" | tee "$dir/killed.txt"
  grep -Eq "^  0 +device +[0-9]+ +[0-9]+ +- " "$dir/killed.txt" || fail "report of a killed process: a rate"
  "$stats" report "$exited" | grep -Eq "^  0 +device +[0-9]+ +[0-9]+ +[0-9]+ " || fail "report of an exited process: no rate"
  all=("$exited" "$held" "$killed" "$old" "$junk" "$fifo")
  [[ -n "$other" ]] && all+=("$other")

  # --dry-run: says what it would remove, removes nothing.
  timeout 20 "$stats" clean --dir "$dir" --dry-run >"$dir/dry.txt" 2>&1 || fail "clean --dry-run: $(cat "$dir/dry.txt")"
  cat "$dir/dry.txt"
  for f in "${all[@]}"; do exists "$f" || fail "--dry-run removed $f"; done
  for f in "$exited" "$killed" "$old"; do grep -q "^  would remove  .*: $f$" "$dir/dry.txt" || fail "--dry-run: not $f"; done
  grep -q "^  kept          pid $held_pid (running): $held$" "$dir/dry.txt" || fail "--dry-run: the running file"
  grep -q "^clean: would remove 3 files, .* to free; kept 1 (running); left alone" "$dir/dry.txt" ||
    fail "--dry-run: the summary"

  # --older-than 1d: only the one that ended two days ago.
  "$stats" clean --dir "$dir" --older-than 1d >"$dir/old.txt" 2>&1 || fail "clean --older-than 1d: $(cat "$dir/old.txt")"
  cat "$dir/old.txt"
  exists "$old" && fail "--older-than 1d kept the file of a process that exited 2 days ago"
  for f in "$exited" "$held" "$killed" "$junk" "$fifo" $other; do exists "$f" || fail "--older-than 1d removed $f"; done
  grep -Eq "^  removed       pid [0-9]+ \(exited 20[0-9-]+ [0-9:]+\), 1[0-9]\.[0-9] MiB: $old$" "$dir/old.txt" ||
    fail "--older-than 1d: no line for the old file"
  grep -q "not older than 1d): $exited$" "$dir/old.txt" || fail "--older-than 1d: no line for the recent file"

  # Everything that ended: the exited and the killed one; the running one, the junk, the FIFO and
  # another user's file stay. The bytes freed are the files' blocks.
  want=$(stat -c '%b %B' "$exited" "$killed" | awk '{ s += $1 * $2 } END { print s }')
  timeout 20 "$stats" clean --dir "$dir" >"$dir/clean.txt" 2>&1 || fail "clean: $(cat "$dir/clean.txt")"
  cat "$dir/clean.txt"
  for f in "$exited" "$killed"; do exists "$f" && fail "clean kept $f"; done
  for f in "$held" "$junk" "$fifo" $other; do exists "$f" || fail "clean removed $f"; done
  grep -q "^  left alone    $fifo: not a regular file$" "$dir/clean.txt" || fail "clean: no line for the FIFO"
  grep -q "^  left alone    $junk: not a poolshim stats file" "$dir/clean.txt" || fail "clean: no line for the junk"
  if [[ -n "$other" ]]; then
    grep -q "^  left alone    $other: another user's file (uid $(id -u nobody))$" "$dir/clean.txt" ||
      fail "clean: no line for another user's file"
  fi
  python3 - "$dir/clean.txt" "$want" <<'PY' || fail "clean: the bytes freed"
import re, sys
text, want = open(sys.argv[1]).read(), int(sys.argv[2])
b, u = float(want), 0
while b >= 1024 and u < 4:
    b, u = b / 1024, u + 1
unit = ["B", "KiB", "MiB", "GiB", "TiB"][u]
size = f"{b:.0f} {unit}" if u == 0 else f"{b:.1f} {unit}"
line = [l for l in text.splitlines() if l.startswith("clean: ")]
assert line and line[0].startswith(f"clean: removed 2 files, {size} freed; kept 1 (running); left alone "), (line, size)
print(f"freed {size} ({want} bytes), as the files held")
PY
  # Once the held program is gone, its file goes too.
  kill -9 "$held_pid"
  wait "$held_pid" 2>/dev/null
  "$stats" clean --dir "$dir" >"$dir/last.txt" 2>&1 || fail "clean after the kill: $(cat "$dir/last.txt")"
  cat "$dir/last.txt"
  exists "$held" && fail "clean kept the file of the killed held program"
  grep -Eq "^  removed       pid $held_pid \(killed, started " "$dir/last.txt" || fail "clean: the killed held program's line"
  # Clear errors.
  expect_error 2 "bad --older-than" "$stats" clean --dir "$dir" --older-than 5x
  expect_error 2 "bad --older-than" "$stats" clean --dir "$dir" --older-than -1d
  expect_error 2 "bad --older-than" "$stats" clean --dir "$dir" --older-than d
  expect_error 2 "clean takes no process" "$stats" clean 1234 --dir "$dir"
  expect_error 2 "unknown option" "$stats" clean --force --dir "$dir"
  expect_error 1 "No such file" "$stats" clean --dir "$dir/missing"
  ;;

collapsed_names)
  # Names in collapsed stacks cannot break the line format (one line per site: frames between ';',
  # a space, the figure): a Python function named with a tab, a newline, an escape, DEL, ';' and a
  # space (code.replace can name it anything), in a file whose name has a tab, through ctypes
  # (POOLSHIM_STATS=python, the simulator's libcudart.so.13).
  py=$(command -v python3)
  minor=$("$py" -c 'import sys; print(sys.version_info[1])') || fail "python3"
  if ((minor < 11 || minor > 13)); then
    echo "stats_tool_test collapsed_names: SKIP: python3 is 3.$minor (POOLSHIM_STATS=python takes 3.11 to 3.13)"
    exit 77
  fi
  script="$dir/alloc"$'\t'"file.py"
  cat >"$script" <<'PY'
import ctypes
cudart = ctypes.CDLL("libcudart.so.13")
cudart.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
def odd():
    p = ctypes.c_void_p()
    assert cudart.cudaMalloc(ctypes.byref(p), 1 << 20) == 0
    return p.value
odd.__code__ = odd.__code__.replace(co_name="odd\tname", co_qualname="odd\tname\nwith\x1bctl\x7f; end")
kept = [odd() for _ in range(2)]
print("done")
PY
  out=$(env LD_PRELOAD="$shim" POOLSHIM_STATS=python POOLSHIM_STATS_DIR="$dir" "$py" "$script" 2>&1) || fail "the script: $out"
  [[ $out == *done* ]] || fail "the script: $out"
  "$stats" report --dir "$dir" --format collapsed >"$dir/odd.folded" || fail "collapsed"
  "$stats" report --dir "$dir" --format json --top 0 >"$dir/odd.json" || fail "json"
  python3 - "$dir/odd.folded" "$dir/odd.json" <<'PY' || fail "collapsed names"
import json, re, sys
text, r = open(sys.argv[1], "rb").read().decode(), json.load(open(sys.argv[2]))
lines = text.split("\n")
assert lines[-1] == "", "no newline at the end"
lines = lines[:-1]
assert len(lines) == len(r["sites"]), f"{len(lines)} lines for {len(r['sites'])} sites:\n{text!r}"
for l in lines:
    assert re.fullmatch(r"[^\x00-\x20\x7f]+ [0-9]+", l), f"a broken line: {l!r}"
odd = [l for l in lines if ";odd?name?with?ctl?:_end" in l]  # the innermost frame shown: the call site
assert len(odd) == 1 and odd[0].endswith(f" {2 << 20}"), f"no line of the oddly named function: {text!r}"
raw = [f for s in r["sites"] for f in s["frames"] if f["module"] == "[python]" and f["line"] == 6]
assert raw and raw[0]["function"] == "odd\tname\nwith\x1bctl\x7f; end" and raw[0]["file"].endswith("alloc\tfile.py"), raw
name = next(x for x in odd[0].split(";") if x.startswith("odd"))
print(f"collapsed: {len(lines)} whole lines; the oddly named function as {name}")
PY
  ;;

*) echo "stats_tool_test: unknown scenario $scenario" >&2; exit 2 ;;
esac
echo "stats_tool_test $scenario: OK"

#!/usr/bin/env bash
# Idle memory flows back (issue #17), on the simulator with one node-wide device of 256 MiB shared
# by every process (POOLSHIM_SIM_NODE_FILE): each scenario starts its own daemon on a private socket.
# usage: idle_return_test.sh SCENARIO --daemon poolshimd --program idle_return_program --shim libpoolshim.so
#                            [--stats poolshim-stats]
# Scenarios:
#   pressure     an idle process A holds 160 MiB of lent device memory it freed (one 32 MiB block
#                still live); B needs 128 MiB the device no longer has: the daemon asks A, A gives
#                back whole free segments at its next report, B's allocation succeeds; A's live
#                block is intact. Prints the time from the pressure (B's request) to A's memory
#                being returned and to B being served.
#   timeout      POOLSHIM_IDLE_RELEASE_MS=300: freed memory goes back unasked (device memory and a
#                pinned slab), the live block stays.
#   api          poolshim_trim / poolshim_release_all / poolshim_preallocate report their bytes.
#   trim_status  poolshimd --status (and poolshim-stats node) show what A holds idle, device and
#                pinned; poolshimd --trim makes A give both back.
#   preallocated A's POOLSHIM_PREALLOCATE memory is kept through the daemon's requests, so A does not
#                report it idle (the daemon would ask for memory that never comes).
#   preallocate_syntax  malformed POOLSHIM_PREALLOCATE lists warn (and preallocate nothing), a good
#                one does not.
#   partial      A holds a small block (its 2 MiB segment) and a pinned block (its slab) in use:
#                nothing of them can go back, so A reports nothing idle.
#   stale_ask    A was asked (poolshimd --trim) and is stopped: its ask no longer counts after a
#                second, so B's need is asked of C, who is idle and answers, and B is served.
set -u
scenario=${1:?scenario}; shift
daemon="" program="" shim="" stats=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --daemon) daemon=$2; shift 2 ;;
    --program) program=$2; shift 2 ;;
    --shim) shim=$2; shift 2 ;;
    --stats) stats=$2; shift 2 ;;
    *) echo "idle_return_test: unknown option $1" >&2; exit 2 ;;
  esac
done
fail() { echo "idle_return_test $scenario: FAIL: $*" >&2; exit 1; }

dir=$(mktemp -d /tmp/poolshim-idle-XXXXXX)
chmod 700 "$dir"
sock=$dir/poolshimd.sock
dpid=""
cleanup() {
  { [[ -n "$dpid" ]] && kill -9 "$dpid" && wait "$dpid"; } 2>/dev/null
  jobs -p | xargs -r kill -9 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
export POOLSHIM_SIM_NODE_FILE=$dir/sim-node POOLSHIM_SIM_DEVICE_MEMORY=256M POOLSHIM_SIM_DEVICES=1

start_daemon() {
  "$daemon" --socket "$sock" --region 64M --slab 16M --fill-threads 1 "$@" >>"$dir/daemon.log" 2>&1 &
  dpid=$!
  for _ in $(seq 200); do
    [[ -S "$sock" ]] && "$daemon" --status --socket "$sock" >/dev/null 2>&1 && return 0
    sleep 0.02
  done
  cat "$dir/daemon.log" >&2
  fail "the daemon did not come up"
}
status() { "$daemon" --status --socket "$sock"; }
field() { sed -n "s/.*\\b$1=\\([0-9-]*\\).*/\\1/p" | head -1; }
client_line() { status | grep "^client pid=$1 "; }
# exec: a client started with & is then this pid itself (what --status names it by).
under_shim() { exec env LD_PRELOAD="$shim" POOLSHIM_SOCKET="$sock" POOLSHIM_TEST_EXPECT=shim "$@"; }
wait_for() {  # wait_for SECONDS COMMAND...: true once the command succeeds
  local end=$(($(date +%s%3N) + $1 * 1000)); shift
  while [[ $(date +%s%3N) -lt $end ]]; do "$@" && return 0; sleep 0.02; done
  return 1
}
mib=$((1 << 20))

case "$scenario" in
pressure)
  start_daemon --device-limit 256M
  POOLSHIM_DEVICE_SOURCE=daemon POOLSHIM_IDLE_RELEASE_MS=0 under_shim "$program" hold --blocks 6 --mib 32 --keep 1 \
    --watch --ready "$dir/a.ready" --go "$dir/a.go" >"$dir/a.out" 2>&1 &
  a=$!
  wait_for 30 test -e "$dir/a.ready" || { cat "$dir/a.out"; fail "A did not get ready"; }
  idle_a() { [[ $(client_line $a | field idle_device_bytes) -eq $((160 * mib)) ]]; }
  wait_for 5 idle_a || { status; fail "A's idle device memory was not reported"; }
  sleep 0.5  # POOLSHIM_IDLE_RELEASE_MS=0: nothing goes back unasked meanwhile
  status
  idle_a || fail "A gave memory back unasked with the idle release off"
  [[ $(status | head -1 | field device_lent_bytes) -eq $((192 * mib)) ]] || fail "the daemon should lend 192 MiB"
  (POOLSHIM_DEVICE_SOURCE=daemon under_shim "$program" need --mib 128) >"$dir/b.out" 2>&1 ||
    { cat "$dir/b.out" "$dir/daemon.log"; fail "B's allocation failed under pressure"; }
  touch "$dir/a.go"
  wait $a || { cat "$dir/a.out"; fail "A's check failed (a live block touched?)"; }
  cat "$dir/a.out" "$dir/b.out"
  start=$(field start_ms <"$dir/b.out") served=$(field served_ms <"$dir/b.out")
  returned=$(field returned_ms <"$dir/a.out")
  [[ $returned -ge 0 ]] || fail "A's pool never gave memory back"
  after=$(field reserved_after <"$dir/a.out")
  [[ $after -ge $((32 * mib)) && $after -lt $((160 * mib)) ]] || fail "A kept $after bytes (want its live block, not all)"
  echo "pressure_to_returned_ms=$((returned - start)) pressure_to_served_ms=$((served - start))"
  [[ $((served - start)) -lt 2000 ]] || fail "B waited $((served - start)) ms"
  echo "idle_return_test pressure: OK"
  ;;
timeout)
  (POOLSHIM_IDLE_RELEASE_MS=300 POOLSHIM_DAEMON=0 under_shim "$program" timeout --mib 64) >"$dir/t.out" 2>&1 ||
    { cat "$dir/t.out"; fail "the timeout program"; }
  cat "$dir/t.out"
  t=$(field released_after_ms <"$dir/t.out")
  # A window of 300 ms sampled every 75 ms: released 300-450 ms after the free (shared machine: 2 s).
  [[ $t -ge 200 && $t -lt 2000 ]] || fail "released after $t ms"
  echo "idle_return_test timeout: OK"
  ;;
api)
  (POOLSHIM_IDLE_RELEASE_MS=200 POOLSHIM_DAEMON=0 under_shim "$program" api) >"$dir/api.out" 2>&1 ||
    { cat "$dir/api.out"; fail "the API program"; }
  cat "$dir/api.out"
  echo "idle_return_test api: OK"
  ;;
trim_status)
  start_daemon --device-limit 256M --slab 64M  # the pinned pool's slab size: its slab is the daemon's
  POOLSHIM_DEVICE_SOURCE=daemon POOLSHIM_IDLE_RELEASE_MS=0 under_shim "$program" hold --blocks 4 --mib 32 --keep 1 \
    --pinned-mib 8 --watch --ready "$dir/a.ready" --go "$dir/a.go" >"$dir/a.out" 2>&1 &
  a=$!
  wait_for 30 test -e "$dir/a.ready" || { cat "$dir/a.out"; fail "A did not get ready"; }
  reported() {
    local l; l=$(client_line $a)
    [[ $(echo "$l" | field idle_device_bytes) -eq $((96 * mib)) && $(echo "$l" | field idle_pinned_bytes) -gt 0 ]]
  }
  wait_for 5 reported || { status; fail "--status does not show A's idle device and pinned memory"; }
  status
  [[ $(client_line $a | field lent_bytes) -gt 0 ]] || fail "A's pinned slab should be the daemon's" 
  if [[ -n $stats ]]; then
    "$stats" node --socket "$sock" --dir "$dir" --format json >"$dir/node.json" 2>&1 || { cat "$dir/node.json"; fail "poolshim-stats node"; }
    grep -q "\"idle_device_bytes\":$((96 * mib))" "$dir/node.json" || { cat "$dir/node.json"; fail "poolshim-stats node lacks A's idle bytes"; }
  fi
  "$daemon" --trim --socket "$sock" >"$dir/trim.out" 2>&1 || { cat "$dir/trim.out"; fail "poolshimd --trim"; }
  cat "$dir/trim.out"
  grep -q "^trim asked=1 idle_device_bytes=$((96 * mib)) idle_pinned_bytes=[1-9]" "$dir/trim.out" || fail "--trim's line"
  given_back() {
    local l; l=$(client_line $a)
    [[ $(echo "$l" | field device_bytes) -eq $((32 * mib)) && $(echo "$l" | field lent_bytes) -eq 0 ]]
  }
  wait_for 2 given_back || { status; fail "A did not give its idle memory back after --trim"; }
  status
  touch "$dir/a.go"
  wait $a || { cat "$dir/a.out"; fail "A's check failed"; }
  cat "$dir/a.out"
  echo "idle_return_test trim_status: OK"
  ;;
preallocated)
  start_daemon --device-limit 256M
  POOLSHIM_DEVICE_SOURCE=daemon POOLSHIM_IDLE_RELEASE_MS=0 POOLSHIM_PREALLOCATE=0:64M under_shim "$program" hold \
    --blocks 1 --mib 32 --keep 1 --ready "$dir/a.ready" --go "$dir/a.go" >"$dir/a.out" 2>&1 &
  a=$!
  wait_for 30 test -e "$dir/a.ready" || { cat "$dir/a.out"; fail "A did not get ready"; }
  lent_a() { [[ $(client_line $a | field device_bytes) -ge $((96 * mib)) ]]; }
  wait_for 5 lent_a || { status; fail "A's preallocation and block should be lent by the daemon"; }
  sleep 0.5  # several report periods
  status
  idle=$(client_line $a | field idle_device_bytes)
  [[ $idle -eq 0 ]] || fail "A reports its preallocation as idle ($idle bytes), which it will not give back"
  touch "$dir/a.go"
  wait $a || { cat "$dir/a.out"; fail "A's check failed"; }
  echo "idle_return_test preallocated: OK"
  ;;
partial)
  start_daemon --device-limit 256M
  POOLSHIM_DEVICE_SOURCE=daemon POOLSHIM_IDLE_RELEASE_MS=0 under_shim "$program" hold --blocks 1 --mib 1 --keep 1 \
    --pinned-mib 1 --pinned-keep --ready "$dir/a.ready" --go "$dir/a.go" >"$dir/a.out" 2>&1 &
  a=$!
  wait_for 30 test -e "$dir/a.ready" || { cat "$dir/a.out"; fail "A did not get ready"; }
  sleep 0.5  # several report periods
  status
  l=$(client_line $a)
  [[ $(echo "$l" | field device_bytes) -gt 0 ]] || fail "A's segment should be lent by the daemon"
  # A 1 MiB block lives in a 2 MiB segment and a 1 MiB pinned block in a slab: neither can go back.
  [[ $(echo "$l" | field idle_device_bytes) -eq 0 && $(echo "$l" | field idle_pinned_bytes) -eq 0 ]] ||
    fail "A reports the free part of a segment or slab in use as idle: the daemon would ask for it in vain"
  touch "$dir/a.go"
  wait $a || { cat "$dir/a.out"; fail "A's check failed"; }
  echo "idle_return_test partial: OK"
  ;;
preallocate_syntax)
  for bad in ":64M" " 0:64M" "0:" "0:64Q" "x:1M" "0:1M,,1:1M" "0=1M"; do
    (POOLSHIM_PREALLOCATE=$bad POOLSHIM_DAEMON=0 under_shim "$program" need --mib 1) >"$dir/p.out" 2>&1 ||
      { cat "$dir/p.out"; fail "the program under POOLSHIM_PREALLOCATE='$bad'"; }
    grep -q "POOLSHIM_PREALLOCATE" "$dir/p.out" || { cat "$dir/p.out"; fail "POOLSHIM_PREALLOCATE='$bad' taken without a warning"; }
  done
  (POOLSHIM_PREALLOCATE=0:4M,1:2M POOLSHIM_DAEMON=0 under_shim "$program" need --mib 1) >"$dir/p.out" 2>&1 ||
    { cat "$dir/p.out"; fail "the program under a good POOLSHIM_PREALLOCATE"; }
  ! grep -q "POOLSHIM_PREALLOCATE" "$dir/p.out" || { cat "$dir/p.out"; fail "a good POOLSHIM_PREALLOCATE warned"; }
  echo "idle_return_test preallocate_syntax: OK"
  ;;
stale_ask)
  start_daemon --device-limit 256M
  holder() {  # holder NAME BLOCKS: BLOCKS blocks of 32 MiB, all but one freed (idle), lent by the daemon
    POOLSHIM_DEVICE_SOURCE=daemon POOLSHIM_IDLE_RELEASE_MS=0 under_shim "$program" hold --blocks "$2" --mib 32 \
      --keep 1 --ready "$dir/$1.ready" --go "$dir/$1.go" >"$dir/$1.out" 2>&1
  }
  holder a 5 &
  a=$!
  wait_for 30 test -e "$dir/a.ready" || { cat "$dir/a.out"; fail "A did not get ready"; }
  idle_of() { [[ $(client_line $1 | field idle_device_bytes) -eq $2 ]]; }
  wait_for 5 idle_of $a $((128 * mib)) || { status; fail "A's idle memory was not reported"; }
  kill -STOP $a
  "$daemon" --trim --socket "$sock" >"$dir/trim.out" 2>&1 || { cat "$dir/trim.out"; fail "poolshimd --trim"; }
  holder c 2 &
  c=$!
  wait_for 30 test -e "$dir/c.ready" || { cat "$dir/c.out"; fail "C did not get ready"; }
  wait_for 5 idle_of $c $((32 * mib)) || { status; fail "C's idle memory was not reported"; }
  sleep 1.2  # A has not answered the ask for more than a second
  status
  # 224 MiB lent of 256: B's 64 MiB needs C's idle 32 MiB; A (stopped) will give nothing.
  (POOLSHIM_DEVICE_SOURCE=daemon under_shim "$program" need --mib 64) >"$dir/b.out" 2>&1
  b_rc=$?
  kill -CONT $a
  touch "$dir/a.go" "$dir/c.go"
  cat "$dir/b.out"
  [[ $b_rc -eq 0 ]] || { status; fail "B was not served: the daemon counted on a stopped process's ask"; }
  wait $a || { cat "$dir/a.out"; fail "A's check failed"; }
  wait $c || { cat "$dir/c.out"; fail "C's check failed"; }
  echo "idle_return_test stale_ask: OK"
  ;;
*) fail "unknown scenario" ;;
esac

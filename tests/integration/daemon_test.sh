#!/usr/bin/env bash
# Multi-process tests of poolshimd with the shim (daemon_client_program) and without it
# (daemon_raw_client). Each scenario starts its own daemon on a private socket and stops it.
# usage: daemon_test.sh SCENARIO --daemon poolshimd --client daemon_client_program
#                       --raw daemon_raw_client --shim libpoolshim.so
#                       [--ipc daemon_ipc_program] [--first host_first_alloc]
# Scenarios: eight_clients, kill_client, kill_daemon, untrusted_socket, other_uid, return_idle, ipc,
#            bench
set -u
scenario=${1:?scenario}; shift
daemon="" client="" raw="" shim="" ipc="" first=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --daemon) daemon=$2; shift 2 ;;
    --client) client=$2; shift 2 ;;
    --raw) raw=$2; shift 2 ;;
    --shim) shim=$2; shift 2 ;;
    --ipc) ipc=$2; shift 2 ;;
    --first) first=$2; shift 2 ;;
    *) echo "daemon_test: unknown option $1" >&2; exit 2 ;;
  esac
done
fail() { echo "daemon_test $scenario: FAIL: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }

dir=$(mktemp -d /tmp/poolshimd-it-XXXXXX)
chmod 700 "$dir"
sock=$dir/poolshimd.sock
dpid=""
cleanup() {
  [[ -n "$dpid" ]] && kill -9 "$dpid" 2>/dev/null
  jobs -p | xargs -r kill -9 2>/dev/null
  pkill -9 -f -- "$dir" 2>/dev/null  # clients (and their children) named by their files
  rm -rf "$dir"
}
trap cleanup EXIT

start_daemon() {
  "$daemon" --socket "$sock" --region "${1:-1G}" --slab 64M --fill-threads 2 "${@:2}" >>"$dir/daemon.log" 2>&1 &
  dpid=$!
  for _ in $(seq 200); do
    [[ -S "$sock" ]] && "$daemon" --status --socket "$sock" >/dev/null 2>&1 && return 0
    sleep 0.02
  done
  cat "$dir/daemon.log" >&2
  fail "the daemon did not come up"
}
status() { "$daemon" --status --socket "$sock"; }
field() { sed -n "s/.*\\b$1=\\([0-9]*\\).*/\\1/p" | head -1; }
# exec: a client started with & is then this pid itself (kill -9 reaches the program, not a shell).
under_shim() { exec env LD_PRELOAD="$shim" POOLSHIM_SOCKET="$sock" POOLSHIM_TEST_EXPECT=shim "$@"; }
wait_files() {  # wait_files FILE...: every file exists (clients write them once ready)
  for _ in $(seq 1500); do
    local missing=0 f
    for f in "$@"; do [[ -e "$f" ]] || missing=$((missing + 1)); done
    [[ $missing -eq 0 ]] && return 0
    sleep 0.02
  done
  fail "$missing of $# clients did not get ready"
}

case "$scenario" in
eight_clients)
  # 8 processes lease, fill, check and free pinned memory concurrently; while all hold their
  # buffers, the daemon's figures must equal the sum of what the clients say they leased.
  start_daemon 1G
  pids=()
  for i in $(seq 8); do
    under_shim "$client" --buffers 2 --ready "$dir/ready.$i" --go "$dir/go" >"$dir/client.$i.out" 2>&1 &
    pids+=($!)
  done
  wait_files $(for i in $(seq 8); do echo "$dir/ready.$i"; done)
  st=$(status)
  echo "$st"
  claimed=0
  for i in $(seq 8); do claimed=$((claimed + $(field leased_bytes <"$dir/ready.$i"))); done
  lent=$(echo "$st" | head -1 | field lent_bytes)
  per_client=$(echo "$st" | grep '^client' | sed -n 's/.*lent_bytes=\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s + 0}')
  echo "clients say $claimed bytes; daemon lent $lent; per-client sum $per_client"
  [[ $claimed -gt 0 ]] || fail "no client leased from the daemon"
  [[ $claimed -eq $lent && $lent -eq $per_client ]] || fail "accounting differs"
  touch "$dir/go"
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { cat "$dir/client.$((i + 1)).out"; fail "client $((i + 1)) failed"; }
  done
  grep -h corruptions "$dir"/client.*.out | head -2
  for _ in $(seq 200); do
    [[ $(status | head -1 | field lent_bytes) -eq 0 ]] && break
    sleep 0.02
  done
  [[ $(status | head -1 | field lent_bytes) -eq 0 ]] || fail "slabs still lent after every client exited"
  echo "daemon_test eight_clients: OK"
  ;;
kill_client)
  # kill -9 of a client holding slabs: all back once the process has exited (the time is
  # measured); the others are undisturbed; a forked child keeps a valid mapping.
  start_daemon 1G
  under_shim "$client" --buffers 2 --ready "$dir/other.ready" --go "$dir/go" >"$dir/other.out" 2>&1 &
  other=$!
  under_shim "$client" --buffers 3 --ready "$dir/victim.ready" --hold --fork-child >"$dir/victim.out" 2>&1 &
  victim=$!
  wait_files "$dir/victim.ready" "$dir/other.ready"
  before=$(status | head -1 | field lent_bytes)
  other_bytes=$(field leased_bytes <"$dir/other.ready")
  echo "before: $(status | head -1)"
  t0=$(now_ms)
  kill -9 "$victim"
  ms=$(POOLSHIM_SOCKET=$sock "$raw" await-lent "$other_bytes" "$t0") || fail "the victim's slabs did not come back in 10 s"
  echo "reclaim_ms=$ms (kill -9 to the daemon's figures, polled over one connection); lent before $before, after $other_bytes"
  wait "$victim" 2>/dev/null
  touch "$dir/go"
  wait "$other" || { cat "$dir/other.out"; fail "the other client was disturbed"; }
  for _ in $(seq 100); do grep -q "child mapping" "$dir/victim.out" && break; sleep 0.02; done
  grep -q "child mapping intact" "$dir/victim.out" || { cat "$dir/victim.out"; fail "the child's mapping"; }
  echo "daemon_test kill_client: OK"
  ;;
kill_daemon)
  # kill -9 of the daemon mid-run: the client carries on with local slabs and its data stays
  # right; a restarted daemon serves a new client and takes the old one's slabs back in.
  start_daemon 2G
  under_shim "$client" --buffers 1 --grow 3 --ready "$dir/grower.ready" --go "$dir/go" >"$dir/grower.out" 2>&1 &
  grower=$!
  sleep 0.6
  kill -9 "$dpid"; wait "$dpid" 2>/dev/null; dpid=""
  sleep 0.8
  start_daemon 2G
  (under_shim "$client" --buffers 1) >"$dir/fresh.out" 2>&1 || { cat "$dir/fresh.out"; fail "a new client after the restart"; }
  grep -q "daemon_slabs=[1-9]" "$dir/fresh.out" || { cat "$dir/fresh.out"; fail "the restarted daemon did not serve"; }
  wait_files "$dir/grower.ready"
  st=$(status)
  echo "$st"
  grower_pid=$(field pid <"$dir/grower.ready")
  echo "$st" | grep -q "client pid=$grower_pid .*leases=[1-9]" || fail "the old client's slabs were not re-declared"
  touch "$dir/go"
  wait "$grower" || { cat "$dir/grower.out"; fail "the client failed across the daemon's death"; }
  cat "$dir/grower.out"
  grep -q "redeclared=[1-9]" "$dir/grower.out" || fail "no slab was re-declared"
  grep -q "fallbacks=[1-9]" "$dir/grower.out" || fail "no local slab while the daemon was down"
  echo "daemon_test kill_daemon: OK"
  ;;
untrusted_socket)
  # A socket in a directory others can write is refused before a byte is sent; as root, a daemon
  # whose peer is another uid (a squatter) is refused too. Allocation goes on with local slabs.
  squat=$(mktemp -d /tmp/poolshimd-squat-XXXXXX)
  chmod 777 "$squat"
  python3 - "$squat/poolshimd.sock" <<'EOF' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(sys.argv[1]); s.listen(4)
time.sleep(30)
EOF
  squatter=$!
  for _ in $(seq 100); do [[ -S "$squat/poolshimd.sock" ]] && break; sleep 0.02; done
  env LD_PRELOAD="$shim" POOLSHIM_SOCKET="$squat/poolshimd.sock" POOLSHIM_TEST_EXPECT=shim "$client" --buffers 1 \
    >"$dir/squat.out" 2>&1 || { cat "$dir/squat.out"; fail "client with a squatted socket"; }
  kill -9 $squatter 2>/dev/null
  cat "$dir/squat.out"
  grep -q "refusals=1" "$dir/squat.out" || fail "the world-writable directory was not refused"
  grep -q "daemon_slabs=0" "$dir/squat.out" || fail "slabs came from an untrusted socket"
  if [[ $(id -u) -eq 0 ]] && id nobody >/dev/null 2>&1; then
    # Root's private directory, but the listener drops to nobody before listen(): SO_PEERCRED
    # names nobody, whom root does not trust.
    peerdir=$(mktemp -d /tmp/poolshimd-peer-XXXXXX)
    chmod 700 "$peerdir"
    python3 - "$peerdir/poolshimd.sock" <<'EOF' &
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(sys.argv[1])
os.setgid(65534); os.setuid(65534)
s.listen(4)
while True:
    c, _ = s.accept()
    time.sleep(5)
EOF
    peer=$!
    for _ in $(seq 100); do [[ -S "$peerdir/poolshimd.sock" ]] && break; sleep 0.02; done
    sleep 0.2
    env LD_PRELOAD="$shim" POOLSHIM_SOCKET="$peerdir/poolshimd.sock" POOLSHIM_TEST_EXPECT=shim "$client" --buffers 1 \
      >"$dir/peer.out" 2>&1 || { cat "$dir/peer.out"; fail "client with a foreign peer"; }
    kill -9 $peer 2>/dev/null
    cat "$dir/peer.out"
    grep -q "refusals=1" "$dir/peer.out" || fail "a daemon running as nobody was trusted by root"
    rm -rf "$peerdir"
  else
    echo "daemon_test untrusted_socket: not root: the foreign-peer case is skipped"
  fi
  rm -rf "$squat"
  echo "daemon_test untrusted_socket: OK"
  ;;
other_uid)
  # Needs root: a node-wide daemon (root's directory, readable by all) serves root and nobody.
  # nobody cannot return root's lease, and the slab it gets never holds what root wrote.
  if [[ $(id -u) -ne 0 ]] || ! id nobody >/dev/null 2>&1 || ! command -v setpriv >/dev/null; then
    echo "daemon_test other_uid: SKIPPED (needs root, user nobody and setpriv)"; exit 77
  fi
  chmod 755 "$dir"
  start_daemon 256M
  coproc HOLDER { POOLSHIM_SOCKET=$sock "$raw" hold 2; }
  read -r line <&"${HOLDER[0]}"
  echo "root: $line"
  lease=$(echo "$line" | sed -n 's/.*leases=\([0-9]*\),.*/\1/p')
  as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups env POOLSHIM_SOCKET="$sock" "$@"; }
  got=$(as_nobody "$raw" steal "$lease") || fail "nobody's client failed: $got"
  echo "nobody returning root's lease $lease: $got"
  [[ $got == not_permitted ]] || fail "another uid's lease was returned"
  exec {HOLDER[1]}>&-  # root returns its slabs by exiting
  wait "$HOLDER_PID" 2>/dev/null
  for _ in $(seq 100); do [[ $(status | head -1 | field lent_bytes) -eq 0 ]] && break; sleep 0.02; done
  for _ in 1 2 3 4; do
    out=$(as_nobody "$raw" fresh) || fail "nobody received used memory: $out"
  done
  echo "nobody's slabs after root's: $out"
  echo "daemon_test other_uid: OK"
  ;;
ipc)
  # A small pooled block exported by one process and opened by another, both running the shim: the
  # importer sees the exporter's bytes and the exporter the importer's. Without the shim the handle
  # fails cleanly; once the block is freed it fails too; another uid cannot resolve the token.
  start_daemon 256M
  under_shim "$ipc" export "$dir" >"$dir/export.out" 2>&1 &
  exporter=$!
  (under_shim "$ipc" import "$dir") >"$dir/import.out" 2>&1 &
  importer=$!
  for _ in $(seq 500); do [[ -e "$dir/handle" ]] && break; sleep 0.01; done
  env -u LD_PRELOAD "$ipc" plain "$dir" >"$dir/plain.out" 2>&1 || { cat "$dir/plain.out"; fail "plain importer"; }
  if [[ $(id -u) -eq 0 ]] && id nobody >/dev/null 2>&1 && command -v setpriv >/dev/null; then
    chmod 755 "$dir"
    token=$(od -An -tx1 -j 8 -N 16 "$dir/handle" | tr -d ' \n')
    got=$(setpriv --reuid=65534 --regid=65534 --clear-groups env POOLSHIM_SOCKET="$sock" "$raw" resolve "$token")
    echo "nobody resolving the exporter's token: $got"
    [[ $got == not_found ]] || fail "another uid resolved the token"
  fi
  wait "$importer" || { cat "$dir/import.out"; fail "importer"; }
  wait "$exporter" || { cat "$dir/export.out"; fail "exporter"; }
  cat "$dir/export.out" "$dir/import.out" "$dir/plain.out"
  echo "daemon_test ipc: OK"
  ;;
device)
  # Device memory lent by the daemon (VMM, POOLSHIM_DEVICE_SOURCE=daemon): a client's device pool
  # takes its segments from the daemon and its data round-trips right; kill -9 gives them back.
  start_daemon 512M --device-limit 256M
  POOLSHIM_DEVICE_SOURCE=daemon under_shim "$client" --buffers 1 --ready "$dir/dev.ready" --hold \
    >"$dir/dev.out" 2>&1 &
  dev=$!
  wait_files "$dir/dev.ready"
  st=$(status); echo "$st"
  [[ $(echo "$st" | head -1 | field device_lent_bytes) -gt 0 ]] || fail "no device memory was lent"
  kill -9 $dev; wait $dev 2>/dev/null
  for _ in $(seq 200); do [[ $(status | head -1 | field device_lent_bytes) -eq 0 ]] && break; sleep 0.01; done
  [[ $(status | head -1 | field device_lent_bytes) -eq 0 ]] || fail "device memory stayed lent after kill -9"
  (POOLSHIM_DEVICE_SOURCE=daemon under_shim "$client" --buffers 2) >"$dir/dev2.out" 2>&1 ||
    { cat "$dir/dev2.out"; fail "a device-memory client"; }
  cat "$dir/dev2.out"
  grep -q "corruptions=0 .*device_segments=[1-9]" "$dir/dev2.out" || fail "the pool did not use daemon memory"
  # Over the daemon's limit (or without one) the pool falls back to cuMemAlloc, and still works.
  kill -9 "$dpid"; wait "$dpid" 2>/dev/null; dpid=""
  start_daemon 512M
  (POOLSHIM_DEVICE_SOURCE=daemon under_shim "$client" --buffers 1) >"$dir/dev3.out" 2>&1 ||
    { cat "$dir/dev3.out"; fail "fallback from a daemon that lends no device memory"; }
  grep -q "corruptions=0 .*device_segments=0" "$dir/dev3.out" || { cat "$dir/dev3.out"; fail "fallback"; }
  echo "daemon_test device: OK"
  ;;
idle_exit)
  # A per-user daemon exits after its idle period once nothing is lent and no client is left, and
  # not while a client holds memory. Its Prometheus text counts what is lent meanwhile.
  port=$((20000 + RANDOM % 20000))
  start_daemon 256M --idle-exit 1 --metrics-port "$port" --metrics-clients 1
  under_shim "$client" --buffers 1 --ready "$dir/i.ready" --go "$dir/go" >"$dir/i.out" 2>&1 &
  holder=$!
  wait_files "$dir/i.ready"
  sleep 1.5
  kill -0 "$dpid" 2>/dev/null || fail "the daemon exited while a client held memory"
  metrics=$(python3 -c "import urllib.request,sys; print(urllib.request.urlopen('http://127.0.0.1:$port/metrics', timeout=5).read().decode())")
  echo "$metrics" | grep -E '^poolshimd_(lent_bytes|clients) '
  echo "$metrics" | grep -q "^poolshimd_lent_bytes [1-9]" || fail "metrics do not show the lent slabs"
  echo "$metrics" | grep -q "^poolshimd_client_lent_bytes{pid=\"$holder\"" || fail "metrics lack the client"
  touch "$dir/go"; wait "$holder" || fail "client"
  t0=$(now_ms)
  for _ in $(seq 400); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.01; done
  kill -0 "$dpid" 2>/dev/null && fail "the daemon did not exit when idle"
  echo "idle daemon exited $(($(now_ms) - t0)) ms after its last client"
  dpid=""
  [[ -S "$sock" ]] && fail "the socket file was left behind"
  echo "daemon_test idle_exit: OK"
  ;;
return_idle)
  # A client's pinned cache sits idle while another process finds the region full: the daemon asks
  # for memory back, the idle client returns its slabs, and the other one gets a slab.
  start_daemon 512M
  under_shim "$client" --buffers 3 --idle-poll 4 >"$dir/idle.out" 2>&1 &
  idle=$!
  for _ in $(seq 300); do
    [[ $(status | head -1 | field lent_bytes) -ge $((4 * 64 * 1024 * 1024)) ]] && break
    sleep 0.02
  done
  sleep 0.3  # its buffers are freed now: the slabs are idle in its cache
  out=$(POOLSHIM_SOCKET=$sock "$raw" squeeze 3.5) || { echo "$out"; status; fail "no slab came back"; }
  echo "$out"
  wait "$idle" || { cat "$dir/idle.out"; fail "the idle client failed"; }
  cat "$dir/idle.out"
  grep -q "returned=[1-9]" "$dir/idle.out" || fail "the idle client returned nothing"
  echo "daemon_test return_idle: OK"
  ;;
bench)
  start_daemon 256M
  POOLSHIM_SOCKET=$sock "$raw" bench 4
  for i in 1 2 3 4 5; do
    (under_shim "$client" --buffers 3 --hold --ready "$dir/b$i.ready") >"$dir/b.out" 2>&1 &
    b=$!
    wait_files "$dir/b$i.ready"
    t0=$(now_ms); kill -9 $b
    echo "reclaim_ms=$(POOLSHIM_SOCKET=$sock "$raw" await-lent 0 "$t0") (4 slabs of a client holding 3 buffers, kill -9 to the daemon's figures)"
    wait $b 2>/dev/null
  done
  if [[ -n "$first" ]]; then
    # A fresh process's first pinned allocation of 256 MiB: a warm daemon's slab (258 MiB slabs: the
    # size the local source makes for it, 256 MiB and a guard page rounded to 2 MiB), local slabs,
    # and no shim. Three processes each.
    kill -9 "$dpid"; wait "$dpid" 2>/dev/null; dpid=""
    start_daemon 1548M --slab 258M --fill-threads 2
    sleep 3  # the fillers fill the region
    for run in 1 2 3; do
      echo "first_alloc daemon: $( (under_shim "$first" 256) 2>/dev/null)"
      echo "first_alloc local:  $( (POOLSHIM_DAEMON=0 under_shim "$first" 256) 2>/dev/null)"
      echo "first_alloc no shim: $(env -u LD_PRELOAD "$first" 256 2>/dev/null)"
    done
  fi
  ;;
*) echo "daemon_test: unknown scenario $scenario" >&2; exit 2 ;;
esac

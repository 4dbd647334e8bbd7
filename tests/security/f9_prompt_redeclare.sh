#!/usr/bin/env bash
# Issue #13, finding 9: after a daemon restart, a client that holds slabs and makes no further
# lease or return (an idle program) must re-declare them promptly, so that the restarted daemon
# accounts for it (clients=1, leases>0) without waiting for the client's next request.
# usage: f9_prompt_redeclare.sh --daemon poolshimd --client daemon_client_program --shim libpoolshim.so
set -u
daemon="" client="" shim=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --daemon) daemon=$2; shift 2 ;;
    --client) client=$2; shift 2 ;;
    --shim) shim=$2; shift 2 ;;
    *) echo "f9_prompt_redeclare: unknown option $1" >&2; exit 2 ;;
  esac
done
fail() { echo "f9_prompt_redeclare: FAIL: $*" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/poolshim-f9-XXXXXX")
chmod 700 "$dir"
sock=$dir/poolshimd.sock
dpid="" cpid=""
cleanup() {
  [[ -n "$dpid" ]] && kill -9 "$dpid" 2>/dev/null
  [[ -n "$cpid" ]] && kill -9 "$cpid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

start_daemon() {
  "$daemon" --socket "$sock" --region 512M --slab 64M --fill-threads 1 --idle-exit 0 >>"$dir/daemon.log" 2>&1 &
  dpid=$!
  for _ in $(seq 250); do
    [[ -S "$sock" ]] && "$daemon" --status --socket "$sock" >/dev/null 2>&1 && return 0
    sleep 0.02
  done
  cat "$dir/daemon.log" >&2
  fail "the daemon did not come up"
}
status() { "$daemon" --status --socket "$sock"; }

start_daemon
# The client leases its slabs, says so in ready, then sits idle (no CUDA call) until go exists.
env LD_PRELOAD="$shim" POOLSHIM_SOCKET="$sock" POOLSHIM_TEST_EXPECT=shim \
  "$client" --buffers 2 --ready "$dir/ready" --go "$dir/go" >"$dir/client.out" 2>&1 &
cpid=$!
for _ in $(seq 1500); do [[ -e "$dir/ready" ]] && break; sleep 0.02; done
[[ -e "$dir/ready" ]] || { cat "$dir/client.out"; fail "the client did not get ready"; }
pid=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' "$dir/ready")
echo "before the restart: $(status | grep "^client pid=$pid ")"
status | grep -q "^client pid=$pid .*leases=[1-9]" || fail "the client did not lease from the daemon"

kill -9 "$dpid"
wait "$dpid" 2>/dev/null
dpid=""
sleep 0.5
start_daemon
t0=$(date +%s%N)
# Prompt: within 5 s of the restart, with the client idle all along.
ok=0
for _ in $(seq 50); do
  if status | grep -q "^client pid=$pid .*leases=[1-9]"; then
    ok=1
    break
  fi
  sleep 0.1
done
st=$(status)
echo "after the restart: $st"
((ok)) && echo "re-declared $((($(date +%s%N) - t0) / 1000000)) ms after the restarted daemon answered (at most: polled every 100 ms)"
((ok)) || fail "the idle client's slabs were not re-declared within 5 s of the daemon's restart"

touch "$dir/go"
wait "$cpid" || { cat "$dir/client.out"; fail "the client failed across the daemon's restart"; }
cpid=""
cat "$dir/client.out"
grep -q "corruptions=0" "$dir/client.out" || fail "the client's data"
grep -q "redeclared=[1-9]" "$dir/client.out" || fail "no slab was counted as re-declared"
echo "f9_prompt_redeclare: OK"

#!/usr/bin/env bash
# Channels end to end (issue #15, first part): a daemon of its own on a private socket; channel_pair
# checks bad input, broadcast to reader processes, back-pressure, close, reservations, a buffer by
# reference taken by its reader, and a writer's and a reader's kill -9 (timed); last, the daemon is
# killed under an attached writer and reader, whose messages keep flowing. (The figures:
# tests/bench/channel_bench.cpp and channel_bench.py.)
# usage: channel_test.sh --daemon poolshimd --pair channel_pair
set -u
daemon="" pair=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --daemon) daemon=$2; shift 2 ;;
    --pair) pair=$2; shift 2 ;;
    *) echo "channel_test: unknown option $1" >&2; exit 2 ;;
  esac
done
fail() { echo "channel_test: FAIL: $*" >&2; exit 1; }

source "$(dirname "$0")/private_daemon.sh"
start_private_daemon "$daemon" channels --region 128M --slab 8M
"$pair" check || { cat "$dir/daemon.log"; fail "channel_pair check"; }
"$pair" death || { cat "$dir/daemon.log"; fail "channel_pair death"; }
# A daemon restart: the processes already attached keep their channel (their shared mapping).
coproc SURVIVE { exec "$pair" survive; }
# Its descriptors copied now: bash unsets SURVIVE once the process has exited.
exec {from_survive}<&"${SURVIVE[0]}" {to_survive}>&"${SURVIVE[1]}"
read -r -t 20 line <&"$from_survive" || true
[[ "$line" == attached ]] || fail "survive: not attached ($line)"
kill -9 "$dpid"
wait "$dpid" 2>/dev/null
dpid=""
echo go >&"$to_survive"
result=$(cat <&"$from_survive")
echo "$result"
[[ "$result" == *"survive OK"* ]] || fail "survive"
echo "channel_test: OK"

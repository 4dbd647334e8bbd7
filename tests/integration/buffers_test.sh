#!/usr/bin/env bash
# Named buffers end to end (issue #14): a daemon of its own on a private socket; buffer_pair (C,
# libpoolshim_buffers, no shim) checks create / open in a second process / list / unlink / close
# and the bad inputs, then times a 1 GiB buffer's open-to-last-byte in a second process, beside
# cudaHostAlloc of 1 GiB (host_first_alloc, on the simulator or the GPU). With --device-pair:
# device buffers (device_buffer_pair check: a reader process ordered after a held-back write by the
# buffer's IPC event; device_buffer_pair channel: the same by reference over a channel), and a
# holder's kill -9 timed until the daemon has freed its device memory.
# usage: buffers_test.sh --daemon poolshimd --pair buffer_pair [--first host_first_alloc]
#                        [--device-pair device_buffer_pair]
set -u
daemon="" pair="" first="" device_pair=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --daemon) daemon=$2; shift 2 ;;
    --pair) pair=$2; shift 2 ;;
    --first) first=$2; shift 2 ;;
    --device-pair) device_pair=$2; shift 2 ;;
    *) echo "buffers_test: unknown option $1" >&2; exit 2 ;;
  esac
done
fail() { echo "buffers_test: FAIL: $*" >&2; exit 1; }

source "$(dirname "$0")/private_daemon.sh"
start_private_daemon "$daemon" buffers --region 1280M --slab 64M --fill-threads 2

"$pair" check || fail "buffer_pair check"
"$daemon" --status | grep -q "named_bytes=0" || { "$daemon" --status; fail "named bytes left after the check"; }
"$pair" bench $((1 << 30)) || fail "buffer_pair bench"
"$pair" roundtrip 2000 || fail "buffer_pair roundtrip"
if [[ -n "$first" ]]; then
  echo "cudaHostAlloc of 1 GiB (host_first_alloc 1024, without the shim): $("$first" 1024)"
fi
if [[ -n "$device_pair" ]]; then
  "$device_pair" check || fail "device_buffer_pair check"
  "$daemon" --status | grep -q "device_lent_bytes=0" || { "$daemon" --status; fail "device bytes left after the check"; }
  # A device buffer over a channel (issue #15): by reference, ordered by its event, freed after.
  "$device_pair" channel || fail "device_buffer_pair channel"
  "$daemon" --status | grep -q "device_lent_bytes=0" || { "$daemon" --status; fail "device bytes left after the channel"; }
  # A holder of an unlinked device buffer dies: its memory goes back at once (pidfd, no scan).
  coproc HOLD { exec "$device_pair" hold dev.held; }
  read -r -t 20 line <&"${HOLD[0]}" || true
  [[ "$line" == ready ]] || fail "the holder did not start ($line)"
  "$daemon" --status | grep -q "device_lent_bytes=67108864" || { "$daemon" --status; fail "the holder's 64 MiB"; }
  t0=$(date +%s%N)
  hold_pid=$HOLD_PID
  kill -9 "$hold_pid"
  freed=""
  for _ in $(seq 2000); do
    if "$daemon" --status | grep -q "device_lent_bytes=0"; then freed=$(date +%s%N); break; fi
  done
  wait "$hold_pid" 2>/dev/null
  [[ -n "$freed" ]] || { "$daemon" --status; fail "the killed holder's device buffer was not freed"; }
  echo "device buffer: kill -9 of its last holder to freed (seen by --status): $(( (freed - t0) / 1000 )) us"
  "$device_pair" roundtrip 1000 || fail "device_buffer_pair roundtrip"
fi
echo "buffers_test: OK"

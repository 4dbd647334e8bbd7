#!/usr/bin/env bash
# Named buffers end to end (issue #14): a daemon of its own on a private socket; buffer_pair (C,
# libpoolshim_buffers, no shim) checks create / open in a second process / list / unlink / close
# and the bad inputs, then times a 1 GiB buffer's open-to-last-byte in a second process, beside
# cudaHostAlloc of 1 GiB (host_first_alloc, on the simulator or the GPU).
# usage: buffers_test.sh --daemon poolshimd --pair buffer_pair --first host_first_alloc
set -u
daemon="" pair="" first=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --daemon) daemon=$2; shift 2 ;;
    --pair) pair=$2; shift 2 ;;
    --first) first=$2; shift 2 ;;
    *) echo "buffers_test: unknown option $1" >&2; exit 2 ;;
  esac
done
fail() { echo "buffers_test: FAIL: $*" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/poolshim-buffers-XXXXXX")
chmod 700 "$dir"
export POOLSHIM_SOCKET=$dir/poolshimd.sock
dpid=""
cleanup() {
  [[ -n "$dpid" ]] && kill -9 "$dpid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
"$daemon" --socket "$POOLSHIM_SOCKET" --region 1280M --slab 64M --fill-threads 2 >>"$dir/daemon.log" 2>&1 &
dpid=$!
for _ in $(seq 250); do
  [[ -S "$POOLSHIM_SOCKET" ]] && "$daemon" --status >/dev/null 2>&1 && break
  sleep 0.02
done
"$daemon" --status >/dev/null 2>&1 || { cat "$dir/daemon.log"; fail "the daemon did not come up"; }

"$pair" check || fail "buffer_pair check"
"$daemon" --status | grep -q "named_bytes=0" || { "$daemon" --status; fail "named bytes left after the check"; }
"$pair" bench $((1 << 30)) || fail "buffer_pair bench"
"$pair" roundtrip 2000 || fail "buffer_pair roundtrip"
if [[ -n "$first" ]]; then
  echo "cudaHostAlloc of 1 GiB (host_first_alloc 1024, without the shim): $("$first" 1024)"
fi
echo "buffers_test: OK"

#!/usr/bin/env bash
# Runs a test program without the shim and under it in every mode (pool twice: the default free
# synchronisation and POOLSHIM_FREE_SYNC=fence), and fails unless each run exits
# 0 and prints the same stdout as the run without the shim. The program checks the shim's counters
# itself (POOLSHIM_TEST_EXPECT tells it what was preloaded).
# usage: run_compare.sh SHIM.so PROGRAM [ARGS...]
set -u
shim=$1; shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

for spec in "bare none - - -" "observe shim $shim observe -" "pool shim $shim - -" "pool-fence shim $shim - fence" \
  "off off $shim off -"; do
  read -r name expect preload mode sync <<<"$spec"
  [[ $preload == - ]] && preload=
  [[ $mode == - ]] && mode=
  [[ $sync == - ]] && sync=
  env -u LD_PRELOAD -u POOLSHIM_MODE -u POOLSHIM_FREE_SYNC ${preload:+LD_PRELOAD=$preload} \
    ${mode:+POOLSHIM_MODE=$mode} ${sync:+POOLSHIM_FREE_SYNC=$sync} \
    POOLSHIM_TEST_EXPECT=$expect "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
  rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "== $name run exited $rc; stderr:"; cat "$tmp/$name.err"; status=1
  fi
  if [[ $name != bare ]] && ! diff -u "$tmp/bare.out" "$tmp/$name.out" >"$tmp/$name.diff"; then
    echo "== $name run printed something else than the run without the shim:"; cat "$tmp/$name.diff"; status=1
  fi
done
echo "== stdout of the run without the shim:"; cat "$tmp/bare.out"
[[ $status -eq 0 ]] && echo "run_compare: all runs agree"
exit $status

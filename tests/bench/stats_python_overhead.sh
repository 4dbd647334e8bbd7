#!/usr/bin/env bash
# Cost of Python frames: cudaMalloc+cudaFree pairs from Python (ctypes, on the simulator) without
# the shim and under it with POOLSHIM_STATS=off, native and python (stats_python_pairs.py).
# usage: tests/bench/stats_python_overhead.sh [--build DIR] [--pairs N] [--python EXE]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$here/../../build pairs=100000 py=python3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    --python) py=$2; shift 2 ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "stats_python_overhead: unknown option $1" >&2; exit 2 ;;
  esac
done
export LD_LIBRARY_PATH=$build/tests/sim/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ns() { "$@" "$py" "$here/stats_python_pairs.py" "$pairs" | sed -n 's/^ns_per_pair=//p'; }
echo "$("$py" --version 2>&1), $pairs pairs, ns per pair (best of 3 loops):"
none=$(ns env)
off=$(ns env LD_PRELOAD="$build/shim/libpoolshim.so" POOLSHIM_STATS=off POOLSHIM_SOCKET=/nonexistent/x)
native=$(ns env LD_PRELOAD="$build/shim/libpoolshim.so" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$tmp" \
  POOLSHIM_SOCKET=/nonexistent/x)
python=$(ns env LD_PRELOAD="$build/shim/libpoolshim.so" POOLSHIM_STATS=python POOLSHIM_STATS_DIR="$tmp" \
  POOLSHIM_SOCKET=/nonexistent/x)
printf "no shim %s | shim, stats off %s | native %s (+%s) | python %s (+%s)\n" "$none" "$off" "$native" \
  $((native - off)) "$python" $((python - off))

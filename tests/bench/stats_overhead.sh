#!/usr/bin/env bash
# Call-site statistics overhead per allocation+free pair at call depths 8, 32 and 64, against
# heaptrack on the same call pattern made of malloc/free (same pairs, depth and number of sites);
# each tool's cost is the difference to its own run without it (stack_depth_pairs).
# --callgrind adds instructions per pair (valgrind: the difference between runs of N and 2N pairs,
# so start-up does not count) for the shim with stats off and on, and for heaptrack's malloc path.
# usage: tests/bench/stats_overhead.sh [--build DIR] [--pairs N] [--depths "8 32 64"] [--callgrind]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$here/../../build pairs=200000 depths="8 32 64" callgrind=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    --depths) depths=$2; shift 2 ;;
    --callgrind) callgrind=1; shift ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "stats_overhead: unknown option $1" >&2; exit 2 ;;
  esac
done
prog=$build/tests/bench/stack_depth_pairs
shim=$build/shim/libpoolshim.so
export LD_LIBRARY_PATH=$build/tests/sim/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ns() { sed -n 's/^ns_per_pair=//p'; }
best() {  # best of 3 runs (the machine is shared)
  local b=""
  for _ in 1 2 3; do
    local v; v=$("$@" | ns)
    [[ -z "$b" ]] || awk -v a="$v" -v b="$b" 'BEGIN { exit !(a < b) }' && b=$v
  done
  echo "$b"
}
have_heaptrack=1; command -v heaptrack >/dev/null || have_heaptrack=0
echo "depth | shim off | shim stats | stats cost | malloc | heaptrack | heaptrack cost | ratio"
for d in $depths; do
  off=$(best env LD_PRELOAD="$shim" POOLSHIM_STATS=off POOLSHIM_SOCKET=/nonexistent/x "$prog" cuda "$d" "$pairs")
  on=$(best env LD_PRELOAD="$shim" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$tmp" POOLSHIM_STATS_DEPTH=64 \
       POOLSHIM_SOCKET=/nonexistent/x "$prog" cuda "$d" "$pairs")
  bare=$(best "$prog" malloc "$d" "$pairs")
  if [[ $have_heaptrack -eq 1 ]]; then
    ht=$(best heaptrack -o "$tmp/ht" "$prog" malloc "$d" "$pairs" 2>/dev/null)
  else
    ht=""
  fi
  awk -v d="$d" -v off="$off" -v on="$on" -v bare="$bare" -v ht="$ht" 'BEGIN {
    c = on - off
    if (ht == "") printf "%5d | %8.0f | %10.0f | %10.0f | %6.0f | %9s | %14s | %s\n", d, off, on, c, bare, "-", "-", "-"
    else { h = ht - bare; printf "%5d | %8.0f | %10.0f | %10.0f | %6.0f | %9.0f | %14.0f | %.1fx\n", d, off, on, c, bare, ht, h, h / c }
  }'
  rm -f "$tmp"/*.stats "$tmp"/ht*
done
echo "(ns per pair; stats cost = shim stats - shim off; heaptrack cost = heaptrack - malloc; ratio = heaptrack cost / stats cost)"
[[ $callgrind -eq 1 ]] || exit 0
command -v valgrind >/dev/null || { echo "stats_overhead: valgrind not installed: no instruction counts"; exit 0; }
ir() {  # ir N CMD...: instructions of a run of N pairs
  local n=$1; shift
  valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$tmp/cg.out" "$@" "$n" >/dev/null 2>&1
  sed -n 's/^summary: //p; s/^totals: //p' "$tmp/cg.out" | head -1 | awk '{ print $1 }'
}
per_pair() {  # per_pair CMD...: instructions per pair, start-up cancelled out
  local a b n=20000
  a=$(ir $n "$@"); b=$(ir $((2 * n)) "$@")
  awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN { printf "%.0f", (b - a) / n }'
}
echo
echo "depth | shim off Ir | shim stats Ir | stats Ir | (instructions per cudaMalloc+cudaFree pair, callgrind)"
for d in $depths; do
  off=$(per_pair env LD_PRELOAD="$shim" POOLSHIM_STATS=off POOLSHIM_SOCKET=/nonexistent/x "$prog" cuda "$d")
  on=$(per_pair env LD_PRELOAD="$shim" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$tmp" POOLSHIM_SOCKET=/nonexistent/x \
       "$prog" cuda "$d")
  printf "%5d | %11d | %13d | %8d\n" "$d" "$off" "$on" $((on - off))
  rm -f "$tmp"/*.stats
done

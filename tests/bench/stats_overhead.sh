#!/usr/bin/env bash
# Call-site statistics overhead per allocation+free pair at call depths 8, 20, 32 and 64, against
# heaptrack on the same call pattern made of malloc/free (same pairs, depth and number of sites);
# each tool's cost is the difference to its own run without it (stack_depth_pairs).
# Two figures per tool: wall time in the program's loop (best of --runs rounds; the tools take turns in
# each round, so that a slow period of the machine falls on all of them), and CPU time of the whole
# process tree (heaptrack's interpreter process included), the difference between runs of N and
# 2N pairs so that start-up and the tools' exit work cancel out (on the simulator its stream
# worker threads add CPU time of their own, which makes the shim's CPU figures the noisier ones).
# --callgrind adds instructions per pair (valgrind: the difference between runs of N and 2N pairs)
# for the shim with stats off and on.
# --sites K: the pairs come from K call sites in turn (default 4; 1 to 64; always of four sizes, so
# that only the stacks change with K); a list (4,16,64) runs each. --depths takes a list too, with
# spaces or commas. --shim FILE measures another libpoolshim.so (an older build) with this build's
# program. --shared: another thread makes one pair first, so that statistics count as in a program
# that allocates from several threads (locked atomics instead of the sole writer's plain ones).
# --best-batch: the wall figures are each loop's fastest batch of 1000 pairs instead of the whole
# loop (on a machine others load, the batches no other process interrupted).
# usage: tests/bench/stats_overhead.sh [--build DIR] [--shim FILE] [--pairs N] [--depths "8 20 32 64"]
#                                      [--runs K] [--sites K[,K...]] [--shared] [--best-batch] [--callgrind]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$here/../../build shim="" pairs=1000000 depths="8 20 32 64" runs=3 site_list=4 callgrind=0 shared=() figure=ns_per_pair
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --shim) shim=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    --depths) depths=${2//,/ }; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --sites) site_list=${2//,/ }; shift 2 ;;
    --shared) shared=(shared); shift ;;
    --best-batch) figure=ns_per_pair_best_batch; shift ;;
    --callgrind) callgrind=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "stats_overhead: unknown option $1 (--help)" >&2; exit 2 ;;
  esac
done
[[ "$pairs" =~ ^[1-9][0-9]*$ && "$runs" =~ ^[1-9][0-9]*$ ]] ||
  { echo "stats_overhead: --pairs and --runs take positive whole numbers" >&2; exit 2; }
for sites in $site_list $depths; do
  [[ "$sites" =~ ^[1-9][0-9]*$ && $sites -le 64 ]] ||
    { echo "stats_overhead: --sites and --depths take whole numbers from 1 to 64" >&2; exit 2; }
done
prog=$build/tests/bench/stack_depth_pairs
[[ -n "$shim" ]] || shim=$build/shim/libpoolshim.so
[[ -x "$prog" && -f "$shim" ]] || { echo "stats_overhead: build first ($prog, $shim)" >&2; exit 2; }
export LD_LIBRARY_PATH=$build/tests/sim/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
have_heaptrack=1; command -v heaptrack >/dev/null || have_heaptrack=0

min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a < b) ? a : b }'; }
one_wall() {  # one_wall CMD...: the loop's ns per pair (or its best batch's), one run
  local v
  v=$("$@" "$pairs" "$sites" "${shared[@]}" 2>/dev/null | sed -n "s/^$figure=//p")
  [[ -n "$v" ]] || { echo "stats_overhead: no figure from: $*" >&2; exit 1; }
  echo "$v"
}
cpu_s() {  # cpu_s N CMD...: user+system seconds of the whole process tree for N pairs
  local n=$1 t; shift
  TIMEFORMAT='%3U %3S'
  t=$( { time "$@" "$n" "$sites" "${shared[@]}" >/dev/null 2>&1; } 2>&1 )
  awk '{ print $1 + $2 }' <<<"$t"
}
declare -A cpu_n cpu_2n
cpu_round() {  # cpu_round TOOL CMD...: one run of N and one of 2N pairs, the lowest of each kept
  local tool=$1; shift
  cpu_n[$tool]=$(min "$(cpu_s "$pairs" "$@")" "${cpu_n[$tool]:-}")
  cpu_2n[$tool]=$(min "$(cpu_s $((2 * pairs)) "$@")" "${cpu_2n[$tool]:-}")
}
cpu_of() {  # cpu_of TOOL: CPU ns per pair, (best 2N run - best N run) / pairs
  # The program runs a warm-up of a tenth of its pairs first: 1.1 N more pairs in the second run.
  awk -v a="${cpu_n[$1]}" -v c="${cpu_2n[$1]}" -v n="$pairs" 'BEGIN { printf "%.1f", (c - a) / (1.1 * n) * 1e9 }'
}
shim_env=(env LD_PRELOAD="$shim" POOLSHIM_SOCKET=/nonexistent/x)
stats_env=("${shim_env[@]}" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$tmp" POOLSHIM_STATS_DEPTH=64)
off_env=("${shim_env[@]}" POOLSHIM_STATS=off)

echo "$pairs pairs, best of $runs; ns per allocation+free pair; shim: $shim${shared:+; shared (a second thread allocated first)}"
[[ $figure == ns_per_pair ]] && where="in the loop" || where="best batch "
echo "            |                 wall time $where                  |        CPU time of the process tree"
echo "sites depth | shim off | +stats | stats | malloc | heaptrack | ht   | ratio | stats | heaptrack | ratio"
for sites in $site_list; do
for d in $depths; do
  # The tools take turns within each round (best of $runs rounds per tool): a slow period of the
  # machine (another tenant, a frequency step) then falls on every tool alike instead of on the
  # $runs runs of one of them.
  off="" on="" bare="" ht=""
  cpu_n=() cpu_2n=()
  for ((round = 0; round < runs; ++round)); do
    off=$(min "$(one_wall "${off_env[@]}" "$prog" cuda "$d")" "$off")
    on=$(min "$(one_wall "${stats_env[@]}" "$prog" cuda "$d")" "$on"); rm -f "$tmp"/*.stats
    bare=$(min "$(one_wall "$prog" malloc "$d")" "$bare")
    cpu_round off "${off_env[@]}" "$prog" cuda "$d"
    cpu_round on "${stats_env[@]}" "$prog" cuda "$d"; rm -f "$tmp"/*.stats
    cpu_round bare "$prog" malloc "$d"
    if ((have_heaptrack)); then
      ht=$(min "$(one_wall heaptrack -o "$tmp/ht" "$prog" malloc "$d")" "$ht"); rm -f "$tmp"/ht*
      cpu_round ht heaptrack -o "$tmp/ht" "$prog" malloc "$d"; rm -f "$tmp"/ht*
    fi
  done
  c_off=$(cpu_of off) c_on=$(cpu_of on) c_bare=$(cpu_of bare) c_ht=""
  ((have_heaptrack)) && c_ht=$(cpu_of ht)
  awk -v k="$sites" -v d="$d" -v off="$off" -v on="$on" -v bare="$bare" -v ht="$ht" \
      -v coff="$c_off" -v con="$c_on" -v cbare="$c_bare" -v cht="$c_ht" 'BEGIN {
    s = on - off; cs = con - coff
    if (ht == "") {
      printf "%5d %5d | %8.0f | %6.0f | %5.0f | %6.0f | %9s | %4s | %5s | %5.0f | %9s | %s\n", k, d, off, on, s, bare, "-", "-", "-", cs, "-", "-"
    } else {
      h = ht - bare; ch = cht - cbare
      r = s > 0 ? sprintf("%.1fx", h / s) : "n/a"; cr = cs > 0 ? sprintf("%.1fx", ch / cs) : "n/a"
      printf "%5d %5d | %8.0f | %6.0f | %5.0f | %6.0f | %9.0f | %4.0f | %5s | %5.0f | %9.0f | %s\n", k, d, off, on, s, bare, ht, h, r, cs, ch, cr
    }
  }'
done
done
echo "(stats = shim with stats - shim with stats off; ht = heaptrack - plain malloc; ratio = heaptrack's cost / stats's cost)"
((have_heaptrack)) || echo "(heaptrack is not installed: apt-get install heaptrack)"
((callgrind)) || exit 0
command -v valgrind >/dev/null || { echo "stats_overhead: valgrind not installed: no instruction counts"; exit 0; }
ir() {  # ir N CMD...: instructions of a run of N pairs
  local n=$1; shift
  "$@" valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$prog" cuda "$d" "$n" "$sites" "${shared[@]}" \
    >/dev/null 2>&1
  sed -n 's/^summary: //p; s/^totals: //p' "$tmp/cg.out" | head -1 | awk '{ print $1 }'
}
per_pair() {  # per_pair ENV...: instructions per pair, start-up cancelled out
  local a b n=20000
  a=$(ir $n "$@"); b=$(ir $((2 * n)) "$@")
  awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN { printf "%.0f", (b - a) / (1.1 * n) }'
}
echo
echo "sites depth | shim off Ir | shim stats Ir | stats Ir | (instructions per cudaMalloc+cudaFree pair, callgrind)"
for sites in $site_list; do
for d in $depths; do
  off=$(per_pair "${off_env[@]}")
  on=$(per_pair "${stats_env[@]}")
  printf "%5d %5d | %11d | %13d | %8d\n" "$sites" "$d" "$off" "$on" $((on - off))
  rm -f "$tmp"/*.stats
done
done

#!/usr/bin/env bash
# shim_bench.sh: the cudaMalloc+cudaFree hit-path pair with and without libpoolshim.so preloaded,
# as a table of ns per pair and the ratio to the bare runtime (shim_pair_benchmark), and the
# instructions per pair under callgrind split into shim and CUDA libraries (shim_pair_count).
# Runs on whatever libcudart/libcuda LD_LIBRARY_PATH finds (--sim-lib puts the simulator first).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: tests/bench/shim_bench.sh [options]

Measures one cudaMalloc+cudaFree pair (512 B, 64 KiB, 4 MiB, 64 MiB; 1 and 2 threads) in modes
  none     (a) no shim
  pool     (b) shim, POOLSHIM_MODE=pool POOLSHIM_FREE_SYNC=device (the default free sync)
  observe  (c) shim, POOLSHIM_MODE=observe (counts, forwards every call)
  fence    (d) shim, POOLSHIM_MODE=pool POOLSHIM_FREE_SYNC=fence (no host sync; one fence per
               batch of frees, amortised over the pairs)
  nosync   (e) shim, POOLSHIM_MODE=pool POOLSHIM_FREE_SYNC=unsafe: the debug switch that skips the
               free's synchronisation; unsound, shown only as the shim's own cost without it
and prints ns per pair (real time per thread) and the ratio to mode none. Then, with --callgrind,
runs shim_pair_count under valgrind --tool=callgrind, collecting only inside the pair loop, and
prints instructions per pair by object: libpoolshim.so, the CUDA libraries (libcudart, libcuda),
and libc/ld.so (called by either).

On the simulator these are NOT GPU figures: the simulator's cuMemAlloc/cuMemFree/cuCtxSynchronize
cost nothing like a real driver's, so only the shim's own share and its instruction count carry
over. Run the same binaries on a GPU (scripts/gpu-check.sh, or this script without --sim-lib).

Options:
  --build DIR       take the binaries, the shim and the simulator from build folder DIR
                    (default, when none of the paths below is given: <repo>/build)
  --bench FILE      shim_pair_benchmark          --count FILE   shim_pair_count
  --shim FILE       libpoolshim.so               --sim-lib DIR  simulator libraries, put first on
                                                                LD_LIBRARY_PATH
  --no-sim          with --build: do not use the simulator (real CUDA from LD_LIBRARY_PATH)
  --modes LIST      comma-separated (default: none,pool,observe,fence,nosync)
  --min-time SECS   Google Benchmark's --benchmark_min_time per benchmark (default: 0.5)
  --count-timing N  time with shim_pair_count instead (N pairs per size, 1 thread, no Google
                    Benchmark: what the portable bundle carries)
  --callgrind       also count instructions (needs valgrind); --callgrind-only: only that
  --sizes LIST      sizes for callgrind (default: 512,65536,4194304,67108864)
  --pairs N1,N2     pair counts of the two callgrind runs (default: 1000,3000)
  -h, --help        this text
Prints "shim_bench: FAIL ..." and exits 1 when a run fails or the shim is not where expected.
EOF
}

die() { echo "shim_bench: FAIL: $*" >&2; exit 1; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build="" bench="" count="" shim="" sim_lib="" no_sim=0
modes="none,pool,observe,fence,nosync" min_time=0.5 callgrind=0 timing=1 count_timing=0
sizes="512,65536,4194304,67108864" pairs="1000,3000"
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --build) build=$2; shift 2 ;;
    --bench) bench=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    --shim) shim=$2; shift 2 ;;
    --sim-lib) sim_lib=$2; shift 2 ;;
    --no-sim) no_sim=1; shift ;;
    --modes) modes=$2; shift 2 ;;
    --min-time) min_time=$2; shift 2 ;;
    --count-timing) count_timing=$2; shift 2 ;;
    --callgrind) callgrind=1; shift ;;
    --callgrind-only) callgrind=1; timing=0; shift ;;
    --sizes) sizes=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    *) echo "shim_bench: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z "$build$bench$count$shim" && -d "$here/../../build" ]]; then build=$(cd "$here/../../build" && pwd); fi
if [[ -n "$build" ]]; then
  : "${bench:=$build/tests/bench/shim_pair_benchmark}" "${count:=$build/tests/bench/shim_pair_count}"
  : "${shim:=$build/shim/libpoolshim.so}"
  [[ $no_sim -eq 1 || -n "$sim_lib" ]] || sim_lib=$build/tests/sim/lib
fi
if [[ -n "$sim_lib" ]]; then
  [[ -e "$sim_lib/libcuda.so.1" ]] || die "$sim_lib holds no simulator libcuda.so.1"
  export LD_LIBRARY_PATH="$sim_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# Absolute: the preload path must not depend on the working folder of the programs.
[[ -z "$shim" || ! -e "$shim" ]] || shim=$(cd "$(dirname "$shim")" && pwd)/$(basename "$shim")
IFS=, read -r -a mode_list <<<"$modes"
for m in "${mode_list[@]}"; do
  case "$m" in none|pool|observe|fence|nosync) ;; *) echo "shim_bench: unknown mode '$m'" >&2; exit 2 ;; esac
  if [[ $m != none && ( $timing -eq 1 || $callgrind -eq 1 ) && ! -e "$shim" ]]; then
    die "mode $m needs the shim: --shim FILE (missing: '${shim}')"
  fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The environment of one mode, as words for env(1).
mode_env() {
  case "$1" in
    none) echo "POOLSHIM_MODE=off" ;;  # not preloaded anyway; set so an outer LD_PRELOAD does nothing
    pool) echo "LD_PRELOAD=$shim POOLSHIM_MODE=pool POOLSHIM_FREE_SYNC=device POOLSHIM_SUMMARY=1" ;;
    observe) echo "LD_PRELOAD=$shim POOLSHIM_MODE=observe POOLSHIM_SUMMARY=1" ;;
    fence) echo "LD_PRELOAD=$shim POOLSHIM_MODE=pool POOLSHIM_FREE_SYNC=fence POOLSHIM_SUMMARY=1" ;;
    nosync) echo "LD_PRELOAD=$shim POOLSHIM_MODE=pool POOLSHIM_FREE_SYNC=unsafe POOLSHIM_SUMMARY=1" ;;
  esac
}
mode_title() {
  case "$1" in
    none) echo "(a) no shim" ;; pool) echo "(b) pool, device sync" ;; observe) echo "(c) observe" ;;
    fence) echo "(d) pool, fence" ;; nosync) echo "(e) pool, no sync (unsafe)" ;;
  esac
}

# The simulator is whichever libcuda.so.1 comes first on LD_LIBRARY_PATH and names its devices so.
on_simulator=0 driver="the system's libcuda.so.1"
IFS=: read -r -a lib_dirs <<<"${LD_LIBRARY_PATH:-}"
for d in "${lib_dirs[@]}"; do
  if [[ -n "$d" && -e "$d/libcuda.so.1" ]]; then
    driver=$d/libcuda.so.1
    grep -qa "poolshim simulated device" "$d/libcuda.so.1" && on_simulator=1
    break
  fi
done
if [[ $on_simulator -eq 1 ]]; then
  echo "shim_bench: cudaMalloc+cudaFree pair on the CUDA SIMULATOR ($driver)"
  echo "shim_bench: SIMULATOR FIGURES ARE NOT GPU FIGURES: the simulator's cuMemAlloc/cuMemFree/cuCtxSynchronize"
  echo "            cost is not a real driver's; ratios to (a) say nothing about a GPU. Only the shim's own"
  echo "            instructions per pair carry over."
else
  echo "shim_bench: cudaMalloc+cudaFree pair on real CUDA ($driver)"
fi

fence_note=""
# Under the shim the exit summary must be there (a missing LD_PRELOAD file is only a warning), and
# in the pool modes it must count pool hits.
check_shim_ran() {
  [[ $1 == none ]] && return 0
  local hits
  hits=$(sed -n 's/.*poolshim: summary mode=[a-z]* .* pool_hits=\([0-9]*\).*/\1/p' "$tmp/$1.err" | tail -n1)
  [[ -n "$hits" ]] || { cat "$tmp/$1.err" >&2; die "mode $1: no poolshim summary: was the shim preloaded?"; }
  [[ $1 == observe || $hits -gt 0 ]] || { cat "$tmp/$1.err" >&2; die "mode $1: the shim reported no pool hits"; }
}
if [[ $timing -eq 1 ]]; then
  if [[ $count_timing -gt 0 ]]; then
    [[ -x "$count" ]] || die "no pair-count binary: --count FILE (missing: '${count}')"
  else
    [[ -x "$bench" ]] || die "no benchmark binary: --bench FILE (missing: '${bench}')"
  fi
  IFS=, read -r -a size_list <<<"$sizes"
  for m in "${mode_list[@]}"; do
    expect=yes
    [[ $m == none ]] && expect=no
    if [[ $count_timing -gt 0 ]]; then
      # One process per size, each line "shim_pair_count: B bytes, N pairs, T ns per pair" -> "B 1 T".
      : >"$tmp/$m.rows"
      for size in "${size_list[@]}"; do
        # shellcheck disable=SC2046  # mode_env's words are meant to split
        env -u LD_PRELOAD $(mode_env "$m") "$count" "$size" "$count_timing" >"$tmp/$m.out" 2>"$tmp/$m.err" ||
          { cat "$tmp/$m.err" >&2; die "mode $m: shim_pair_count $size failed"; }
        sed -n 's/^shim_pair_count: \([0-9]*\) bytes, [0-9]* pairs, \([0-9.]*\) ns per pair$/\1 1 \2/p' \
          "$tmp/$m.out" >>"$tmp/$m.rows"
        check_shim_ran "$m"
      done
    else
      # shellcheck disable=SC2046  # mode_env's words are meant to split
      if ! env -u LD_PRELOAD $(mode_env "$m") "$bench" --expect-shim=$expect --benchmark_min_time="$min_time" \
           --benchmark_format=csv >"$tmp/$m.csv" 2>"$tmp/$m.err"; then
        cat "$tmp/$m.err" >&2
        die "mode $m: shim_pair_benchmark failed"
      fi
      check_shim_ran "$m"
    fi
    if [[ $m == fence ]]; then
      # The summary line says how many fences the run recorded: none means fence mode did not run.
      fences=$(grep -o "fences=[0-9]*" "$tmp/$m.err" | tail -1 | cut -d= -f2 || true)
      frees=$(grep -o "device_frees=[0-9]*" "$tmp/$m.err" | tail -1 | cut -d= -f2 || true)
      [[ -n "$fences" ]] || die "mode fence: the shim's summary reports no fences (fence mode did not run)"
      fence_note="(d) fence mode: $fences fences for $frees frees (summary line of the last fence run)."
    fi
  done
  grep -m1 "cuda_device" "$tmp/${mode_list[0]}.err" | sed 's/^/shim_bench: /' || true
  # CSV rows: "pair/bytes:512/real_time/threads:1",iterations,real_time,cpu_time,time_unit,...
  for m in "${mode_list[@]}"; do
    if [[ $count_timing -gt 0 ]]; then awk -v m="$m" '{ print m, $0 }' "$tmp/$m.rows"; continue; fi
    awk -F, -v m="$m" '$1 ~ /^"pair\/bytes:/ {
        n = $1; gsub(/"/, "", n); split(n, part, "/"); sub("bytes:", "", part[2]); sub("threads:", "", part[4])
        t = $3; if ($5 == "us") t *= 1e3; else if ($5 == "ms") t *= 1e6; else if ($5 == "s") t *= 1e9
        print m, part[2], part[4], t }' "$tmp/$m.csv"
  done >"$tmp/all.txt"
  echo
  printf '%-9s %-3s' "bytes" "thr"
  for m in "${mode_list[@]}"; do printf ' | %-28s' "$(mode_title "$m")"; done
  echo
  base_mode=""
  [[ ",$modes," == *,none,* ]] && base_mode=none
  awk -v modes="$modes" -v base="$base_mode" '
    { key = $2 " " $3; ns[$1, key] = $4; if (!(key in seen)) { seen[key] = 1; order[++k] = key } }
    END {
      nm = split(modes, ml, ",")
      for (i = 1; i <= k; ++i) {
        split(order[i], kb, " ")
        b = kb[1]; label = (b >= 1048576) ? (b / 1048576 " MiB") : (b >= 1024) ? (b / 1024 " KiB") : (b " B")
        printf "%-9s %-3s", label, kb[2]
        for (j = 1; j <= nm; ++j) {
          v = ns[ml[j], order[i]]
          if (v == "") { printf " | %-28s", "-"; continue }
          cell = sprintf("%.0f ns", v)
          if (base != "" && ml[j] != base && ns[base, order[i]] > 0)
            cell = cell sprintf(" (%.2fx of a)", v / ns[base, order[i]])
          printf " | %-28s", cell
        }
        printf "\n"
      }
    }' "$tmp/all.txt"
  echo "(ns per pair = real time per thread per pair; with 2 threads each thread has its own pointer.)"
  [[ -n "$fence_note" ]] && echo "$fence_note"
  # Each requested row must be there: a benchmark that errored prints no row.
  rows=$(wc -l <"$tmp/all.txt")
  per_mode=$(( count_timing > 0 ? ${#size_list[@]} : 8 ))
  [[ $rows -eq $(( ${#mode_list[@]} * per_mode )) ]] || die "expected $(( ${#mode_list[@]} * per_mode )) rows, got $rows"
fi

if [[ $callgrind -eq 1 ]]; then
  command -v valgrind >/dev/null ||
    { echo "shim_bench: valgrind not installed: instruction counts skipped"; exit 0; }
  [[ -x "$count" ]] || die "no pair-count binary: --count FILE (missing: '${count}')"
  IFS=, read -r n1 n2 <<<"$pairs"
  [[ "$n1" =~ ^[0-9]+$ && "$n2" =~ ^[0-9]+$ && n2 -gt n1 ]] || { echo "shim_bench: --pairs takes N1,N2 with N2 > N1" >&2; exit 2; }
  # Ir by object of one run: shim, cuda (libcudart + libcuda), libc (libc, libm, libstdc++, ld.so), other.
  ir_by_object() {
    local m=$1 size=$2 n=$3 out="$tmp/cg.$1.$2.$3"
    # shellcheck disable=SC2046
    if ! env -u LD_PRELOAD $(mode_env "$m") valgrind --tool=callgrind --toggle-collect=poolshim_measured_pairs \
         --callgrind-out-file="$out" "$count" "$size" "$n" >"$out.log" 2>&1; then
      cat "$out.log" >&2
      die "callgrind run of shim_pair_count $size $n (mode $m) failed"
    fi
    # Self cost by object, read from the profile itself (what callgrind_annotate --inclusive=no sums
    # per function, but it leaves the object off inlined functions' lines): "ob=" sets the object of
    # the cost lines that follow ("cob=" may name it first); the cost line after "calls=" is a
    # callee's inclusive cost, skipped.
    awk '
      function object(spec,    id, rest) {  # "(N) name" defines N, "(N)" refers to it
        if (!match(spec, /^\([0-9]+\)/)) return spec
        id = substr(spec, 1, RLENGTH); rest = substr(spec, RLENGTH + 2)
        if (rest != "") names[id] = rest
        return names[id]
      }
      function group(o) {
        if (o ~ /libpoolshim/) return "s"
        if (o ~ /libcudart|libcuda\.so/) return "c"
        if (o ~ /libc\.so|libm\.so|libstdc\+\+|ld-linux|libgcc/) return "l"
        return "o"
      }
      /^ob=/ { obj = object(substr($0, 4)); next }
      /^cob=/ { callee = object(substr($0, 5)); next }
      /^calls=/ { call = 1; next }
      /^[0-9+*-]/ { ir = $2 + 0
                    if (call) {  # a callee inclusive cost: note only shim>libc, cuda>libc, shim>cuda
                      g = group(obj); cg = (callee == "") ? g : group(callee)
                      if (cg == "l" && g == "s") sl += ir
                      if (cg == "l" && g == "c") cl += ir
                      if (cg == "c" && g == "s") sc += ir
                      call = 0; callee = ""
                      next
                    }
                    cost[group(obj)] += ir
                    next }
      /^(fn|fl|fi|fe)=/ { callee = "" }
      END { printf "%d %d %d %d %d %d %d\n", cost["s"], cost["c"], cost["l"], cost["o"], sl, cl, sc }' "$out"
  }
  echo
  echo "Instructions per cudaMalloc+cudaFree pair (callgrind, loop only, (Ir[$n2] - Ir[$n1]) / $((n2 - n1))):"
  printf '%-9s %-28s %6s %10s %10s %12s %10s %6s %6s %6s\n' bytes mode shim "shim>libc" "shim>cuda" \
    cudart+cuda "cuda>libc" "libc" loop total
  IFS=, read -r -a size_list <<<"$sizes"
  for m in "${mode_list[@]}"; do
    for size in "${size_list[@]}"; do
      read -r s1 c1 l1 o1 sl1 cl1 sc1 <<<"$(ir_by_object "$m" "$size" "$n1")"
      read -r s2 c2 l2 o2 sl2 cl2 sc2 <<<"$(ir_by_object "$m" "$size" "$n2")"
      d=$((n2 - n1))
      printf '%-9s %-28s %6d %10d %10d %12d %10d %6d %6d %6d\n' "$size" "$(mode_title "$m")" $(( (s2 - s1) / d )) \
        $(( (sl2 - sl1) / d )) $(( (sc2 - sc1) / d )) $(( (c2 - c1) / d )) $(( (cl2 - cl1) / d )) \
        $(( (l2 - l1 - sl2 + sl1 - cl2 + cl1) / d )) $(( (o2 - o1) / d )) \
        $(( (s2 + c2 + l2 + o2 - s1 - c1 - l1 - o1) / d ))
      if [[ $m != none && $s2 -le $s1 ]]; then die "mode $m: no instructions in libpoolshim.so: is it intercepting?"; fi
    done
  done
  echo "(Self instructions by object: shim = libpoolshim.so; cudart+cuda = the CUDA runtime and driver;"
  echo " libc = libc/libstdc++/ld.so not reached through shim or CUDA; loop = the program. Calls, inclusive:"
  echo " shim>libc; shim>cuda = the driver calls the shim makes (cuCtxGetCurrent, and in device mode the"
  echo " cuCtxSynchronize of every free), already counted in cudart+cuda and cuda>libc; cuda>libc.)"
fi

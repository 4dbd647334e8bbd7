#!/usr/bin/env bash
# Real GPU only: call-site statistics of an unmodified PyTorch script under the preloaded shim.
# 1. torch_stats_script.py with PYTORCH_NO_CUDA_MEMORY_CACHING=1 and POOLSHIM_STATS=python: the report
#    must name each of its sites by the script's own file:line, with exact counts and bytes, unlabelled;
# 2. the same script with PyTorch's caching allocator: the cache's growth is labelled as PyTorch's;
# 3. overhead: ns per allocate+free pair of a 4 MiB tensor without the shim, with the shim and stats
#    off, with native stacks and with Python frames (printed; figures, not assertions).
# The shim comes from LD_PRELOAD (the test's environment; the bundle points it at lib/libpoolshim.so)
# so that it is never copied; this script takes it off for everything but the runs it means.
# Exit 77 (skip) where there is no python3 with a CUDA-enabled PyTorch.
# usage: LD_PRELOAD=libpoolshim.so torch_stats_check.sh --stats poolshim-stats --script torch_stats_script.py [--pairs N]
set -u
stats="" script="" pairs=2000
while [[ $# -gt 0 ]]; do
  case "$1" in
    --stats) stats=$2; shift 2 ;;
    --script) script=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "torch_stats_check: unknown option $1" >&2; exit 2 ;;
  esac
done
shim=${LD_PRELOAD:-}
unset LD_PRELOAD
fail() { echo "torch_stats_check: FAIL: $*" >&2; exit 1; }
[[ -n $shim && -f $shim ]] || fail "LD_PRELOAD must name libpoolshim.so (got '$shim')"
shim=$(realpath "$shim") stats=$(realpath "$stats")
[[ -x $stats && -f $script ]] || fail "usage: --stats poolshim-stats --script torch_stats_script.py"
py=$(command -v python3) || { echo "SKIP: no python3"; exit 77; }
if ! "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
  echo "SKIP: no PyTorch with CUDA for $py"
  exit 77
fi
"$py" -c 'import sys, torch; print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")'
dir=$(mktemp -d /tmp/poolshim-torch-stats-XXXXXX)
trap 'rm -rf "$dir"' EXIT

run() {  # run TAG ENV...: the sites run under the shim, its own stats folder, then its JSON report
  local tag=$1; shift
  mkdir -p "$dir/$tag"
  env "$@" LD_PRELOAD="$shim" POOLSHIM_STATS_DIR="$dir/$tag" "$py" "$script" sites >"$dir/$tag.out" 2>"$dir/$tag.err" ||
    { cat "$dir/$tag.out" "$dir/$tag.err" >&2; fail "$tag: the script failed"; }
  grep -q '^done$' "$dir/$tag.out" || fail "$tag: the script did not finish"
  "$stats" report --dir "$dir/$tag" --format json --top 0 >"$dir/$tag.json" || fail "$tag: report"
}
run uncached PYTORCH_NO_CUDA_MEMORY_CACHING=1 POOLSHIM_STATS=python
grep -i 'python frames\|POOLSHIM_STATS' "$dir/uncached.err" | head -3
"$py" "$script" --check "$dir/uncached.json" ||
  { "$stats" report --dir "$dir/uncached" --top 8 >&2; fail "uncached: the report does not name the script's lines"; }
"$stats" report --dir "$dir/uncached" --top 4 | cut -c1-100
run cached POOLSHIM_STATS=native
"$py" "$script" --check-cached "$dir/cached.json" ||
  { "$stats" report --dir "$dir/cached" --top 4 >&2; fail "cached: PyTorch's cache is not labelled"; }

figure() {  # figure ENV...: best of 3 of the pairs run's ns per pair
  local best="" v
  for _ in 1 2 3; do
    rm -rf "$dir/pairs"; mkdir -p "$dir/pairs"
    v=$(env PYTORCH_NO_CUDA_MEMORY_CACHING=1 POOLSHIM_STATS_DIR="$dir/pairs" "$@" "$py" "$script" pairs "$pairs" |
        sed -n 's/^ns_per_pair=//p')
    [[ -n $v ]] || fail "pairs run gave no figure: $*"
    best=$(awk -v a="$v" -v b="$best" 'BEGIN { print (b == "" || a < b) ? a : b }')
  done
  echo "$best"
}
none=$(figure env)
off=$(figure LD_PRELOAD="$shim" POOLSHIM_STATS=off)
native=$(figure LD_PRELOAD="$shim" POOLSHIM_STATS=native)
python=$(figure LD_PRELOAD="$shim" POOLSHIM_STATS=python)
echo "overhead ($pairs uncached 4 MiB torch.empty pairs, best of 3, ns per pair):"
awk -v n="$none" -v o="$off" -v s="$native" -v p="$python" 'BEGIN {
  printf "  no shim %.0f | shim, stats off %.0f | native stacks %.0f (+%.0f) | Python frames %.0f (+%.0f)\n", n, o, s, s - o, p, p - o }'
echo "torch_stats_check: passed"

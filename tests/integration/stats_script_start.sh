# The start of the stats scripts that take --shim, --program and --stats (sourced, with the
# script's arguments, after `name=` is set for its messages): sets shim, program and stats, and
# fail(), which says "NAME: FAIL: ..." and exits 1.
shim="" program="" stats=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --shim) shim=$2; shift 2 ;;
    --program) program=$2; shift 2 ;;
    --stats) stats=$2; shift 2 ;;
    *) echo "$name: unknown option $1" >&2; exit 2 ;;
  esac
done
fail() { echo "$name: FAIL: $*" >&2; exit 1; }

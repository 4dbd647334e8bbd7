#!/usr/bin/env bash
# Instructions per allocate+free pair of the device pool, measured with callgrind: runs
# pool_pair_count with 1000 and 11000 pairs per size and prints (Ir2 - Ir1) / 10000.
# usage: pool_callgrind.sh PATH/TO/pool_pair_count [MAX_INSTRUCTIONS_PER_PAIR]
set -euo pipefail
bin=$1
max=${2:-0}
command -v valgrind >/dev/null || { echo "pool_callgrind: valgrind not installed, skipped"; exit 0; }
ir() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
    sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
}
status=0
for size in 512 65536 4194304 67108864; do
  a=$(ir "$size" 1000)
  b=$(ir "$size" 11000)
  per=$(( (b - a) / 10000 ))
  echo "pool_callgrind: size $size: $per instructions per allocate+free pair"
  if (( max > 0 && size <= 65536 && per > max )); then
    echo "pool_callgrind: above the budget of $max for a thread-cache hit" >&2
    status=1
  fi
done
exit $status

#!/bin/bash
# Runs a test that needs a real NVIDIA GPU, or skips it: exit 77 (the ctest SKIP_RETURN_CODE) with
# a message where no GPU is present, or where the libcuda.so.1 the loader would pick is the
# simulator. Usage: run_if_gpu.sh [--sim-lib DIR] -- PROGRAM [ARGS...]
set -euo pipefail

sim_lib=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --sim-lib) sim_lib="$2"; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
if [[ $# -eq 0 ]]; then
  echo "usage: run_if_gpu.sh [--sim-lib DIR] -- PROGRAM [ARGS...]" >&2
  exit 2
fi

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "SKIP: no nvidia-smi here, so no NVIDIA GPU; this test runs only on real CUDA (scripts/gpu-check.sh)"
  exit 77
fi
if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "SKIP: nvidia-smi -L lists no GPU; this test runs only on real CUDA (scripts/gpu-check.sh)"
  exit 77
fi

# The first LD_LIBRARY_PATH entry holding libcuda.so.1 wins (test programs carry no RPATH).
if [[ -n "$sim_lib" && -d "$sim_lib" ]]; then
  sim_real=$(cd "$sim_lib" && pwd -P)
  IFS=: read -r -a dirs <<<"${LD_LIBRARY_PATH:-}"
  for d in "${dirs[@]}"; do
    if [[ -n "$d" && -e "$d/libcuda.so.1" ]]; then
      if [[ "$(cd "$d" && pwd -P)" == "$sim_real" ]]; then
        echo "SKIP: libcuda.so.1 on LD_LIBRARY_PATH is the simulator ($d); this test needs real CUDA"
        exit 77
      fi
      break
    fi
  done
fi

exec "$@"

#!/usr/bin/env bash
# gpu-check.sh: runs poolshim's real-GPU checks from a portable bundle (build-portable/bundle):
# every test in the bundle's gpu-tests.txt against the machine's CUDA, and both driver-call probes
# under the driver-call logger, whose maps are compared with tests/sim/fixtures/driver_call_map.txt,
# and the lookup replay (which export libcuda.so.1 returns for each of cudart 13.0's lookups),
# diffed with the simulator's answers. Writes everything to one results folder. Run with --help for the options.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

usage() {
  cat <<EOF
Usage: scripts/gpu-check.sh [options]

Runs poolshim's GPU checks on a machine with an NVIDIA GPU and CUDA 13:
  1. every test listed in BUNDLE/gpu-tests.txt (all ctests labelled gpu), against real CUDA;
  2. tests/driver_call_probe_shared and _static under the driver-call logger, recording which
     driver entry points cudart calls per runtime call (driver_call_map_{shared,static}.txt);
  3. a comparison of those maps with the committed fixture (tests/sim/fixtures/driver_call_map.txt);
  4. tests/lookup_replay without the shim: cudart 13.0's 440 cuGetProcAddress_v2 lookups replayed
     against this machine's libcuda.so.1, the export each returns named by dladdr
     (lookup_answers_real.txt), diffed with the simulator's answers to the same replay, which the
     build records (tests/lookup_answers_sim.txt in the bundle): lookup_answers.diff.

Prefer a carried bundle: build it on the development machine with
  cmake -S . -B build-portable -G Ninja -DPOOLSHIM_PORTABLE=ON && cmake --build build-portable
and bring build-portable/bundle along. Only without one does this script try to build it here
(needs CMake and nvcc, and GoogleTest, which the GPU machines do not have).

Options:
  --bundle DIR      the bundle to use (default: ./build-portable/bundle if present)
  --out DIR         where results go (default: ./gpu-results); results.txt sums everything up
  --cuda-lib DIR    folder holding libcudart.so.13 (default: searched: /usr/local/cuda/lib64,
                    ldconfig, Python's nvidia-cuda-runtime package)
  --timeout SECS    limit per test and per probe run (default: 600)
  --strict-fixture  also fail when the recorded shared-cudart map differs from the fixture
  --allow-no-gpu    go on without a GPU (dry run: shows what would run, runs nothing) ...
  --sim-lib DIR     ... or, with --allow-no-gpu, run everything against the CUDA simulator in DIR
                    (<build>/tests/sim/lib): tests labelled gpu_only and the static probe are
                    skipped, and the map is marked as a simulator run, not a recording
  -h, --help        this text

Exit status: 0 all ran tests passed; 1 a test or probe failed (or, with --strict-fixture, the map
differs); 2 no GPU (without --allow-no-gpu), or a usage or setup error.
To adopt a GPU recording as the fixture:
  cp gpu-results/driver_call_map_shared.txt tests/sim/fixtures/driver_call_map.txt
EOF
}

die() { echo "gpu-check: $*" >&2; exit 2; }

bundle=""
out_dir="./gpu-results"
cuda_lib=""
sim_lib=""
timeout_s=600
allow_no_gpu=0
strict_fixture=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --bundle) [[ $# -ge 2 ]] || die "--bundle needs a folder"; bundle=$2; shift 2 ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a folder"; out_dir=$2; shift 2 ;;
    --cuda-lib) [[ $# -ge 2 ]] || die "--cuda-lib needs a folder"; cuda_lib=$2; shift 2 ;;
    --sim-lib) [[ $# -ge 2 ]] || die "--sim-lib needs a folder"; sim_lib=$2; shift 2 ;;
    --timeout) [[ $# -ge 2 ]] || die "--timeout needs seconds"; timeout_s=$2; shift 2 ;;
    --allow-no-gpu) allow_no_gpu=1; shift ;;
    --strict-fixture) strict_fixture=1; shift ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[[ "$timeout_s" =~ ^[0-9]+$ ]] || die "--timeout takes whole seconds"
[[ -z "$sim_lib" || $allow_no_gpu -eq 1 ]] || die "--sim-lib is for dry runs without a GPU: add --allow-no-gpu"

# ---- what machine is this ---------------------------------------------------------------------
gpu_list=""
if command -v nvidia-smi >/dev/null 2>&1; then
  gpu_list=$(nvidia-smi -L 2>/dev/null | grep '^GPU ' || true)
fi
if [[ -n "$gpu_list" ]]; then
  mode=gpu
  [[ -z "$sim_lib" ]] || die "--sim-lib given on a machine with a GPU; leave it out to test real CUDA"
elif [[ $allow_no_gpu -eq 1 ]]; then
  if [[ -n "$sim_lib" ]]; then mode=sim; else mode=dry; fi
else
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi -L lists none). Run this on a GPU machine, or" >&2
  echo "           add --allow-no-gpu [--sim-lib <build>/tests/sim/lib] to exercise the script." >&2
  exit 2
fi

# ---- the bundle ---------------------------------------------------------------------------------
if [[ -z "$bundle" ]]; then
  if [[ -f ./build-portable/bundle/gpu-tests.txt ]]; then
    bundle=./build-portable/bundle
  elif [[ -f "$repo_root/build-portable/bundle/gpu-tests.txt" ]]; then
    bundle="$repo_root/build-portable/bundle"
  elif command -v cmake >/dev/null 2>&1 && command -v nvcc >/dev/null 2>&1; then
    echo "gpu-check: no bundle found; building one in $repo_root/build-portable (needs GoogleTest)" >&2
    gen=()
    command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
    if ! cmake -S "$repo_root" -B "$repo_root/build-portable" "${gen[@]}" -DPOOLSHIM_PORTABLE=ON ||
       ! cmake --build "$repo_root/build-portable" --target bundle; then
      die "could not build the bundle here; build it where GoogleTest is installed and pass --bundle"
    fi
    bundle="$repo_root/build-portable/bundle"
  else
    die "no bundle (looked for ./build-portable/bundle) and no cmake+nvcc to build one: pass --bundle DIR"
  fi
fi
[[ -f "$bundle/gpu-tests.txt" ]] || die "$bundle is not a bundle (no gpu-tests.txt)"
bundle=$(cd "$bundle" && pwd)

# ---- which CUDA ----------------------------------------------------------------------------------
find_cudart_dir() {
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64; do
    [[ -e "$d/libcudart.so.13" ]] && { echo "$d"; return 0; }
  done
  d=$(ldconfig -p 2>/dev/null | awk '/libcudart\.so\.13 / {print $NF; exit}')
  [[ -n "$d" ]] && { dirname "$d"; return 0; }
  if command -v python3 >/dev/null 2>&1; then
    d=$(python3 - <<'EOF' 2>/dev/null || true
import glob, site, sys
for root in site.getsitepackages() + [site.getusersitepackages()]:
    for hit in glob.glob(root + "/nvidia/cu*/lib/libcudart.so.13") + glob.glob(root + "/nvidia/cuda_runtime/lib/libcudart.so.13"):
        print(hit.rsplit("/", 1)[0]); sys.exit(0)
EOF
)
    [[ -n "$d" ]] && { echo "$d"; return 0; }
  fi
  return 1
}

case "$mode" in
  gpu)
    if [[ -z "$cuda_lib" ]]; then
      cuda_lib=$(find_cudart_dir) || die "libcudart.so.13 not found; pass --cuda-lib DIR"
    fi
    [[ -e "$cuda_lib/libcudart.so.13" ]] || die "$cuda_lib holds no libcudart.so.13"
    lib_path="$cuda_lib"
    # The driver's libcuda.so.1 normally comes from the loader's cache; some container images
    # keep it in a folder of its own. (CUDA's compat/ folder is never picked on purpose.)
    if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
      for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64; do
        if [[ -e "$d/libcuda.so.1" ]]; then lib_path="$lib_path:$d"; break; fi
      done
    fi
    ;;
  sim)
    [[ -e "$sim_lib/libcuda.so.1" && -e "$sim_lib/libcudart.so.13" ]] ||
      die "$sim_lib holds no simulator (libcuda.so.1 and libcudart.so.13)"
    sim_lib=$(cd "$sim_lib" && pwd)
    lib_path="$sim_lib"
    ;;
  dry)
    lib_path=""
    ;;
esac
lib_path="${lib_path}${lib_path:+:}$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

mkdir -p "$out_dir/logs"
out_dir=$(cd "$out_dir" && pwd)
rm -f "$out_dir"/logs/*.log "$out_dir"/driver_call_map_*.txt "$out_dir"/fixture-*.txt "$out_dir/results.txt" \
  "$out_dir/lookup_answers_real.txt" "$out_dir/lookup_answers.diff"
results="$out_dir/results.txt"

driver_version="none"
if [[ $mode == gpu ]]; then
  driver_version=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1 || true)
  [[ -n "$driver_version" ]] || driver_version="unknown"
fi

{
  echo "poolshim gpu-check results"
  echo "date:           $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "host:           $(uname -n) ($(uname -srm))"
  case "$mode" in
    gpu) echo "mode:           real GPU" ;;
    sim) echo "mode:           SIMULATOR ($sim_lib) — not a GPU result" ;;
    dry) echo "mode:           DRY RUN (no GPU, no simulator): nothing was run" ;;
  esac
  echo "bundle:         $bundle"
  echo "LD_LIBRARY_PATH: $lib_path"
  echo "driver version: $driver_version"
  echo "nvidia-smi -L:"
  if [[ -n "$gpu_list" ]]; then sed 's/^/  /' <<<"$gpu_list"; else echo "  (no GPU)"; fi
  echo
  echo "== tests (gpu-tests.txt) =="
} >"$results"

# ---- the tests -------------------------------------------------------------------------------------
passed=0 failed=0 skipped=0
failed_names=()
while IFS=$'\t' read -r name labels cmd || [[ -n "${name:-}" ]]; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  log="$out_dir/logs/$name.log"
  if [[ $mode == dry ]]; then
    echo "DRY  $name: would run: $cmd" >>"$results"
    continue
  fi
  if [[ $mode == sim && ",$labels," == *,gpu_only,* ]]; then
    echo "SKIP $name: labelled gpu_only, needs real CUDA" >>"$results"
    skipped=$((skipped + 1))
    continue
  fi
  start=$(date +%s.%N)
  set +e
  (cd "$bundle" && LD_LIBRARY_PATH="$lib_path" timeout --kill-after=10 "$timeout_s" bash -c "$cmd") >"$log" 2>&1
  rc=$?
  set -e
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  if [[ $rc -eq 0 ]]; then
    echo "PASS $name (${secs} s)" >>"$results"
    passed=$((passed + 1))
  elif [[ $rc -eq 77 ]]; then
    echo "SKIP $name (${secs} s): $(tail -n1 "$log")" >>"$results"
    skipped=$((skipped + 1))
  else
    why="exit status $rc"
    [[ $rc -eq 124 || $rc -eq 137 ]] && why="timed out after ${timeout_s} s"
    echo "FAIL $name (${secs} s): $why; log: logs/$name.log" >>"$results"
    failed=$((failed + 1))
    failed_names+=("$name")
  fi
  echo "gpu-check: $(tail -n1 "$results")" >&2
done <"$bundle/gpu-tests.txt"
echo "summary: $passed passed, $failed failed, $skipped skipped" >>"$results"

# ---- the driver-call maps --------------------------------------------------------------------------
fixture="$bundle/tests/fixtures/driver_call_map.txt"
[[ -f "$fixture" ]] || fixture="$repo_root/tests/sim/fixtures/driver_call_map.txt"
map_tool="$bundle/tests/call_map.py"
logger="$bundle/lib/libpoolshim_calllog.so"
have_python=0
command -v python3 >/dev/null 2>&1 && have_python=1
probe_failed=0
fixture_mismatch=0

record_map() {
  local flavour=$1 exe="$bundle/tests/driver_call_probe_$1" map="$out_dir/driver_call_map_$1.txt"
  local log="$out_dir/logs/probe_$1.log" rc
  if [[ ! -x "$exe" ]]; then
    echo "FAIL probe $flavour: $exe missing from the bundle" >>"$results"
    probe_failed=1
    return
  fi
  if [[ $mode == dry ]]; then
    echo "DRY  probe $flavour: would run $exe under $logger" >>"$results"
    return
  fi
  if [[ $mode == sim && $flavour == static ]]; then
    echo "SKIP probe static: nvcc's static cudart cannot run on the simulator" >>"$results"
    return
  fi
  rm -f "$map.raw"
  set +e
  # The logger goes in through env, after timeout, so that only the probe (and its child) load it.
  (cd "$bundle" && LD_LIBRARY_PATH="$lib_path" timeout --kill-after=10 "$timeout_s" \
     env LD_PRELOAD="$logger${LD_PRELOAD:+:$LD_PRELOAD}" POOLSHIM_CALLLOG_OUT="$map.raw" "$exe") >"$log" 2>&1
  rc=$?
  set -e
  {
    echo "# poolshim driver-call map: the driver entry points cudart 13 calls for each runtime call of"
    echo "# tests/gpu/driver_call_probe.cu, phase by phase (cudart $flavour)."
    if [[ $mode == gpu ]]; then
      echo "# status: RECORDED on $(head -n1 <<<"$gpu_list" | sed 's/ (UUID.*//'), driver $driver_version, $(date -u +%Y-%m-%d), by scripts/gpu-check.sh"
    else
      echo "# status: SIMULATOR RUN — made by scripts/gpu-check.sh on the simulator, not a GPU recording; never commit it as the fixture"
    fi
    echo "# Format: see tests/sim/fixtures/README.md. This file can replace tests/sim/fixtures/driver_call_map.txt verbatim."
    [[ -f "$map.raw" ]] && cat "$map.raw"
  } >"$map"
  rm -f "$map.raw"
  if [[ $rc -ne 0 ]] || ! grep -q '^process main$' "$map"; then
    echo "FAIL probe $flavour: exit status $rc; log: logs/probe_$flavour.log; map: $(basename "$map")" >>"$results"
    probe_failed=1
  else
    echo "PASS probe $flavour: map in $(basename "$map")" >>"$results"
  fi
}

compare_map() {
  local flavour=$1 map="$out_dir/driver_call_map_$1.txt" report="$out_dir/fixture-compare-$1.txt" rc
  [[ -f "$map" ]] || return 0
  echo >>"$results"
  echo "== $flavour cudart vs the fixture ($(grep -m1 '^# status:' "$fixture" || echo 'no status line')) ==" >>"$results"
  if [[ $have_python -eq 1 ]]; then
    set +e
    python3 "$map_tool" compare "$fixture" "$map" --report "$report" >/dev/null 2>"$report.err"
    rc=$?
    set -e
    cat "$report" "$report.err" >>"$results" 2>/dev/null || true
    rm -f "$report.err"
    if [[ $rc -ne 0 ]]; then
      echo "-> MISMATCH ($flavour): the fixture's claim does not hold for this cudart" >>"$results"
      [[ $flavour == shared ]] && fixture_mismatch=1
    fi
  else
    echo "(no python3: phase-by-phase comparison skipped; see the plain diff below)" >>"$results"
  fi
  # Lookup lines are left out: the real cudart looks up hundreds of symbols, and the phase-by-phase
  # report above is the verdict; this diff is for reading (e.g. one GPU recording against another).
  echo "-- diff -u fixture recorded (process, phase and call lines) --" >>"$results"
  diff -u --label fixture --label "driver_call_map_$flavour.txt" \
    <(grep -E '^(process|phase|call|end) ' "$fixture") <(grep -E '^(process|phase|call|end) ' "$map") \
    >>"$results" || true
}

# ---- the lookup answers ------------------------------------------------------------------------
# Which export the driver returns for each of cudart 13.0's lookups (old cudaVersions included:
# cuDevicePrimaryCtxRelease@7000, cuIpcOpenMemHandle@4010, ...), recorded without the shim, against
# the simulator's answers to the same replay. The simulator's answers come from the build (the
# lookup_replay target records them after each link; the bundle carries them because the gpu test
# integration.lookup_replay names them): the bundle never carries the simulator itself, so the
# comparison cannot be run live on the GPU machine. Information, not a verdict: the shim wraps
# whatever a driver answers (integration.lookup_replay, run above, is the verdict), but a
# difference means the simulator's lookup rule is not the real driver's.
lookup_failed=0
lookup_answers() {
  local exe="$bundle/tests/lookup_replay" fixture="$bundle/tests/cudart-13.0-lookups.tsv"
  local sim_answers="$bundle/tests/lookup_answers_sim.txt" real="$out_dir/lookup_answers_real.txt"
  local diff_file="$out_dir/lookup_answers.diff" log="$out_dir/logs/lookup_replay.log" rc n total
  [[ -f "$fixture" ]] || fixture="$repo_root/tests/sim/fixtures/cudart-13.0-lookups.tsv"
  { echo; echo "== lookup answers (cudart 13.0's lookups, no shim) =="; } >>"$results"
  if [[ ! -x "$exe" ]]; then
    echo "FAIL lookup replay: $exe missing from the bundle" >>"$results"
    lookup_failed=1
    return
  fi
  if [[ $mode == dry ]]; then
    echo "DRY  lookup replay: would run $exe $fixture and diff its answers with $sim_answers" >>"$results"
    return
  fi
  set +e
  (cd "$bundle" && LD_LIBRARY_PATH="$lib_path" timeout --kill-after=10 "$timeout_s" \
     "$exe" "$fixture" --out "$real.raw") >"$log" 2>&1
  rc=$?
  set -e
  {
    echo "# poolshim lookup answers: each cuGetProcAddress_v2 lookup of tests/sim/fixtures/cudart-13.0-lookups.tsv"
    echo "# replayed by tests/lookup_replay without the shim; columns: row order symbol cudaVersion flags CUresult"
    echo "# status object export (dladdr of the pointer; name+0xoff: not an export's address; -: NULL)."
    if [[ $mode == gpu ]]; then
      echo "# status: RECORDED on $(head -n1 <<<"$gpu_list" | sed 's/ (UUID.*//'), driver $driver_version, $(date -u +%Y-%m-%d), by scripts/gpu-check.sh"
    else
      echo "# status: SIMULATOR RUN — made by scripts/gpu-check.sh on the simulator, not a GPU recording"
    fi
    [[ -f "$real.raw" ]] && cat "$real.raw"
  } >"$real"
  rm -f "$real.raw"
  total=$(grep -c '^row' "$real" || true)
  if [[ $rc -ne 0 || $total -eq 0 ]]; then
    echo "FAIL lookup replay: exit status $rc; log: logs/lookup_replay.log" >>"$results"
    lookup_failed=1
    return
  fi
  if [[ ! -f "$sim_answers" ]]; then
    echo "lookup answers: $total recorded in lookup_answers_real.txt; no simulator answers in the bundle" \
      "(tests/lookup_answers_sim.txt) to diff with" >>"$results"
    return
  fi
  diff -u --label "simulator (lookup_answers_sim.txt)" --label lookup_answers_real.txt \
    <(grep '^row' "$sim_answers") <(grep '^row' "$real") >"$diff_file" || true
  n=$(grep -c '^+row' "$diff_file" || true)
  echo "lookup answers: $n of $total lookups answered differently from the simulator's (lookup_answers.diff)" >>"$results"
}
lookup_answers

{ echo; echo "== driver-call probes =="; } >>"$results"
record_map shared
record_map static
compare_map shared
compare_map static
for flavour in shared static; do
  map="$out_dir/driver_call_map_$flavour.txt"
  if [[ -f "$map" ]]; then
    { echo; echo "==== driver_call_map_$flavour.txt ===="; cat "$map"; } >>"$results"
  fi
done

status=0
if [[ $failed -gt 0 || $probe_failed -eq 1 || $lookup_failed -eq 1 ]]; then status=1; fi
if [[ $strict_fixture -eq 1 && $fixture_mismatch -eq 1 ]]; then status=1; fi
{
  echo
  echo "== verdict =="
  if [[ $mode == dry ]]; then
    echo "DRY RUN: nothing was run"
  elif [[ $status -eq 0 ]]; then
    echo "OK: $passed tests passed, $skipped skipped; probes recorded$([[ $fixture_mismatch -eq 1 ]] && echo '; the map differs from the fixture (see above)')"
  else
    echo "FAILED: ${failed_names[*]:-}$([[ $probe_failed -eq 1 ]] && echo ' probe')$([[ $lookup_failed -eq 1 ]] && echo ' lookup-replay')$([[ $strict_fixture -eq 1 && $fixture_mismatch -eq 1 ]] && echo ' fixture')"
  fi
} >>"$results"
echo "gpu-check: $(tail -n1 "$results")" >&2
echo "gpu-check: results in $results" >&2
exit $status

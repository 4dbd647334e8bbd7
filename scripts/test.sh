#!/usr/bin/env bash
# The project's test entry: installs dependencies, configures, builds, and runs ctest; then builds
# everything that is not preloaded with ASan+UBSan, and again with TSan, and runs the tests again. Prints ctest's
# summary lines and exits non-zero on any failure. CI runs exactly this (.ci/run).
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/test.sh [--quick] [--no-sanitize] [--jobs N] [--build-dir DIR] [-- CTEST_ARGS...]

Runs setup, configure, build and ctest (build/), then the same tests built with ASan+UBSan
(DIR-asan/) and with TSan (DIR-tsan/). The main pass runs every test, the fixed-length jobs
labelled `long` included (callgrind counts, the daemon benchmark); the sanitizer passes leave
those out (a benchmark under a sanitizer measures the sanitizer).
  --quick          the main pass only, without the `long` jobs (ctest -LE long)
  --no-sanitize    skip both sanitizer passes
  --jobs N         parallel build and test jobs (default: number of cores)
  --build-dir DIR  main build folder (default: build); the sanitizer passes use DIR-asan, DIR-tsan
  -- ARGS          extra arguments for ctest (e.g. -R sim_conformance)
USAGE
}

root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build"
jobs=$(nproc)
sanitize=1
quick=0
ctest_args=()
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --quick) sanitize=0; quick=1 ;;
    --no-sanitize) sanitize=0 ;;
    --jobs) jobs="$2"; shift ;;
    --build-dir) build="$2"; shift ;;
    --) shift; ctest_args=("$@"); break ;;
    *) echo "test.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

"$root/scripts/setup.sh"

status=0
run_pass() {  # name build-dir ctest-label-args cmake-args...
  local name=$1 dir=$2 labels=$3; shift 3
  echo "== $name: configure and build ($dir)"
  mkdir -p "$dir"
  cmake -S "$root" -B "$dir" -G Ninja -DPOOLSHIM_BUILD_TESTS=ON "$@" >"$dir/configure.log" 2>&1 ||
    { cat "$dir/configure.log"; return 1; }
  cmake --build "$dir" -j "$jobs" || return 1
  echo "== $name: ctest"
  (cd "$dir" && ctest -j "$jobs" --output-on-failure --timeout 600 $labels "${ctest_args[@]}")
}

start=$SECONDS
main_labels=""
((quick)) && main_labels="-LE long"
run_pass "main" "$build" "$main_labels" -DCMAKE_BUILD_TYPE=RelWithDebInfo || status=1
if ((sanitize)); then
  # Line tables only (-g1): a sanitizer report still names file:line of every frame, and the two
  # builds compile a quarter faster than with full debug information.
  san_debug="-g1"
  san_release="-O2 -g1 -DNDEBUG"
  # Tests that preload a library into an uninstrumented program are not registered in these
  # builds: a sanitizer runtime cannot be preloaded.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
    run_pass "asan+ubsan" "$build-asan" "-LE long" -DCMAKE_BUILD_TYPE=Debug -DPOOLSHIM_SANITIZE=address \
      "-DCMAKE_C_FLAGS_DEBUG=$san_debug" "-DCMAKE_CXX_FLAGS_DEBUG=$san_debug" || status=1
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    run_pass "tsan" "$build-tsan" "-LE long" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPOOLSHIM_SANITIZE=thread \
      "-DCMAKE_C_FLAGS_RELWITHDEBINFO=$san_release" "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=$san_release" || status=1
fi
echo "== test.sh: $((SECONDS - start)) s, $([[ $status -eq 0 ]] && echo passed || echo FAILED)"
exit $status

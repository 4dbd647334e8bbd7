# Shared by the launcher's security tests (sourced): options, a private fake TMPDIR, HOME and
# XDG_RUNTIME_DIR (the real /tmp/poolshim-$UID is never touched), the launcher run under them,
# and the daemons it started stopped by their pids.
# Options: --launcher scripts/poolshim --build-dir DIR --daemon poolshimd --shim libpoolshim.so
#          --client daemon_client_program
set -u
launcher="" build="" daemon="" shim="" client=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --launcher) launcher=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    --daemon) daemon=$2; shift 2 ;;
    --shim) shim=$2; shift 2 ;;
    --client) client=$2; shift 2 ;;
    *) echo "$test_name: unknown option $1" >&2; exit 2 ;;
  esac
done
fail() { echo "$test_name: FAIL: $*" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/poolshim-$test_name-XXXXXX")
chmod 700 "$work"
daemon_pids=()
reader_pids=()
fifos=()
cleanup() {
  local p f
  for p in "${daemon_pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  for f in "${fifos[@]}"; do timeout 1 sh -c ': >"$1"' sh "$f" 2>/dev/null; done  # readers get EOF
  for p in "${reader_pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# fresh_env NAME: a new fake HOME, TMPDIR and XDG_RUNTIME_DIR (0700) under $work/NAME.
fresh_env() {
  env_root=$work/$1
  mkdir -p -m 0700 "$env_root" "$env_root/home" "$env_root/tmp" "$env_root/run"
}

# launch OUT [ARGS...]: scripts/poolshim run under the fake environment, COMMAND = ARGS (default:
# the client, printing the socket it was given); stdout and stderr to OUT. Remembers the pid of a
# daemon it started.
launch() {
  local out=$1
  shift
  (($#)) || set -- sh -c 'echo "program socket=${POOLSHIM_SOCKET:-}"; exec "$0" --buffers 1' "$client"
  env -u POOLSHIM_SOCKET -u XDG_CACHE_HOME HOME="$env_root/home" TMPDIR="$env_root/tmp" \
    XDG_RUNTIME_DIR="$env_root/run" POOLSHIMD_REGION=256M POOLSHIMD_FILL_THREADS=1 POOLSHIMD_IDLE_EXIT=20 \
    POOLSHIM_TEST_EXPECT=shim \
    "$launcher" run --sim --build-dir "$build" --lib "$shim" --daemon "$daemon" -- "$@" >"$out" 2>&1
  local rc=$? pid
  pid=$(sed -n 's/.*started poolshimd (pid \([0-9]*\).*/\1/p' "$out" | head -1)
  [[ -n "$pid" ]] && daemon_pids+=("$pid")
  return $rc
}

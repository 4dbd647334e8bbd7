# Sourced by the integration scripts that need a daemon of their own: start_private_daemon DAEMON
# TAG ARGS... makes a private folder ($dir, mode 0700), exports POOLSHIM_SOCKET into it, starts
# DAEMON with ARGS there ($dpid, its log $dir/daemon.log), waits until it answers (or calls the
# script's fail), and kills it and removes the folder when the script exits. The script defines
# fail() first.
start_private_daemon() {
  local daemon=$1 tag=$2
  shift 2
  dir=$(mktemp -d "${TMPDIR:-/tmp}/poolshim-$tag-XXXXXX")
  chmod 700 "$dir"
  export POOLSHIM_SOCKET=$dir/poolshimd.sock
  dpid=""
  trap '[[ -n "$dpid" ]] && kill -9 "$dpid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
  "$daemon" --socket "$POOLSHIM_SOCKET" "$@" >>"$dir/daemon.log" 2>&1 &
  dpid=$!
  for _ in $(seq 250); do
    [[ -S "$POOLSHIM_SOCKET" ]] && "$daemon" --status >/dev/null 2>&1 && break
    sleep 0.02
  done
  "$daemon" --status >/dev/null 2>&1 || { cat "$dir/daemon.log"; fail "the daemon did not come up"; }
}

#!/usr/bin/env bash
# Issue #13, finding 15: a per-user socket directory made first by another user (or a link planted
# in its place) stopped the per-user daemon from starting. The launcher must say so in one line
# (the directory and its owner), use a fresh private directory instead (passed on through
# POOLSHIM_SOCKET), and a later run must find that daemon again.
# As root the squatter is uid 65534 (chown); a planted link is checked as any user.
# usage: f15_squatted_socket_dir.sh (options of launcher_lib.sh)
test_name=f15_squatted_socket_dir
source "$(dirname "${BASH_SOURCE[0]}")/launcher_lib.sh"

# check_squat NAME OWNER_TEXT: the directory $env_root/run/poolshim is squatted; two runs.
check_squat() {
  local name=$1 owner=$2 squat=$env_root/run/poolshim
  launch "$work/$name.1.out" || { cat "$work/$name.1.out"; fail "$name: the first program failed"; }
  cat "$work/$name.1.out"
  grep -q "^poolshim: $squat is not a private directory .*$owner.*: using " "$work/$name.1.out" ||
    fail "$name: no line naming $squat and its owner"
  grep -q "started poolshimd (pid" "$work/$name.1.out" || fail "$name: the daemon did not start"
  local sock1 sock2
  sock1=$(sed -n 's/^program socket=//p' "$work/$name.1.out")
  [[ -n "$sock1" && "$sock1" != "$squat"/* ]] || fail "$name: the program was not given a fresh socket ($sock1)"
  [[ "$(stat -c '%u %a %F' "$(dirname "$sock1")")" == "$(id -u) 700 directory" ]] ||
    fail "$name: the fresh directory is not private"
  [[ "$sock1" == "$env_root/tmp/"* ]] || fail "$name: the fresh directory is not under TMPDIR"
  grep -q "daemon_slabs=[1-9]" "$work/$name.1.out" || fail "$name: the program did not use the daemon"
  "$daemon" --status --socket "$sock1" >/dev/null || fail "$name: no daemon answers on $sock1"

  launch "$work/$name.2.out" || { cat "$work/$name.2.out"; fail "$name: the second program failed"; }
  cat "$work/$name.2.out"
  sock2=$(sed -n 's/^program socket=//p' "$work/$name.2.out")
  [[ "$sock2" == "$sock1" ]] || fail "$name: the second run did not find the fresh directory ($sock2, not $sock1)"
  ! grep -q "started poolshimd" "$work/$name.2.out" || fail "$name: the second run started another daemon"
  grep -q "daemon_slabs=[1-9]" "$work/$name.2.out" || fail "$name: the second program did not use the daemon"
  echo "$test_name: $name OK"
}

# A link in place of the directory (to a private directory of ours: lstat sees the link).
fresh_env link
mkdir -m 0700 "$work/elsewhere"
ln -s "$work/elsewhere" "$env_root/run/poolshim"
check_squat link "symbolic link of uid $(id -u)"

if [[ "$(id -u)" == 0 ]]; then
  fresh_env other_uid
  mkdir -m 0700 "$env_root/run/poolshim"
  chown 65534:65534 "$env_root/run/poolshim"
  check_squat other_uid "directory of uid 65534"
  # Removing the squatter's directory would be the user's business: it is left alone.
  [[ "$(stat -c '%u' "$env_root/run/poolshim")" == 65534 ]] || fail "the squatter's directory was changed"
else
  echo "$test_name: not root: the squatter of another uid is not checked (needs chown)"
  echo "$test_name: OK (link only)"
  exit 77
fi
echo "$test_name: OK"

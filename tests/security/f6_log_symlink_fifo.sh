#!/usr/bin/env bash
# Issue #13, finding 6: the launcher's daemon log must not follow a link or open a FIFO planted
# where it writes it (a line appended to another user's file; a FIFO let another user read the
# log). The log now lives beside the socket in the user's private 0700 directory, and a link or a
# FIFO found there is refused. Links and FIFOs are planted both where the log used to go
# ($XDG_RUNTIME_DIR/poolshimd.log) and where it goes now; none may receive a byte.
# usage: f6_log_symlink_fifo.sh (options of launcher_lib.sh)
test_name=f6_log_symlink_fifo
source "$(dirname "${BASH_SOURCE[0]}")/launcher_lib.sh"

# 1. Links to a victim's files.
fresh_env links
printf 'victim\n' >"$work/victim.old"
printf 'victim\n' >"$work/victim.new"
ln -s "$work/victim.old" "$env_root/run/poolshimd.log"
mkdir -m 0700 "$env_root/run/poolshim"
ln -s "$work/victim.new" "$env_root/run/poolshim/poolshimd.log"
launch "$work/links.out" || { cat "$work/links.out"; fail "the program failed (links)"; }
cat "$work/links.out"
sleep 0.3
[[ "$(cat "$work/victim.old")" == victim ]] || fail "the log followed the link where it used to be: $(cat "$work/victim.old")"
[[ "$(cat "$work/victim.new")" == victim ]] || fail "the log followed the link in the socket directory"
grep -q "daemon_slabs=[1-9]" "$work/links.out" || fail "the program did not use the daemon (links)"

# 2. FIFOs, each read by "another user" (a reader started before the launcher).
fresh_env fifos
mkfifo "$env_root/run/poolshimd.log"
mkdir -m 0700 "$env_root/run/poolshim"
mkfifo "$env_root/run/poolshim/poolshimd.log"
fifos+=("$env_root/run/poolshimd.log" "$env_root/run/poolshim/poolshimd.log")
timeout 30 cat "$env_root/run/poolshimd.log" >"$work/stolen.old" 2>/dev/null &
reader_pids+=($!)
timeout 30 cat "$env_root/run/poolshim/poolshimd.log" >"$work/stolen.new" 2>/dev/null &
reader_pids+=($!)
sleep 0.2
launch "$work/fifos.out" || { cat "$work/fifos.out"; fail "the program failed (FIFOs)"; }
cat "$work/fifos.out"
sleep 0.5
[[ ! -s "$work/stolen.old" ]] || fail "the log went into the FIFO where it used to be: $(head -2 "$work/stolen.old")"
[[ ! -s "$work/stolen.new" ]] || fail "the log went into the FIFO in the socket directory"
grep -q "daemon_slabs=[1-9]" "$work/fifos.out" || fail "the program did not use the daemon (FIFOs)"

# 3. Nothing planted: the log is a regular file in the private socket directory, and has lines.
fresh_env clean
launch "$work/clean.out" || { cat "$work/clean.out"; fail "the program failed (clean)"; }
cat "$work/clean.out"
log="$env_root/run/poolshim/poolshimd.log"
grep -qF "log $log" "$work/clean.out" || fail "the log is not beside the socket in the private directory"
[[ "$(stat -c '%u %a %F' "$env_root/run/poolshim")" == "$(id -u) 700 directory" ]] || fail "the socket directory is not private"
for _ in $(seq 50); do [[ -s "$log" ]] && break; sleep 0.05; done
[[ -f "$log" && ! -L "$log" && -s "$log" ]] || fail "no log lines in $log"
echo "$test_name: OK"

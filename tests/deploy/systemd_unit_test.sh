#!/usr/bin/env bash
# The installed poolshimd.service (deploy.install_tree's prefix): systemd-analyze verify says
# nothing about it (verify exits 0 on unknown keys and bad values, so any output fails here), it
# starts the installed daemon, carries the hardening the issue names, and its offline exposure
# score stays MEDIUM or better. A unit with a misspelled key must fail the same check.
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }
prefix=""
while (($#)); do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    *) fail "unknown argument $1" ;;
  esac
done
command -v systemd-analyze >/dev/null || { echo "SKIP: no systemd-analyze (Debian: systemd)"; exit 77; }
unit=$prefix/lib/systemd/system/poolshimd.service
[[ -f "$unit" ]] || fail "no unit at $unit (deploy.install_tree makes the prefix)"
cmp -s "$unit" "$prefix/share/poolshim/systemd/poolshimd.service" || fail "the two installed units differ"

# verify: silent. --man=no: the page is in the prefix, not on man's path (the package test checks
# the unit with its man page installed).
verify() { systemd-analyze verify --man=no "$1" 2>&1; }
out=$(verify "$unit") || fail "systemd-analyze verify failed: $out"
[[ -z "$out" ]] || fail "systemd-analyze verify: $out"
echo "systemd-analyze verify $unit: no finding"

grep -qx "ExecStart=$prefix/bin/poolshimd --socket /run/poolshim/poolshimd.sock --metrics-port 9477" "$unit" ||
  fail "ExecStart does not name the installed daemon: $(grep ExecStart "$unit")"
for want in ProtectSystem=strict PrivateTmp=yes NoNewPrivileges=yes LimitNOFILE=65536 RuntimeDirectory=poolshim \
  RuntimeDirectoryMode=0750 Group=poolshim; do
  grep -qx "$want" "$unit" || fail "the unit lacks $want"
done

score=$(systemd-analyze security --offline=true "$unit" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
[[ -n "$score" ]] || fail "systemd-analyze security gave no score"
echo "systemd-analyze security --offline=true: exposure $score"
awk -v s="$score" 'BEGIN { exit !(s < 7.0) }' || fail "exposure $score is above MEDIUM (7.0)"

# The check can fail: a misspelled key and a bad mode are reported.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed 's/^ProtectHome=yes/ProtectHomes=yes/; s/^RuntimeDirectoryMode=0750/RuntimeDirectoryMode=07z0/' "$unit" \
  >"$tmp/poolshimd.service"
bad=$(verify "$tmp/poolshimd.service") || true
grep -q "ProtectHomes" <<<"$bad" && grep -q "07z0" <<<"$bad" || fail "a broken unit passed: '$bad'"
echo "a broken copy is caught: $(wc -l <<<"$bad") finding(s)"
echo "deploy.systemd_unit: ok"

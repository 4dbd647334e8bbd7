#!/usr/bin/env bash
# The Debian package on this machine: cpack builds it into a temporary folder; dpkg -i installs it
# (the group, the socket directory); the installed daemon runs as the unit would (no systemd here)
# and the demo's example runs under the installed launcher and shim on the simulator, served by
# that daemon; then dpkg --purge, and nothing of the package is left: no file, no folder of its
# own, no group, no socket directory. Root only; skipped (77) where a poolshim package, group or
# /run/poolshim exists already (the test would take them away).
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
build="" sim_dir="" example="" version=""
while (($#)); do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --sim-dir) sim_dir=$2; shift 2 ;;
    --example) example=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    *) fail "unknown argument $1" ;;
  esac
done
[[ $(id -u) == 0 ]] || skip "dpkg -i needs root (this is uid $(id -u))"
for tool in dpkg dpkg-deb dpkg-shlibdeps cpack; do
  command -v "$tool" >/dev/null || skip "no $tool (Debian: dpkg-dev, cmake)"
done
if dpkg-query -W -f='${Status}' poolshim 2>/dev/null | grep -q 'installed'; then
  skip "a poolshim package is installed here; this test would purge it"
fi
getent group poolshim >/dev/null && skip "a poolshim group exists here; this test would remove it"
[[ -e /run/poolshim ]] && skip "/run/poolshim exists (a node daemon?); this test would remove it"

start=$(date +%s%N)
took() { echo "  ($1: $((($(date +%s%N) - ${2:-$start}) / 1000000)) ms since the start)"; }
tmp=$(mktemp -d)
dpid=""
installed=0
cleanup() {
  [[ -n "$dpid" ]] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
  ((installed)) && dpkg --purge poolshim >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT

# ---- the package -------------------------------------------------------------------------------
cpack -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/pkg" >"$tmp/cpack.log" 2>&1 ||
  { cat "$tmp/cpack.log"; fail "cpack failed"; }
deb=$tmp/pkg/poolshim_${version}_$(dpkg --print-architecture).deb
[[ -f "$deb" ]] || { ls "$tmp/pkg"; fail "no $deb"; }
echo "package: $(basename "$deb"), $(stat -c %s "$deb") bytes"
took cpack
info=$(dpkg-deb -f "$deb" Package Version Depends Recommends Installed-Size)
echo "$info" | sed 's/^/  /'
depends=$(dpkg-deb -f "$deb" Depends)
for want in libc6 libstdc++6 libdw1 liblzma5 passwd; do
  tr ',' '\n' <<<"$depends" | sed 's/^ *//; s/ .*//' | grep -qxF "$want" || fail "Depends lacks $want: $depends"
done
grep -qE "cuda|nvidia" <<<"$depends" && fail "Depends names the CUDA driver: $depends"
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's#^\./#/#' >"$tmp/contents"
grep -v '/$' "$tmp/contents" >"$tmp/files"
echo "files ($(wc -l <"$tmp/files")):"
sed 's/^/  /' "$tmp/files"
for f in /usr/bin/poolshim /usr/bin/poolshimd /usr/bin/poolshim-stats /usr/lib/poolshim/libpoolshim.so \
  /usr/lib/poolshim/libunwind.so.8 /usr/lib/systemd/system/poolshimd.service /usr/share/man/man1/poolshimd.1.gz \
  /usr/lib/python3/dist-packages/poolshim/__init__.py; do
  grep -qx "$f" "$tmp/files" || fail "the package lacks $f"
done
for s in postinst prerm postrm; do
  dpkg-deb -I "$deb" "$s" >/dev/null || fail "the package has no $s"
done

# ---- install -----------------------------------------------------------------------------------
installed=1
dpkg -i "$deb" >"$tmp/dpkg-i.log" 2>&1 || { cat "$tmp/dpkg-i.log"; fail "dpkg -i failed"; }
echo "dpkg -i: $(dpkg-query -W -f='${Package} ${Version} ${Status}' poolshim)"
took "dpkg -i"
getent group poolshim >/dev/null || fail "no poolshim group after install"
[[ "$(stat -c '%U:%G %a' /run/poolshim)" == "root:poolshim 750" ]] ||
  fail "/run/poolshim is $(stat -c '%U:%G %a' /run/poolshim), want root:poolshim 750"
echo "group poolshim, /run/poolshim root:poolshim 0750"
grep -qx 'ExecStart=/usr/bin/poolshimd --socket /run/poolshim/poolshimd.sock --metrics-port 9477' \
  /usr/lib/systemd/system/poolshimd.service || fail "the unit does not start /usr/bin/poolshimd"
if command -v systemd-analyze >/dev/null; then
  man_opt=--man=yes
  command -v man >/dev/null || man_opt=--man=no
  out=$(systemd-analyze verify "$man_opt" /usr/lib/systemd/system/poolshimd.service 2>&1) || fail "verify: $out"
  [[ -z "$out" ]] || fail "systemd-analyze verify of the installed unit: $out"
  echo "systemd-analyze verify $man_opt /usr/lib/systemd/system/poolshimd.service: no finding"
fi
for p in poolshim poolshimd poolshim-stats; do
  [[ "$("/usr/bin/$p" --version)" == "$p $version" ]] || fail "/usr/bin/$p --version: $("/usr/bin/$p" --version)"
done

# ---- run: the daemon as the unit starts it, the example under the installed shim ---------------
POOLSHIMD_REGION=256M /usr/bin/poolshimd --socket /run/poolshim/poolshimd.sock >"$tmp/daemon.log" 2>&1 &
dpid=$!
for _ in $(seq 250); do
  /usr/bin/poolshimd --status >/dev/null 2>&1 && break
  sleep 0.02
done
/usr/bin/poolshimd --status >/dev/null 2>&1 || { cat "$tmp/daemon.log"; fail "the installed daemon does not answer"; }
mkdir -p "$tmp/stats" "$tmp/home"
run() { env -i PATH=/usr/bin:/bin HOME="$tmp/home" "$@"; }
plain=$(run /usr/bin/poolshim run --sim --sim-dir "$sim_dir" --no-shim -- "$example" 20 2>&1) ||
  { echo "$plain"; fail "the example failed without the shim"; }
shimmed=$(run POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$tmp/stats" \
  /usr/bin/poolshim run --sim --sim-dir "$sim_dir" --summary -- "$example" 20 2>&1) ||
  { echo "$shimmed"; fail "the example failed under the installed shim"; }
echo "poolshim run (installed launcher, shim and daemon; simulator):"
echo "$shimmed" | sed 's/^/  /'
sum() { grep '^legacy_inference: 20 requests, checksum' <<<"$1"; }
[[ -n "$(sum "$plain")" && "$(sum "$plain")" == "$(sum "$shimmed")" ]] ||
  fail "checksums differ: '$(sum "$plain")' without the shim, '$(sum "$shimmed")' with it"
grep -q '^poolshim: summary' <<<"$shimmed" || fail "no shim summary: the installed shim was not preloaded"
grep -q 'started poolshimd' <<<"$shimmed" && fail "the launcher started a daemon of its own, not the node's"
status=$(/usr/bin/poolshimd --status)
echo "poolshimd --status: $(head -1 <<<"$status")"
reclaimed=$(sed -n 's/.*reclaimed_slabs=\([0-9]*\).*/\1/p' <<<"$status")
[[ "${reclaimed:-0}" -gt 0 ]] || fail "the node daemon lent nothing to the example: $status"
report=$(run /usr/bin/poolshim-stats report --dir "$tmp/stats" --top 3 2>&1) || { echo "$report"; fail "poolshim-stats report"; }
grep -q 'legacy_inference' <<<"$report" || { echo "$report"; fail "the report names no site of the example"; }
echo "poolshim-stats report: $(grep -c 'legacy_inference' <<<"$report") line(s) naming the example's call sites"
took "the run"
# Root importing the installed Python package leaves __pycache__ behind: the purge must take it.
/usr/bin/python3 -c 'import poolshim' || fail "the installed Python package does not import"
kill "$dpid" && wait "$dpid" 2>/dev/null || true
dpid=""

# ---- purge: nothing left -----------------------------------------------------------------------
dpkg --purge poolshim >"$tmp/dpkg-purge.log" 2>&1 || { cat "$tmp/dpkg-purge.log"; fail "dpkg --purge failed"; }
installed=0
took "dpkg --purge"
dpkg-query -W -f='${Status}' poolshim 2>/dev/null | grep -q 'installed' && fail "poolshim is still installed"
left=()
while IFS= read -r f; do
  [[ -e "$f" || -L "$f" ]] && left+=("$f")
done <"$tmp/files"
for d in /usr/lib/poolshim /usr/share/poolshim /usr/include/poolshim /usr/share/doc/poolshim \
  /usr/lib/python3/dist-packages/poolshim /run/poolshim; do
  [[ -e "$d" ]] && left+=("$d")
done
((${#left[@]} == 0)) || fail "left after purge: ${left[*]}"
getent group poolshim >/dev/null && fail "the poolshim group is left after purge"
echo "dpkg --purge: no file, folder, group or socket directory left"
echo "deploy.deb_install_run_purge: ok in $((($(date +%s%N) - start) / 1000000)) ms"

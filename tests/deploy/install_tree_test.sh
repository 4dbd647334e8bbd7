#!/usr/bin/env bash
# `cmake --install` into a fresh prefix (kept for deploy.systemd_unit), then what a user of that
# prefix relies on: the layout, no path into the build tree and no library missing without
# LD_LIBRARY_PATH, --version of each program, man pages made from --help, the public headers
# compiling alone, the installed launcher running a program under the installed shim and daemon
# (on the simulator), and the installed Python package finding its library by itself.
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }
build="" prefix="" version="" sim_dir="" example="" python=""
while (($#)); do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --prefix) prefix=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --sim-dir) sim_dir=$2; shift 2 ;;
    --example) example=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    *) fail "unknown argument $1" ;;
  esac
done
[[ -n "$build" && -n "$prefix" && -n "$version" && -n "$sim_dir" && -n "$example" ]] || fail "missing arguments"

rm -rf "$prefix"
cmake --install "$build" --prefix "$prefix" >"$build/deploy/install.log" 2>&1 ||
  { cat "$build/deploy/install.log"; fail "cmake --install failed"; }
echo "installed into $prefix"

# The layout (scripts/cmake/poolshim_install.cmake).
for f in bin/poolshim bin/poolshimd bin/poolshim-stats lib/poolshim/libpoolshim.so lib/poolshim/libunwind.so.8 \
  lib/libpoolshim_buffers.so include/poolshim/poolshim.h include/poolshim/buffers.h include/poolshim/version.h \
  lib/python3/dist-packages/poolshim/__init__.py share/poolshim/VERSION share/poolshim/systemd/poolshimd.service \
  lib/systemd/system/poolshimd.service share/poolshim/kubernetes/poolshimd.yaml \
  share/poolshim/kubernetes/workload-pod.yaml share/poolshim/grafana/poolshimd-dashboard.json \
  share/man/man1/poolshim.1.gz share/man/man1/poolshimd.1.gz share/man/man1/poolshim-stats.1.gz; do
  [[ -f "$prefix/$f" ]] || fail "$f is not installed"
done
for f in bin/poolshim bin/poolshimd bin/poolshim-stats; do
  [[ -x "$prefix/$f" ]] || fail "$f is not executable"
done
echo "layout: $(cd "$prefix" && find . -type f | wc -l) files, as listed"

# ELF files: no RPATH/RUNPATH into the build or source tree; every needed library found with a
# clean environment (no LD_LIBRARY_PATH).
src=$(cd "$(dirname "$0")/../.." && pwd)
while IFS= read -r f; do
  head -c 4 "$f" | grep -q 'ELF' || continue
  dyn=$(readelf -d --wide "$f")
  if grep -E 'R(UN)?PATH' <<<"$dyn" | grep -qE "$build|$src"; then
    fail "$f keeps a path into the build: $(grep -E 'R(UN)?PATH' <<<"$dyn")"
  fi
  if env -i PATH=/usr/bin:/bin ldd "$f" 2>&1 | grep -q 'not found'; then
    fail "$f: a library is not found without LD_LIBRARY_PATH: $(env -i PATH=/usr/bin:/bin ldd "$f" | grep 'not found')"
  fi
done < <(find "$prefix" -type f)
echo "ELF files: no build paths, every library found without LD_LIBRARY_PATH"

# --version of each program is its name and the project's version.
for p in poolshim poolshimd poolshim-stats; do
  got=$(env -i PATH=/usr/bin:/bin "$prefix/bin/$p" --version) || fail "$p --version failed"
  [[ "$got" == "$p $version" ]] || fail "$p --version printed '$got', want '$p $version'"
  echo "$got"
done

# Man pages: help2man's, from each program's --help (an option of each must be in its page).
for spec in poolshimd:--region poolshim-stats:--older-than poolshim:--sim-dir; do
  page=$prefix/share/man/man1/${spec%%:*}.1.gz
  text=$(zcat "$page" | sed 's/\\-/-/g')  # groff's \- is a plain hyphen
  grep -q '^\.TH ' <<<"$text" || fail "$page is not a man page"
  grep -qe "${spec#*:}" <<<"$text" || fail "$page lacks ${spec#*:} (not made from the --help?)"
  grep -q "$version" <<<"$text" || fail "$page does not say version $version"
done
echo "man pages: poolshim(1) poolshimd(1) poolshim-stats(1), from --help"

# The public headers compile on their own from the installed include folder.
tmp=$(mktemp -d)
# The launcher's daemon exits 1 s after its last client (POOLSHIMD_IDLE_EXIT): waited for.
cleanup() {
  for _ in $(seq 50); do
    "$prefix/bin/poolshimd" --status --socket "$tmp/run/poolshimd.sock" >/dev/null 2>&1 || break
    sleep 0.1
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
printf '#include <poolshim/poolshim.h>\n#include <poolshim/buffers.h>\n#include <poolshim/version.h>\n' >"$tmp/h.c"
cc -std=c11 -Wall -Werror -fsyntax-only -I"$prefix/include" "$tmp/h.c" || fail "the installed C headers do not compile"
echo "headers: poolshim.h, buffers.h, version.h compile from $prefix/include"

# The installed launcher finds the installed shim and daemon by itself: a per-user daemon in a
# private folder, the example on the simulator, the shim's summary at exit.
mkdir -m 0700 "$tmp/run"
out=$(env -i PATH=/usr/bin:/bin HOME="$tmp" POOLSHIM_SOCKET="$tmp/run/poolshimd.sock" POOLSHIMD_IDLE_EXIT=1 \
  POOLSHIMD_REGION=256M "$prefix/bin/poolshim" run --sim --sim-dir "$sim_dir" --summary -- "$example" 20 2>&1) ||
  { echo "$out"; fail "the installed launcher failed"; }
echo "$out" | sed 's/^/  /'
grep -q "poolshim: started poolshimd (pid .*; $prefix/bin/poolshimd)" <<<"$out" || fail "the installed launcher did not start the installed daemon"
grep -q '^poolshim: summary' <<<"$out" || fail "no shim summary: the installed shim was not preloaded"
grep -q "^poolshim: summary.* daemon_slabs=[1-9]" <<<"$out" || fail "the installed daemon lent the shim no slab"
grep -q '^legacy_inference: 20 requests, checksum' <<<"$out" || fail "the example did not finish"

# The installed Python package loads the installed libpoolshim_buffers.so, no variable set.
if [[ -n "$python" ]]; then
  got=$(env -i PATH=/usr/bin:/bin "$python" -c "
import sys; sys.path.insert(0, '$prefix/lib/python3/dist-packages')
import poolshim, os
print(os.path.realpath(poolshim._load()._name))") || fail "the installed Python package cannot load its library"
  [[ "$got" == "$(realpath "$prefix/lib/libpoolshim_buffers.so")" ]] || fail "the Python package loaded $got"
  echo "python: poolshim loads $got"
fi
echo "deploy.install_tree: ok"

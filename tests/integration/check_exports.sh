#!/usr/bin/env bash
# shim_exports_only_hooks: libpoolshim.so must define exactly the dynamic symbols its version
# script lists (dlsym, the hooked cu* names, the poolshim_* C API): no spdlog, fmt, libstdc++
# inline or core symbol may leak into the host program, and no hook may be missing.
# usage: check_exports.sh LIBPOOLSHIM.so libpoolshim.map
set -eu
lib=$1 map=$2
allowed=$(sed -n '/global:/,/local:/p' "$map" | grep -oE '^[[:space:]]+[A-Za-z_][A-Za-z0-9_]*;' | tr -d ' ;' | sort)
exported=$(nm -D --defined-only "$lib" | awk '{print $NF}' | sed 's/@.*//' | sort)
extra=$(comm -13 <(echo "$allowed") <(echo "$exported"))
missing=$(comm -23 <(echo "$allowed") <(echo "$exported"))
[[ -n $allowed ]] || { echo "no exports listed in $map"; exit 1; }
if [[ -n $extra || -n $missing ]]; then
  [[ -n $extra ]] && { echo "exported but not allowed:"; echo "$extra"; }
  [[ -n $missing ]] && { echo "allowed but not exported:"; echo "$missing"; }
  exit 1
fi
echo "libpoolshim.so exports exactly its $(echo "$allowed" | wc -l) hooks and API functions"

#!/usr/bin/env bash
# The Kubernetes manifests against the Kubernetes API schema, offline (validate_kubernetes.mjs over
# the npm packages scripts/setup.sh installs), and the same check on broken copies, which must
# fail: a wrong type, a misspelled field, a quantity that is not one.
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }
modules="" validator=""
files=()
while (($#)); do
  case "$1" in
    --modules) modules=$2; shift 2 ;;
    --validator) validator=$2; shift 2 ;;
    *) files+=("$1"); shift ;;
  esac
done
command -v node >/dev/null || { echo "SKIP: no node (Debian: nodejs); scripts/setup.sh installs it"; exit 77; }
[[ -f "$modules/kubernetes-models/package.json" ]] ||
  fail "no checkers in $modules: run scripts/setup.sh (npm ci of scripts/deploy/validate)"

node "$validator" --modules "$modules" "${files[@]}" || fail "the manifests are not valid"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Broken copies of the DaemonSet's file, checked in one run (one tsc): each must be reported.
names=() wants=()
broken() {  # broken NAME SED-EXPRESSION WANT
  sed "$2" "${files[0]}" >"$tmp/$1.yaml"
  cmp -s "${files[0]}" "$tmp/$1.yaml" && fail "$1: the edit changed nothing"
  names+=("$1") wants+=("$3")
}
broken wrong_type 's/initialDelaySeconds: 5/initialDelaySeconds: five/' "initialDelaySeconds must be integer"
broken misspelled_field 's/readOnlyRootFilesystem:/readOnlyRootFileSystem:/' "readOnlyRootFileSystem"
broken bad_quantity 's/memory: 2304Mi/memory: 2304 MB/' 'format "quantity"'
paths=()
for n in "${names[@]}"; do paths+=("$tmp/$n.yaml"); done
if out=$(node "$validator" --modules "$modules" "${paths[@]}" 2>&1); then fail "broken copies passed: $out"; fi
for i in "${!names[@]}"; do
  line=$(grep -F -- "${names[$i]}.yaml#" <<<"$out" | grep -F -m1 -- "${wants[$i]}") ||
    fail "${names[$i]}: not reported as '${wants[$i]}': $out"
  echo "caught ${names[$i]}: $line"
done
echo "deploy.kubernetes_manifests: ok"

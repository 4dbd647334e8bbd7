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
broken() {  # broken NAME SED-EXPRESSION WANT: a copy of the DaemonSet's file, broken, must fail
  sed "$2" "${files[0]}" >"$tmp/$1.yaml"
  cmp -s "${files[0]}" "$tmp/$1.yaml" && fail "$1: the edit changed nothing"
  local out
  if out=$(node "$validator" --modules "$modules" "$tmp/$1.yaml" 2>&1); then fail "$1 passed: $out"; fi
  grep -q -- "$3" <<<"$out" || fail "$1: not reported as '$3': $out"
  echo "caught $1: $(grep -m1 -- "$3" <<<"$out")"
}
broken wrong_type 's/initialDelaySeconds: 5/initialDelaySeconds: five/' "initialDelaySeconds must be integer"
broken misspelled_field 's/readOnlyRootFilesystem:/readOnlyRootFileSystem:/' "readOnlyRootFileSystem"
broken bad_quantity 's/memory: 2304Mi/memory: 2304 MB/' 'format "quantity"'
echo "deploy.kubernetes_manifests: ok"

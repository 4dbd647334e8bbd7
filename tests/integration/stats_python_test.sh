#!/usr/bin/env bash
# Python frames end to end: stats_python_program.py allocates through ctypes (the simulator's
# libcudart.so.13) under the shim with POOLSHIM_STATS=python, and poolshim-stats' JSON must name each
# of its sites by the script's own file:line in function, innermost first, with exact bytes — on the
# main thread and on a threading.Thread, under every supported CPython found here (Debian's
# python3.11 at least; 3.12 and 3.13 too where pyenv or PATH has them). A CPython that poolshim does
# not support (3.10 or older, or newer than 3.13, where one is found) must fall back to native frames
# with one warning. By default only the script's frames are shown (the interpreter's, ctypes',
# libffi's, the runtime's and libc's hidden); --all-frames brings them back. Also: a run killed with kill -9 (the code table is in the file, so its frames
# are still named), and reports of many copies of a file whose code table was damaged on purpose.
# usage: stats_python_test.sh --shim libpoolshim.so --stats poolshim-stats --program stats_python_program.py
# POOLSHIM_TEST_PYTHONS (optional): the interpreters to try, separated by spaces, instead of a search.
set -u
shim="" stats="" program=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --shim) shim=$2; shift 2 ;;
    --stats) stats=$2; shift 2 ;;
    --program) program=$2; shift 2 ;;
    *) echo "stats_python_test: unknown option $1" >&2; exit 2 ;;
  esac
done
fail() { echo "stats_python_test: FAIL: $*" >&2; exit 1; }
dir=$(mktemp -d /tmp/poolshim-stats-python-XXXXXX)
held=""
trap '[[ -n $held ]] && kill -9 $held 2>/dev/null; rm -rf "$dir"' EXIT

# Candidate interpreters: Debian's, PATH's, pyenv's; each real binary once.
candidates=${POOLSHIM_TEST_PYTHONS:-}
if [[ -z $candidates ]]; then
  candidates="/usr/bin/python3.11 /usr/bin/python3 $(command -v python3 2>/dev/null)"
  root=$(pyenv root 2>/dev/null) && candidates+=" $(ls -d "$root"/versions/3.*/bin/python3 2>/dev/null | tr '\n' ' ')"
fi
declare -A seen=()
supported=() unsupported=()
for py in $candidates; do
  [[ -x $py ]] || continue
  exe=$("$py" -c 'import sys, os; print(os.path.realpath(sys.executable))' 2>/dev/null) || continue
  [[ -n ${seen[$exe]:-} ]] && continue
  seen[$exe]=1
  minor=$("$py" -c 'import sys, ctypes; print(sys.version_info[1] if sys.version_info[0] == 3 else -1)' 2>/dev/null) ||
    continue
  if ((minor >= 11 && minor <= 13)); then
    supported+=("$exe")
  elif ((minor >= 6)); then
    unsupported+=("$minor $exe")
  fi
done
((${#supported[@]} > 0)) || fail "no CPython 3.11 to 3.13 found (Debian's python3.11 is expected)"

run() {  # run PYTHON TAG ARGS...: the program under the shim, its own stats folder
  local py=$1 tag=$2
  shift 2
  mkdir -p "$dir/$tag"
  env LD_PRELOAD="$shim" POOLSHIM_STATS=python POOLSHIM_STATS_DIR="$dir/$tag" "$py" "$program" "$@" \
    >"$dir/$tag.out" 2>"$dir/$tag.err" || { cat "$dir/$tag.out" "$dir/$tag.err" >&2; fail "$tag: the program failed"; }
  grep -q "^done$" "$dir/$tag.out" || fail "$tag: the program did not finish"
  "$stats" report --dir "$dir/$tag" --format json --top 0 >"$dir/$tag.json" || fail "$tag: report"
}

for py in "${supported[@]}"; do
  version=$("$py" -c 'import platform; print(platform.python_version())')
  echo "== CPython $version ($py)"
  tag=py$version
  run "$py" "$tag"
  grep -q "not supported" "$dir/$tag.err" && { cat "$dir/$tag.err" >&2; fail "$tag: refused a supported version"; }
  "$py" "$program" --check "$dir/$tag.json" || fail "$tag: the main thread's sites"
  "$stats" report --dir "$dir/$tag" --format json --top 0 --all-frames >"$dir/$tag-all.json" || fail "$tag: --all-frames"
  "$py" "$program" --check-all-frames "$dir/$tag-all.json" || fail "$tag: --all-frames shows the hidden frames"
  run "$py" "$tag-thread" --thread
  "$py" "$program" --check "$dir/$tag-thread.json" --thread || fail "$tag: the sites with a thread"
  "$stats" report --dir "$dir/$tag-thread" --top 3 | tee "$dir/$tag.txt"
  grep -Eq "^ +worker \(stats_python_program.py:[0-9]+\)$" "$dir/$tag.txt" || fail "$tag: the text report lacks worker's frame"
done

# kill -9 after leak(): the report of the dead process still names its Python frames.
mkdir -p "$dir/killed"
LD_PRELOAD="$shim" POOLSHIM_STATS=python POOLSHIM_STATS_DIR="$dir/killed" "${supported[0]}" "$program" --hold \
  >"$dir/killed.out" 2>&1 &
held=$!
for _ in $(seq 1000); do grep -q ready "$dir/killed.out" && break; sleep 0.01; done
grep -q ready "$dir/killed.out" || fail "the held run did not get ready"
kill -9 $held
wait $held 2>/dev/null
held=""
"$stats" report --dir "$dir/killed" --format json --top 0 >"$dir/killed.json" || fail "report of the killed run"
"${supported[0]}" "$program" --check "$dir/killed.json" --hold || fail "the killed run's sites"

# A damaged code table (a process killed mid-write, a corrupt file): each of many copies of the last
# file gets random bytes in its Python code table's header, used entries and heap; the report must
# still come out (a frame it cannot name stays "[python]"), never crash.
python3 - "$stats" "$(ls "$dir/$tag-thread"/*.stats)" "$dir" <<'PY' || fail "a damaged code table"
import json, random, shutil, struct, subprocess, sys
stats, src, tmp = sys.argv[1:4]
data = open(src, "rb").read()
at = data.find(b"PSHPYCT\0")
assert at > 0, "no Python code table in the file"
(codes_at, capacity, code_size, heap_at, heap_size, heap_used) = struct.unpack_from("<QIIQQQ", data, at + 96)
used = [at + codes_at + i * code_size for i in range(capacity)
        if struct.unpack_from("<Q", data, at + codes_at + i * code_size)[0] != 0]
assert used, "no code recorded"
rng = random.Random(7)
# One copy of the file, damaged in place and mended after each trial (a copy of ~26 MB per trial
# cost more than the reports).
path = f"{tmp}/damaged.stats"
open(path, "wb").write(data)
f = open(path, "r+b", buffering=0)
for trial in range(40):
    targets = [(at, 200)] if trial % 8 == 0 else []
    targets += [(e, code_size) for e in rng.sample(used, min(len(used), 3))]
    targets.append((at + heap_at, min(heap_used, heap_size)))
    damaged = []
    for start, length in targets:
        for _ in range(6):
            pos = start + rng.randrange(length)
            f.seek(pos)
            f.write(bytes([rng.randrange(256)]))
            damaged.append(pos)
    r = subprocess.run([stats, "report", path, "--format", "json", "--top", "0"], capture_output=True, text=True)
    assert r.returncode == 0, f"trial {trial}: rc {r.returncode}: {r.stderr[-500:]}"
    json.loads(r.stdout)
    for pos in damaged:  # mended: the next trial damages the original file
        f.seek(pos)
        f.write(data[pos:pos + 1])
print("damaged code tables: 40 reports, no crash")
PY

if ((${#unsupported[@]} > 0)); then
  py=$(printf '%s\n' "${unsupported[@]}" | sort -n | tail -1 | cut -d' ' -f2-)  # the newest
  version=$("$py" -c 'import platform; print(platform.python_version())')
  echo "== CPython $version ($py): not supported, native frames"
  run "$py" unsupported
  grep -q "POOLSHIM_STATS=python: CPython $version is not supported" "$dir/unsupported.err" ||
    { cat "$dir/unsupported.err" >&2; fail "no warning for an unsupported CPython"; }
  [[ $(grep -c "is not supported" "$dir/unsupported.err") == 1 ]] || fail "the warning is not given once"
  python3 "$program" --check-native "$dir/unsupported.json" || fail "unsupported CPython: native frames"
else
  echo "stats_python_test: note: no CPython older than 3.11 or newer than 3.13 here; refusal not run"
fi
echo "stats_python_test: OK"

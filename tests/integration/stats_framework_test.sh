#!/usr/bin/env bash
# Framework cache labels end to end: stats_framework_program allocates under the shim through a
# library whose allocator lives in PyTorch's c10::cuda::CUDACachingAllocator namespace, a stripped
# library named like jaxlib's xla_extension.so, PyTorch's (non-caching) CudaMallocAsync backend and
# its own code, and PyTorch's uncached path (PYTORCH_NO_CUDA_MEMORY_CACHING=1). poolshim-stats must label exactly the first two (JSON "framework", the text
# report's marks) and say once per framework how to get per-tensor call sites (text, JSON, HTML).
# The JSON report must have exactly the fields daemon/stats/REPORT_SCHEMA.md documents.
# usage: stats_framework_test.sh --shim libpoolshim.so --program stats_framework_program
#          --stats poolshim-stats --schema REPORT_SCHEMA.md --checker check_report_schema.py
set -u
shim="" program="" stats="" schema="" checker=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --shim) shim=$2; shift 2 ;;
    --program) program=$2; shift 2 ;;
    --stats) stats=$2; shift 2 ;;
    --schema) schema=$2; shift 2 ;;
    --checker) checker=$2; shift 2 ;;
    *) echo "stats_framework_test: unknown option $1" >&2; exit 2 ;;
  esac
done
fail() { echo "stats_framework_test: FAIL: $*" >&2; exit 1; }
dir=$(mktemp -d /tmp/poolshim-stats-fw-XXXXXX)
trap 'rm -rf "$dir"' EXIT

out=$(env LD_PRELOAD="$shim" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$dir" "$program") ||
  fail "the program failed: $out"
"$stats" report --dir "$dir" --format json --top 0 --output "$dir/report.json" || fail "report --format json"
python3 - "$dir/report.json" <<'PY' || fail "JSON labels"
import json, sys
report = json.load(open(sys.argv[1]))
def site(fn):
    found = [s for s in report["sites"] if any(fn in f["function"] for f in s["frames"])]
    assert len(found) == 1, f"{fn}: {len(found)} sites"
    return found[0]
def by_module(name):
    found = [s for s in report["sites"] if any(f["module"].endswith("/" + name) for f in s["frames"])]
    assert len(found) == 1, f"{name}: {len(found)} sites"
    return found[0]
want = {
    "DeviceCachingAllocator::malloc_block": ("PyTorch CUDACachingAllocator", 8 << 20),
    "CudaMallocAsync::mallocAsync": (None, 2 << 20),
    "torchlike_empty_uncached": (None, 4 << 20),
    "plain_site": (None, 1 << 20),
    "pinned_site": (None, 64 << 10),
}
for fn, (label, total) in want.items():
    s = site(fn)
    assert s["framework"] == label, f"{fn}: framework {s['framework']!r}, want {label!r}"
    assert s["bytes_allocated"] == total, f"{fn}: {s['bytes_allocated']} bytes, want {total}"
    print(f"{fn}: {label}")
xla = by_module("xla_extension.so")
frame = next(f for f in xla["frames"] if f["module"].endswith("/xla_extension.so"))
assert frame["function"] == "", f"the stripped module's inner frame has a name: {frame['function']!r}"
assert xla["framework"] == "XLA BFCAllocator", f"xla_extension.so: framework {xla['framework']!r}"
assert xla["bytes_allocated"] == 16 << 20
print("xla_extension.so (by module name): XLA BFCAllocator")
names = [f["name"] for f in report["frameworks"]]
assert names == ["PyTorch CUDACachingAllocator", "XLA BFCAllocator"], names
torch = report["frameworks"][0]
assert torch["sites"] == 1 and torch["bytes_allocated"] == 8 << 20 and torch["live_bytes"] == 8 << 20, torch
assert "PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync" in torch["hint"], torch["hint"]
assert "PYTORCH_NO_CUDA_MEMORY_CACHING=1" in torch["hint"], torch["hint"]
assert "XLA_PYTHON_CLIENT_ALLOCATOR=platform" in report["frameworks"][1]["hint"]
print("frameworks:", names)
PY
# With --bottom-up too: the schema's bottom_up part (and every other) is exercised.
"$stats" report --dir "$dir" --format json --top 0 --bottom-up --output "$dir/bottom-up.json" ||
  fail "report --format json --bottom-up"
python3 "$checker" --all-paths "$schema" "$dir/report.json" "$dir/bottom-up.json" ||
  fail "the JSON report does not match $schema"

# Text: each labelled site marked, each hint once, the notes within 100 columns.
"$stats" report --dir "$dir" --top 0 >"$dir/report.txt" || fail "report (text)"
cat "$dir/report.txt"
[[ $(grep -c "\[PyTorch CUDACachingAllocator\] the framework's cache growing" "$dir/report.txt") == 1 ]] ||
  fail "the PyTorch site is not marked once in the text report"
[[ $(grep -c "\[XLA BFCAllocator\] the framework's cache growing" "$dir/report.txt") == 1 ]] ||
  fail "the XLA site is not marked once in the text report"
for hint in PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync XLA_PYTHON_CLIENT_ALLOCATOR=platform; do
  [[ $(grep -c -- "$hint" "$dir/report.txt") == 1 ]] || fail "the text report does not say $hint once"
done
grep -q "cupy.cuda.set_allocator" "$dir/report.txt" && fail "a CuPy hint without a CuPy site"
awk '/^  note: [0-9]+ call sites? (is|are) /{n=1} n && length > 100 {bad=1; print "too long: " $0} END {exit bad}' "$dir/report.txt" ||
  fail "framework notes over 100 columns"

# HTML: the framework notes and the site badges.
"$stats" report --dir "$dir" --format html --output "$dir/report.html" || fail "report --format html"
grep -q 'data-framework="PyTorch CUDACachingAllocator"' "$dir/report.html" || fail "HTML: no PyTorch note"
grep -q 'PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync' "$dir/report.html" || fail "HTML: no PyTorch hint"
grep -q '<span class="badge">XLA BFCAllocator cache</span>' "$dir/report.html" || fail "HTML: no XLA badge"

# Clear errors for the new options.
msg=$("$stats" report --dir "$dir" --format html --output /nonexistent/dir/r.html 2>&1) && fail "wrote to /nonexistent"
echo "unwritable output: $msg"; [[ $msg == *"/nonexistent/dir/r.html: No such file or directory"* ]] || fail "$msg"
msg=$("$stats" report --dir "$dir" --format pdf 2>&1); rc=$?
echo "bad format: $msg"; [[ $rc == 2 && $msg == *"bad --format 'pdf'"* ]] || fail "bad format: rc $rc, $msg"
"$stats" --help | grep -q -- "html (a" || fail "--help does not mention --format html"
echo "stats_framework_test: OK"

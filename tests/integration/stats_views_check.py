#!/usr/bin/env python3
"""Checks poolshim-stats' reports of stats_views_program (stats_views_test.sh) against the lines
marked "mark: NAME" in its source and the blocks it printed.

usage: stats_views_check.py MODE SOURCE ARGS...
  json SOURCE REPORT.json            the runtime's and libc's frames hidden: each site's first frame
                                     is the program's call (lambdas apart), the same-line sites folded
  json-all SOURCE REPORT.json        --all-frames: the runtime's and libc's frames are back, nothing folded
  text SOURCE REPORT.txt             the text report's first frame of each site is the program's
  collapsed SOURCE REPORT.txt        each line from main to the program's call, no runtime or libc frame
  collapsed-all SOURCE REPORT.txt    --all-frames: the runtime's cudaMalloc and libc's start are there
  bottom-up SOURCE REPORT.txt        helper's callers below it
  bottom-up-json SOURCE REPORT.json REPORT.txt
                                     the JSON's bottom_up: helper's callers below it, depth first,
                                     and the same roots, in the same order, with as many callers,
                                     as the text view
  memory_viz SOURCE SNAPSHOT OUTPUT  the pool's segments hold the printed blocks at their addresses;
                                     the failed allocation is an oom event with its frames
"""
import json
import pickle
import re
import sys

KiB = 1 << 10
ME = "stats_views_program.cpp"


def marks(source):
    out = {}
    for n, line in enumerate(open(source, encoding="utf-8"), 1):
        m = re.search(r"// mark: (.+)$", line)
        if m and not line.lstrip().startswith("//"):
            out[m.group(1).strip()] = n
    return out


def runtime_or_libc(f):
    module = f["module"].rsplit("/", 1)[-1]
    return (module.startswith("libcudart") or module.startswith("libcuda.") or module.startswith("libc.so")
            or f["function"] in ("_start", "__libc_start_main", "__libc_start_call_main"))


def short(function):
    """The function's own name: no namespace, no parameters ("(anonymous namespace)::f(int)" -> "f")."""
    return function.replace("(anonymous namespace)::", "").split("(")[0].split("::")[-1]


def first_frame_line(s):
    f = s["frames"][0]
    return f["line"] if f["file"].endswith(ME) else None


def check_json(source, path):
    m = marks(source)
    r = json.load(open(path, encoding="utf-8"))
    assert r["all_frames"] is False, r["all_frames"]
    sites = [s for s in r["sites"] if s["allocs"] > 0]
    for s in sites:
        bad = [f for f in s["frames"] if runtime_or_libc(f)]
        assert not bad, f"site {s['id']}: frames of the runtime or libc shown: {bad}"
        assert s["frames"] and s["frames"][-1]["function"] == "main", [f["function"] for f in s["frames"]]
        assert s["hidden_frames"] >= 2, f"site {s['id']}: {s['hidden_frames']} frames hidden (runtime and libc)"
    by_line = {}
    for s in sites:
        by_line.setdefault(first_frame_line(s), []).append(s)
    want = {"direct": (1, 512 * KiB), "lambda a": (1, 256 * KiB), "lambda b": (1, 384 * KiB), "helper": (2, 128 * KiB),
            "same line": (2, 256 * KiB), "packed": (16, 128 * KiB)}
    for name, (allocs, total) in want.items():
        got = by_line.get(m[name], [])
        assert sum(s["allocs"] for s in got) == allocs and sum(s["bytes_allocated"] for s in got) == total, \
            f"{name} (line {m[name]}): {[(s['allocs'], s['bytes_allocated']) for s in got]}"
    assert None not in by_line, "a site whose first frame is not the program's: " + json.dumps(by_line.get(None))[:600]
    # The lambdas: their operator() at their own lines, two sites.
    for name in ("lambda a", "lambda b"):
        (s,) = by_line[m[name]]
        assert "lambda" in s["frames"][0]["function"] and "operator()" in s["frames"][0]["function"], s["frames"][0]
    # helper from two callers: two sites, told apart by the caller.
    callers = sorted(short(s["frames"][1]["function"]) for s in by_line[m["helper"]])
    assert callers == ["caller_one", "caller_two"], callers
    # cudaMalloc and cudaMallocManaged on one line: one site folding both stacks, said so.
    (same,) = by_line[m["same line"]]
    assert same["folded_stacks"] == 2, same["folded_stacks"]
    assert all(s["folded_stacks"] == 1 for s in sites if s is not same)
    print(f"json: {len(sites)} sites, each from the program's own call; the same-line pair folded (2 stacks)")


def check_json_all(source, path):
    m = marks(source)
    r = json.load(open(path, encoding="utf-8"))
    assert r["all_frames"] is True
    sites = [s for s in r["sites"] if s["allocs"] > 0]
    assert all(s["hidden_frames"] == 0 and s["folded_stacks"] == 1 for s in sites)
    for s in sites:
        assert s["frames"][0]["module"].rsplit("/", 1)[-1].startswith("libcudart"), s["frames"][0]
        assert runtime_or_libc(s["frames"][-1]), f"outermost frame {s['frames'][-1]}: not libc's start"
    same = [s for s in sites if any(f["file"].endswith(ME) and f["line"] == m["same line"] for f in s["frames"])]
    managed = [any("cudaMallocManaged" in f["function"] for f in s["frames"]) for s in same]
    assert sorted(managed) == [False, True], [[f["function"] for f in s["frames"]] for s in same]
    print(f"json --all-frames: {len(sites)} sites, runtime frames first and libc's start last; same-line pair apart")


def site_blocks(text):
    blocks, cur = [], None
    for line in text.splitlines():
        if re.match(r"^  #\d+ ", line):
            cur = []
            blocks.append(cur)
        elif cur is not None and line.startswith("       "):
            cur.append(line.strip())
        elif cur is not None and line.strip() == "":
            cur = None
    return blocks


def check_text(source, path):
    m = marks(source)
    text = open(path, encoding="utf-8").read()
    assert "--all-frames shows every frame" in text and "fold" in text, "no note of hidden frames"
    lines = set(m.values())
    blocks = site_blocks(text)
    assert blocks, text
    for b in blocks:
        frames = [l for l in b if not l[0].isdigit() and not re.match(r"^(\(\d+ stacks|\[|sizes )", l)]
        assert frames, b
        got = re.search(r"\(" + re.escape(ME) + r":(\d+)\)$", frames[0])
        assert got and int(got.group(1)) in lines, f"first frame {frames[0]!r} is not a marked line"
        assert not any("cudaMalloc (" in f or "__libc_start_main" in f for f in frames), frames
    assert any("2 stacks that differ only in hidden frames" in l for b in blocks for l in b), "folding not said"
    print(f"text: {len(blocks)} sites, each first frame a marked line of {ME}")


def check_collapsed(source, path, every):
    m = marks(source)
    lines = [l for l in open(path, encoding="utf-8").read().splitlines() if l]
    assert lines
    for l in lines:
        stack = l.rsplit(" ", 1)[0].split(";")
        if every:
            assert stack[0] in ("_start", "__libc_start_main") or stack[0].startswith("__libc"), stack[0]
            assert "cudaMalloc" in stack[-1] or "operator()" in stack[-1] or "cudaMallocManaged" in stack[-1], stack[-1]
            continue
        assert stack[0] == "main", f"collapsed line does not start at main: {l}"
        got = re.search(r"\(" + re.escape(ME) + r":(\d+)\)$", stack[-1])
        assert got and int(got.group(1)) in set(m.values()), f"innermost frame {stack[-1]!r}"
        assert not any("libc_start" in f or f == "_start" or f.startswith("cudaMalloc") for f in stack), l
    print(f"collapsed{' --all-frames' if every else ''}: {len(lines)} lines as expected")


def check_bottom_up(source, path):
    m = marks(source)
    text = open(path, encoding="utf-8").read().splitlines()
    roots = [i for i, l in enumerate(text) if re.match(r"^  #\d+ ", l)]
    helper = [i for i in roots if "helper()" in text[i] and f"{ME}:{m['helper']}" in text[i]]
    assert len(helper) == 1, f"helper's root: {[text[i] for i in roots]}"
    i = helper[0]
    assert "2 allocations from 2 call sites" in text[i], text[i]
    end = next((k for k in roots if k > i), len(text))
    below = [l for l in text[i + 1:end] if l.strip()]
    names = [re.sub(r"^\s*\S+ \S+\s+", "", l) for l in below]
    assert len(below) == 4, below
    assert sorted(short(n) for n in names if "caller_" in n) == ["caller_one", "caller_two"], names
    indent = [len(l) - len(l.lstrip()) for l in below]
    for k in range(0, 4, 2):
        assert "caller_" in names[k] and names[k + 1].startswith("main"), names
        assert indent[k + 1] == indent[k] + 2, below
    print("bottom-up: helper() with caller_one and caller_two below it, main below each")


def check_bottom_up_json(source, path, text_path):
    m = marks(source)
    report = json.load(open(path, encoding="utf-8"))
    bu = report["bottom_up"]
    assert bu["weight"] == "peak", bu["weight"]
    roots = bu["functions"]
    helper = [r for r in roots if short(r["function"]) == "helper"]
    assert len(helper) == 1, [r["function"] for r in roots]
    h = helper[0]
    assert h["places"] == [f"{ME}:{m['helper']}"] and h["allocs"] == 2 and h["sites"] == 2, h
    assert [c["depth"] for c in h["callers"]] == [1, 2, 1, 2], h["callers"]
    names = [c["frame"] for c in h["callers"]]
    assert sorted(short(n) for n in names[0::2]) == ["caller_one", "caller_two"], names
    assert all(n.startswith("main (") for n in names[1::2]), names
    assert h["callers"][0]["value"] >= h["callers"][2]["value"], "callers largest first"
    assert sum(c["value"] for c in h["callers"] if c["depth"] == 1) == h["value"], h
    # The text view of the same report: the same roots in the same order, each with as many callers.
    text = open(text_path, encoding="utf-8").read().splitlines()
    starts = [i for i, l in enumerate(text) if re.match(r"^  #\d+ ", l)]
    assert len(starts) == len(roots), (len(starts), len(roots))
    for k, (i, r) in enumerate(zip(starts, roots)):
        assert f" {r['function']}" in text[i], (text[i], r["function"])
        end = starts[k + 1] if k + 1 < len(starts) else len(text)
        below = [l for l in text[i + 1:end] if l.strip() and not l.startswith("  note") and l.startswith("       ")]
        assert len(below) == len(r["callers"]), (r["function"], below, r["callers"])
    print(f"bottom-up JSON: {len(roots)} functions as in the text view; helper() with caller_one and "
          f"caller_two below it, main below each")


def check_memory_viz(source, path, program_output):
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    import memory_viz_check as mv
    m = marks(source)
    data = open(path, "rb").read()
    mv.check_opcodes(data)
    snap = pickle.loads(data)
    mv.check_structure(snap)
    mv.replay_backwards(snap)
    printed = [tuple(int(x) for x in l.split()[1:]) for l in open(program_output) if l.startswith("block ")]
    assert len(printed) == 14, printed
    segs = {(s["device"], s["address"]): s for s in snap["segments"]}
    trace = snap["device_traces"][0]
    seg_allocs = {(e["addr"], e["size"]) for e in trace if e["action"] == "segment_alloc"}
    for ptr, size, base, seg_size in printed:
        s = segs.get((0, base))
        assert s is not None, f"block {ptr:#x}: no segment at {base:#x} (the pool's, cuMemGetAddressRange)"
        assert s["total_size"] == seg_size, (s["total_size"], seg_size)
        blocks = {b["address"]: b for b in s["blocks"]}
        b = blocks.get(ptr)
        assert b and b["state"] == "active_allocated" and b["size"] == size, f"block {ptr:#x} (+{ptr - base:#x}): {b}"
        assert (base, seg_size) in seg_allocs, f"no segment_alloc of {base:#x} in the trace"
    bases = {base for _, _, base, _ in printed}
    assert len(bases) < len(printed), "every block in a segment of its own: the pool's packing is not shown"
    packed = [ptr for ptr, size, _, _ in printed if size == 8 * KiB]
    seg = segs[(0, next(base for ptr, size, base, _ in printed if size == 8 * KiB))]
    holes = [b for b in seg["blocks"] if b["state"] == "inactive"]
    assert len(packed) == 8 and holes, "the freed odd blocks leave no inactive space"
    # The managed allocation is the driver's: a segment of its own, its one block.
    managed = [s for s in snap["segments"] if s["total_size"] == 128 * KiB and s["address"] not in bases]
    assert len(managed) == 1 and len(managed[0]["blocks"]) == 1, [(hex(s["address"]), s["total_size"]) for s in managed]
    # The failed allocation: an oom entry with the size asked, the driver's free bytes, its frames.
    ooms = [e for e in trace if e["action"] == "oom"]
    assert len(ooms) == 1, ooms
    o = ooms[0]
    assert o["size"] == 1 << 40 and isinstance(o["device_free"], int) and "addr" not in o, o
    top = o["frames"][0]
    assert "site_oom" in top["name"] and top["filename"].endswith(ME) and top["line"] == m["oom"], top
    # Frames are the program's, the runtime's hidden.
    for e in trace:
        if e["action"] == "alloc":
            assert e["frames"] and e["frames"][0]["filename"].endswith(ME), e["frames"][:2]
    print(f"memory_viz: {len(printed)} blocks in {len(bases)} pool segments at their addresses, "
          f"{len(holes)} holes, the managed block alone, 1 oom with its frames")


def main():
    mode, source = sys.argv[1], sys.argv[2]
    if mode == "json":
        check_json(source, sys.argv[3])
    elif mode == "json-all":
        check_json_all(source, sys.argv[3])
    elif mode == "text":
        check_text(source, sys.argv[3])
    elif mode == "collapsed":
        check_collapsed(source, sys.argv[3], False)
    elif mode == "collapsed-all":
        check_collapsed(source, sys.argv[3], True)
    elif mode == "bottom-up":
        check_bottom_up(source, sys.argv[3])
    elif mode == "bottom-up-json":
        check_bottom_up_json(source, sys.argv[3], sys.argv[4])
    elif mode == "memory_viz":
        check_memory_viz(source, sys.argv[3], sys.argv[4])
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()

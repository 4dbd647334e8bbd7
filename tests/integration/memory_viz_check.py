#!/usr/bin/env python3
"""Checks a memory_viz snapshot written by `poolshim-stats report --format memory_viz` against what
PyTorch's viewer needs (torch/cuda/_memory_viz.py and torch/utils/viz/MemoryViz.js; torch itself is
not needed):

  * the pickle uses only opcodes the viewer's own JavaScript unpickler reads, with list and dict
    batches of at most 1000 items (it spreads a batch into a call's arguments);
  * {"segments": [...], "device_traces": [[...] per device]}; each segment's blocks tile it exactly
    (segsum's assertion); each trace entry has action, addr (an oom: device_free), size, stream,
    time_us and frames [{"filename": str, "line": int, "name": str}]; free_requested is followed by
    its free_completed;
  * replayed backwards from the segments, as the viewer's "Allocator State History" does, every
    alloc meets its block, every segment_alloc its segment, and every block lies in a segment;
  * --synthetic: exactly the timeline stats_fake_file.cpp writes (no segment events: each
    allocation its own segment); --program: stats_tool_program's known call sites and sizes (run
    with --leaks 3 --small N), its live blocks packed in fewer pool segments than blocks.

usage: memory_viz_check.py SNAPSHOT (--synthetic | --program N)
"""
import bisect
import pickle
import pickletools
import sys

MiB, KiB = 1 << 20, 1 << 10

# MemoryViz.js's unpickle(): the opcodes it handles.
VIEWER_OPCODES = {
    "PROTO", "APPEND", "APPENDS", "LIST", "TUPLE", "NEWFALSE", "NEWTRUE", "NONE", "BINGET", "BININT",
    "BININT1", "BININT2", "EMPTY_DICT", "EMPTY_LIST", "FRAME", "LONG1", "LONG_BINGET", "MARK", "MEMOIZE",
    "BINPUT", "LONG_BINPUT", "SETITEMS", "SETITEM", "DICT", "SHORT_BINUNICODE", "BINUNICODE", "STOP",
    "EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "BINFLOAT",
}
ACTIONS = {"alloc", "free_requested", "free_completed", "segment_alloc", "segment_free", "oom"}


def check_opcodes(data):
    stack = []
    for op, arg, pos in pickletools.genops(data):
        assert op.name in VIEWER_OPCODES, f"opcode {op.name} at {pos}: the viewer cannot read it"
        if op.name == "PROTO":
            assert 2 <= arg <= 4, f"protocol {arg}"
        elif op.name == "MARK":
            stack.append("mark")
        elif op.name in ("APPENDS", "SETITEMS"):
            n = 0
            while stack[-1] != "mark":
                stack.pop()
                n += 1
            stack.pop()
            limit = 1000 if op.name == "APPENDS" else 2000
            assert n <= limit, f"{op.name} of {n} values at {pos}"
        elif op.name in ("LONG_BINPUT", "BINPUT", "MEMOIZE", "FRAME", "PROTO", "STOP"):
            pass
        else:
            stack.append("value")


def check_frames(frames, where):
    assert isinstance(frames, list), where
    for f in frames:
        assert set(f) >= {"filename", "line", "name"}, (where, f)
        assert isinstance(f["filename"], str) and isinstance(f["name"], str) and isinstance(f["line"], int), (where, f)


def check_structure(snap):
    assert isinstance(snap, dict) and set(snap) >= {"segments", "device_traces"}, list(snap)
    for seg in snap["segments"]:
        for key in ("device", "address", "total_size", "allocated_size", "active_size", "stream", "blocks"):
            assert key in seg, (key, seg)
        assert sum(b["size"] for b in seg["blocks"]) == seg["total_size"], seg  # segsum's assertion
        addr = seg["address"]
        for b in seg["blocks"]:
            assert b["state"] in ("active_allocated", "active_pending_free", "inactive"), b
            assert b["address"] == addr, (b, addr)  # the viewer recomputes it so
            if b["state"] == "active_allocated":
                assert 0 < b["requested_size"] <= b["size"], b
                check_frames(b["frames"], "block")
            addr += b["size"]
        assert seg["active_size"] == sum(b["size"] for b in seg["blocks"] if b["state"] == "active_allocated"), seg
        check_frames(seg.get("frames", []), "segment")
    devices = {seg["device"] for seg in snap["segments"]}
    assert max(devices, default=0) < len(snap["device_traces"]) or not devices, (devices, len(snap["device_traces"]))
    for d, trace in enumerate(snap["device_traces"]):
        last = 0
        for i, e in enumerate(trace):
            assert e["action"] in ACTIONS, e
            # An oom has device_free (the driver's free bytes) where the others have addr.
            for key in ("device_free" if e["action"] == "oom" else "addr", "size", "stream", "time_us"):
                assert isinstance(e[key], int), (key, e)
            assert e["size"] > 0 and e["time_us"] >= last, e
            last = e["time_us"]
            check_frames(e["frames"], "trace entry")
            if e["action"] == "free_requested":
                nxt = trace[i + 1]
                assert nxt["action"] == "free_completed" and nxt["addr"] == e["addr"], (e, nxt)


def replay_backwards(snap):
    """The viewer's Allocator State History: from the end state back to the first event. Every
    block must lie in a segment at every step (checked where a step can break it)."""
    for d, trace in enumerate(snap["device_traces"]):
        segments = {s["address"]: s["total_size"] for s in snap["segments"] if s["device"] == d}
        seg_addrs = sorted(segments)
        blocks = {}
        for s in snap["segments"]:
            if s["device"] != d:
                continue
            for b in s["blocks"]:
                if b["state"] == "active_allocated":
                    blocks[b["address"]] = b["size"]
        block_addrs = sorted(blocks)

        def inside(addr, size):
            i = bisect.bisect_right(seg_addrs, addr) - 1
            return i >= 0 and addr + size <= seg_addrs[i] + segments[seg_addrs[i]]

        for a, n in blocks.items():
            assert inside(a, n), f"device {d}: block {a:#x} lies in no segment"
        for e in reversed(trace):
            if e["action"] == "oom":  # nothing was allocated
                continue
            a, n = e["addr"], e["size"]
            if e["action"] == "free_completed":
                assert a not in blocks, f"device {d}: {a:#x} freed twice"
                blocks[a] = n
                bisect.insort(block_addrs, a)
                assert inside(a, n), f"device {d}: block {a:#x} lies in no segment"
            elif e["action"] == "alloc":
                assert blocks.pop(a, None) == n, f"device {d}: alloc of {a:#x} meets no block of {n} bytes"
                block_addrs.remove(a)
            elif e["action"] == "segment_free":
                assert a not in segments, f"device {d}: segment {a:#x} freed twice"
                segments[a] = n
                bisect.insort(seg_addrs, a)
            elif e["action"] == "segment_alloc":
                assert segments.pop(a, None) == n, f"device {d}: segment_alloc of {a:#x} meets no segment"
                seg_addrs.remove(a)
                i = bisect.bisect_left(block_addrs, a)
                assert i == len(block_addrs) or block_addrs[i] >= a + n, \
                    f"device {d}: block {block_addrs[i]:#x} left without its segment {a:#x}"


def names(frames):
    return [f["name"] for f in frames]


def check_synthetic(snap):
    A1 = A3 = 0x7f0000000000
    A2, A4, B1 = 0x7f0000100000, 0x7f0000200000, 0x7f1000000000
    got = [[(e["action"], e["addr"], e["size"]) for e in t] for t in snap["device_traces"]]
    want = [
        [("free_requested", A1, MiB), ("free_completed", A1, MiB), ("segment_free", A1, MiB),
         ("segment_alloc", A3, MiB), ("alloc", A3, MiB), ("free_requested", A3, MiB),
         ("free_completed", A3, MiB), ("segment_free", A3, MiB), ("segment_alloc", A4, MiB), ("alloc", A4, MiB)],
        [("segment_alloc", B1, 3 * MiB), ("alloc", B1, 3 * MiB)],
    ]
    assert got == want, f"traces:\n{got}\nwant\n{want}"
    segs = [(s["device"], s["address"], s["total_size"], s["blocks"][0]["state"]) for s in snap["segments"]]
    assert segs == [(0, A2, MiB, "active_allocated"), (0, A4, MiB, "active_allocated"),
                    (1, B1, 3 * MiB, "active_allocated")], segs
    # The ring's events 2..9, 1 ms apart: time_us of event i is start + (i + 1) ms.
    times = sorted({e["time_us"] for t in snap["device_traces"] for e in t})
    assert [t - times[0] for t in times] == [0, 2000, 3000, 4000, 5000], times  # events 2, 4, 5, 6, 7
    fr = snap["device_traces"][0][4]["frames"]
    assert names(fr) == ["fake_alloc_a", "fake_main"], fr
    assert all(f["filename"].endswith("stats_fake_file.cpp") and f["line"] > 0 for f in fr), fr
    assert names(snap["device_traces"][1][1]["frames"]) == ["fake_alloc_b", "fake_main"]
    assert names(snap["segments"][2]["blocks"][0]["frames"]) == ["fake_alloc_b", "fake_main"]
    print("synthetic: the timeline, segments and frames stats_fake_file wrote")


def check_program(snap, small):
    def site(e):
        for f in e["frames"][:6]:
            for n in ("site_leak", "site_reuse", "site_pinned", "site_only_a", "site_only_b", "site_grow", "site_small"):
                if f["name"] == n or f["name"].startswith(n + "(") or ("::" + n + "(") in f["name"]:
                    assert f["filename"].endswith("stats_tool_program.cpp") and f["line"] > 0, f
                    return n
        return None
    trace = snap["device_traces"][0]
    allocs = [(site(e), e["size"]) for e in trace if e["action"] == "alloc"]
    frees = [e for e in trace if e["action"] == "free_completed"]
    print("allocs:", allocs[:8], "..." if len(allocs) > 8 else "")
    assert allocs.count(("site_leak", MiB)) == 3, allocs
    assert allocs.count(("site_reuse", 64 * KiB)) == 4, allocs
    assert all(s != "site_pinned" for s, _ in allocs), "pinned memory in the device timeline"
    assert allocs.count(("site_small", 4 * KiB)) == small, allocs
    assert len(allocs) == 7 + small, allocs
    reuse_addrs = {e["addr"] for e in trace if e["action"] == "alloc" and site(e) == "site_reuse"}
    assert len(frees) == 4 and all(f["size"] == 64 * KiB and f["addr"] in reuse_addrs for f in frees), frees
    # The live blocks, in the pool's segments (many small blocks share one: its packing).
    live = [(site(b), b["size"]) for s in snap["segments"] for b in s["blocks"] if b["state"] == "active_allocated"]
    assert sorted(live) == [("site_leak", MiB)] * 3 + [("site_small", 4 * KiB)] * small, live
    assert len(snap["segments"]) < len(live), f"{len(snap['segments'])} segments for {len(live)} blocks"
    print(f"program: 3 x 1 MiB from site_leak and {small} x 4 KiB from site_small live in "
          f"{len(snap['segments'])} segments, 4 x 64 KiB from site_reuse freed, no pinned memory")


def main():
    path, mode = sys.argv[1], sys.argv[2]
    data = open(path, "rb").read()
    check_opcodes(data)
    snap = pickle.loads(data)
    check_structure(snap)
    replay_backwards(snap)
    if mode == "--synthetic":
        check_synthetic(snap)
    elif mode == "--program":
        check_program(snap, int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(f"{path}: a memory_viz snapshot the viewer can read ({len(data)} bytes)")


if __name__ == "__main__":
    main()

"""Known Python call sites for the Python frame test (stats_python_test.sh).

Run as a script (under LD_PRELOAD=libpoolshim.so POOLSHIM_STATS=python, with the simulator's
libcudart.so.13 on LD_LIBRARY_PATH) it allocates through ctypes from the lines marked "# site: NAME"
below, with the byte counts in SITES; with --thread, three threading.Threads allocate at once too;
with --hold, it stops after leak(), says "ready" and waits to be killed. Run with
--check REPORT.json [--thread] [--hold] it checks that
`poolshim-stats report --format json --top 0` names each of those sites by this file's own lines,
innermost Python frame first, with exact bytes; with --check-native REPORT.json, that a run under a
Python that poolshim does not support fell back to native frames only.
"""
import ctypes
import json
import sys
import threading
import time

MiB = 1 << 20

# name: (allocations, bytes allocated, bytes live at exit, Python frames innermost first as
# (function, marker of the line)); a marker names the "# site:" comment on the line it stands for.
SITES = {
    "direct": (3, 9 * MiB, 0, [("direct_pair", "direct"), ("main", "call-direct")]),
    "nested": (2, 10 * MiB, 0, [("malloc", "malloc"), ("Model.load", "nested"), ("main", "call-nested")]),
    "init": (4, 4 * MiB, 0, [("malloc", "malloc"), ("Model.__init__", "init"), ("main", "call-init")]),
    "generator": (2, 12 * MiB, 0, [("malloc", "malloc"), ("blocks", "generator"), ("main", "call-generator")]),
    "leak": (1, 7 * MiB, 7 * MiB, [("malloc", "malloc"), ("leak", "leak"), ("main", "call-leak")]),
    "unicode": (1, 1 * MiB, 0, [("malloc", "malloc"), ("分配_größe", "unicode"), ("main", "call-unicode")]),
}
for _site in SITES.values():
    _site[3].append(("<module>", "call-main"))
THREAD_SITES = {  # threading.py's own frames (lines vary with the version) below worker
    "thread": (12, 24 * MiB, 0, [("malloc", "malloc"), ("worker", "thread"), ("Thread.run", None),
                               ("Thread._bootstrap_inner", None), ("Thread._bootstrap", None)]),
}


def runtime():
    cudart = ctypes.CDLL("libcudart.so.13")
    cudart.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
    cudart.cudaMalloc.restype = ctypes.c_int
    cudart.cudaFree.argtypes = [ctypes.c_void_p]
    cudart.cudaFree.restype = ctypes.c_int
    return cudart


cudart = None
kept = []


def malloc(size):
    p = ctypes.c_void_p()
    err = cudart.cudaMalloc(ctypes.byref(p), size)  # site: malloc
    if err != 0:
        raise SystemExit(f"cudaMalloc({size}) failed: {err}")
    return p.value


def free(ptr):
    err = cudart.cudaFree(ctypes.c_void_p(ptr))
    if err != 0:
        raise SystemExit(f"cudaFree failed: {err}")


def direct_pair():
    p = ctypes.c_void_p()
    if cudart.cudaMalloc(ctypes.byref(p), 3 * MiB) != 0:  # site: direct
        raise SystemExit("cudaMalloc failed")
    free(p.value)


class Model:
    def __init__(self):
        self.block = malloc(1 * MiB)  # site: init

    def load(self):
        return malloc(5 * MiB)  # site: nested


def blocks(n):
    for _ in range(n):
        yield malloc(6 * MiB)  # site: generator


def leak():
    kept.append(malloc(7 * MiB))  # site: leak


def 分配_größe():
    free(malloc(1 * MiB))  # site: unicode


def worker(start):
    start.wait()  # all three at once: they intern the same code objects concurrently
    for _ in range(4):
        free(malloc(2 * MiB))  # site: thread


def main(with_thread, hold):
    global cudart
    cudart = runtime()
    for _ in range(3):
        direct_pair()  # site: call-direct
    m = Model.__new__(Model)
    for _ in range(2):
        free(m.load())  # site: call-nested
    for _ in range(4):
        free(Model().block)  # site: call-init
    for p in blocks(2):  # site: call-generator
        free(p)
    leak()  # site: call-leak
    if hold:
        print("ready", flush=True)
        time.sleep(120)
    分配_größe()  # site: call-unicode
    if with_thread:
        start = threading.Barrier(3)
        threads = [threading.Thread(target=worker, args=(start,)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    print("done")


# --- the checks (run without the shim, on the report) ---

def marker_lines():
    lines = {}
    with open(__file__, encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            if "# site: " in text and not text.lstrip().startswith("#"):
                lines[text.split("# site: ")[1].split()[0]] = number
    return lines


def python_frames(site):
    return [f for f in site["frames"] if f["module"] == "[python]"]


def check(report_path, with_thread, hold):
    report = json.load(open(report_path, encoding="utf-8"))
    lines = marker_lines()
    me = __file__.rsplit("/", 1)[-1]
    want = dict(SITES)
    if hold:  # killed after leak(): what comes after it never ran
        del want["unicode"]
        assert report["state"] == "killed", report["state"]
    if with_thread:
        want.update(THREAD_SITES)
    found_ids = set()
    for name, (allocs, total, live, frames) in want.items():
        expect = [(fn, lines[m] if m else None) for fn, m in frames]

        def matches(site):  # exactly these Python frames, innermost first
            py = python_frames(site)
            if len(py) != len(expect):
                return False
            for got, (fn, line) in zip(py, expect):
                if got["function"] != fn:
                    return False
                if line is not None and (not got["file"].endswith("/" + me) or got["line"] != line):
                    return False
            return True

        hits = [s for s in report["sites"] if matches(s)]
        assert len(hits) == 1, f"{name}: {len(hits)} sites match {expect}; sites: " + json.dumps(
            [[f"{f['function']}:{f['line']}" for f in python_frames(s)] for s in report["sites"]])
        s = hits[0]
        got = (s["allocs"], s["bytes_allocated"], s["live_bytes"])
        assert got == (allocs, total, live), f"{name}: got {got}, want {(allocs, total, live)}"
        # Python frames stand where the eval loop's did: nothing of the eval loop is left.
        py = python_frames(s)
        assert all(f["line"] > 0 and f["file"].endswith(".py") for f in py), py
        assert not any("_PyEval_EvalFrameDefault" in f["function"] for f in s["frames"]), name
        # The interpreter's, ctypes', libffi's, the CUDA runtime's and libc's frames are hidden: what
        # is left is the script's (a native extension's own frames would stay; ctypes has none).
        native = [f"{f['function']} ({f['module'].rsplit('/', 1)[-1]})" for f in s["frames"] if f["module"] != "[python]"]
        assert not native, f"{name}: native frames shown: {native}"
        assert s["hidden_frames"] > 0, name
        found_ids.add(s["id"])
        print(f"{name}: {allocs} allocations, {total} bytes, {live} live at "
              + " <- ".join(f"{f['function']} ({f['file'].rsplit('/', 1)[-1]}:{f['line']})" for f in py))
    stray = [s for s in report["sites"] if s["id"] not in found_ids and s["allocs"] > 0]
    assert not stray, "sites nobody made: " + json.dumps(stray)[:2000]
    assert report["live_bytes"] == 7 * MiB, report["live_bytes"]
    print("python frames: as the program promises")


def check_all_frames(report_path):
    """report --all-frames: the frames hidden by default are there, interleaved with the script's."""
    report = json.load(open(report_path, encoding="utf-8"))
    assert report["all_frames"] is True
    base = lambda f: f["module"].rsplit("/", 1)[-1]
    for s in report["sites"]:
        if s["allocs"] == 0 or not python_frames(s):
            continue
        mods = [base(f) for f in s["frames"]]
        assert mods[0].startswith("libcudart"), f"innermost frame {s['frames'][0]}: not the runtime's"
        assert any(m.startswith("libffi") or m.startswith("_ctypes") for m in mods), mods
        assert any(m.startswith("python") or m.startswith("libpython") for m in mods), mods
        assert s["hidden_frames"] == 0 and s["folded_stacks"] == 1
    print("--all-frames: the runtime's, ctypes', libffi's and the interpreter's frames are back")


def check_native(report_path):
    report = json.load(open(report_path, encoding="utf-8"))
    sites = [s for s in report["sites"] if s["allocs"] > 0]
    assert sites, "no sites recorded"
    assert sum(s["bytes_allocated"] for s in sites) == sum(v[1] for v in SITES.values()), sites
    py = [f for s in sites for f in s["frames"] if f["module"] == "[python]"]
    assert not py, f"Python frames from an unsupported interpreter: {py[:3]}"
    assert any("EvalFrame" in f["function"] for s in sites for f in s["frames"]), \
        "the interpreter's native frames are missing"
    print(f"native frames only: {len(sites)} sites, no Python frames")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--check":
        check(sys.argv[2], "--thread" in sys.argv[3:], "--hold" in sys.argv[3:])
    elif len(sys.argv) > 2 and sys.argv[1] == "--check-all-frames":
        check_all_frames(sys.argv[2])
    elif len(sys.argv) > 2 and sys.argv[1] == "--check-native":
        check_native(sys.argv[2])
    else:
        main("--thread" in sys.argv[1:], "--hold" in sys.argv[1:])  # site: call-main

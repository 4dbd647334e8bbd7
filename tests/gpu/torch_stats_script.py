"""A PyTorch script with known call sites, for the real-GPU call-site statistics check
(torch_stats_check.sh). Needs a CUDA GPU and PyTorch; the simulator cannot run PyTorch.

  torch_stats_script.py sites           allocate tensors from the lines marked "# site: NAME" (run it
                                        with PYTORCH_NO_CUDA_MEMORY_CACHING=1, so that every tensor is
                                        its own cudaMalloc), keep one, print "done"
  torch_stats_script.py pairs N         N allocate+free pairs of a 4 MiB tensor from one line; prints
                                        "ns_per_pair=X" (the overhead comparison)
  torch_stats_script.py --check R.json  checks `poolshim-stats report --format json --top 0` of a
                                        `sites` run: each site named by this file's own line, with
                                        exact counts and bytes, innermost Python frame first
  torch_stats_script.py --check-cached R.json  checks a `sites` run under PyTorch's caching allocator:
                                        the cache's growth is labelled as PyTorch's, with a hint
"""
import json
import sys
import time

MiB = 1 << 20

# name: (allocations, bytes each, live at exit, Python frames innermost first as (function, marker));
# live None: not checked (the kept tensor is freed, or not, when the interpreter tears down)
SITES = {
    "weights": (3, 8 * MiB, 0, [("load_weights", "weights"), ("main", "call-weights")]),
    "layer": (4, 2 * MiB, 0, [("Layer.forward", "layer"), ("main", "call-layer")]),
    "kept": (1, 6 * MiB, None, [("keep", "kept"), ("main", "call-kept")]),
}
kept = []


def load_weights(torch):
    for _ in range(3):
        w = torch.empty(8 * MiB, dtype=torch.uint8, device="cuda")  # site: weights
        del w


class Layer:
    def forward(self, torch):
        return torch.empty(2 * MiB, dtype=torch.uint8, device="cuda")  # site: layer


def keep(torch):
    kept.append(torch.empty(6 * MiB, dtype=torch.uint8, device="cuda"))  # site: kept


def main():
    import torch
    torch.cuda.init()
    load_weights(torch)  # site: call-weights
    layer = Layer()
    for _ in range(4):
        out = layer.forward(torch)  # site: call-layer
        del out
    keep(torch)  # site: call-kept
    torch.cuda.synchronize()
    print("done", flush=True)


def pairs(n):
    import torch
    torch.cuda.init()
    for _ in range(n // 10 + 1):  # warm: the shim's pools, the stack tables, PyTorch's own state
        torch.empty(4 * MiB, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        torch.empty(4 * MiB, dtype=torch.uint8, device="cuda")  # allocated and freed at once
    torch.cuda.synchronize()
    print(f"ns_per_pair={(time.perf_counter() - t0) / n * 1e9:.1f}", flush=True)


def marker_lines():
    lines = {}
    with open(__file__, encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            if "# site: " in text and not text.lstrip().startswith("#"):
                lines[text.split("# site: ")[1].split()[0]] = number
    return lines


def check(report_path):
    report = json.load(open(report_path, encoding="utf-8"))
    lines = marker_lines()
    me = __file__.rsplit("/", 1)[-1]
    for name, (allocs, size, live, frames) in SITES.items():
        want = [(fn, lines[m]) for fn, m in frames]

        def matches(site):  # this script's innermost Python frames are exactly these
            # (PyTorch's own Python wrappers, in some releases, may stand inside them)
            py = [f for f in site["frames"] if f["module"] == "[python]" and f["file"].endswith("/" + me)]
            return [(f["function"], f["line"]) for f in py[:len(want)]] == want

        hits = [s for s in report["sites"] if matches(s)]
        assert len(hits) == 1, f"{name}: {len(hits)} sites match {want}; sites: " + json.dumps(
            [[f"{f['function']}:{f['line']}" for f in s["frames"] if f["module"] == "[python]"][:4]
             for s in report["sites"]])[:3000]
        s = hits[0]
        got = (s["allocs"], s["bytes_allocated"], s["live_bytes"] if live is not None else None)
        assert got == (allocs, allocs * size, live), f"{name}: got {got}, want {(allocs, allocs * size, live)}"
        assert s.get("framework") in (None, ""), f"{name}: labelled {s.get('framework')} without a cache"
        print(f"{name}: {allocs} x {size} bytes at " + " <- ".join(f"{fn} ({me}:{line})" for fn, line in want))
    print("torch sites: as the script promises")


def check_cached(report_path):
    report = json.load(open(report_path, encoding="utf-8"))
    names = [f["name"] for f in report["frameworks"]]
    assert any("PyTorch" in n for n in names), f"no PyTorch cache label; frameworks: {names}"
    fw = next(f for f in report["frameworks"] if "PyTorch" in f["name"])
    assert "PYTORCH" in fw["hint"], fw
    print(f"cached run: {fw['sites']} site(s) labelled {fw['name']}; hint: {fw['hint']}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "--check-cached":
        check_cached(sys.argv[2])
    elif len(sys.argv) == 2 and sys.argv[1] == "sites":
        main()
    elif len(sys.argv) == 3 and sys.argv[1] == "pairs":
        pairs(int(sys.argv[2]))
    else:
        sys.exit(__doc__)

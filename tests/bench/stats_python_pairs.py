"""cudaMalloc+cudaFree pairs from Python through ctypes, two Python calls deep, for the cost of
POOLSHIM_STATS=off|native|python (stats_python_overhead.sh). Prints "ns_per_pair=X" (best of 3).
usage: python3 stats_python_pairs.py PAIRS"""
import ctypes
import sys
import time

cudart = ctypes.CDLL("libcudart.so.13")
cudart.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
cudart.cudaFree.argtypes = [ctypes.c_void_p]


def pair(p):
    if cudart.cudaMalloc(ctypes.byref(p), 4096) != 0 or cudart.cudaFree(p) != 0:
        raise SystemExit("cudaMalloc/cudaFree failed")


def loop(n):
    p = ctypes.c_void_p()
    for _ in range(n):
        pair(p)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    loop(n // 10 + 1)  # warm: pools, tables
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        loop(n)
        ns = (time.perf_counter() - t0) / n * 1e9
        best = ns if best is None else min(best, ns)
    print(f"ns_per_pair={best:.0f}")


main()

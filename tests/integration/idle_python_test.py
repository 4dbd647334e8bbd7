"""poolshim.trim / release_all / preallocate (issue #17) from Python: under the shim (re-run of this
script with LD_PRELOAD) they reach the shim's C API and report the bytes the pools let go; without
it they raise ShimNotLoaded. CUDA is the simulator's libcudart through ctypes (no framework needed).
usage: idle_python_test.py --shim libpoolshim.so --package daemon/buffers/python
"""
import argparse
import ctypes
import os
import subprocess
import sys

MIB = 1 << 20


def fail(what):
    print(f"idle_python_test: FAIL: {what}", file=sys.stderr)
    sys.exit(1)


def under_shim():
    import poolshim
    if not poolshim.shim_loaded():
        fail("the shim's C API is not found under LD_PRELOAD")
    rt = ctypes.CDLL("libcudart.so.13")
    rt.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
    rt.cudaFree.argtypes = [ctypes.c_void_p]
    live, idle = ctypes.c_void_p(), ctypes.c_void_p()
    if rt.cudaMalloc(ctypes.byref(live), 4 * MIB) != 0 or rt.cudaMalloc(ctypes.byref(idle), 32 * MIB) != 0:
        fail("cudaMalloc")
    rt.cudaFree(idle)
    got = poolshim.trim(1)
    print(f"poolshim.trim(1) = {got}")
    if got != 32 * MIB:
        fail(f"trim gave back {got} bytes, want the idle 32 MiB block")
    if poolshim.release_all() != 0:
        fail("release_all found more idle memory (the live block is not idle)")
    pre = poolshim.preallocate("cuda:0", 6 * MIB)
    print(f"poolshim.preallocate('cuda:0', 6 MiB) = {pre}")
    if pre != 6 * MIB:
        fail("preallocate")
    if poolshim.release_all() != 6 * MIB:
        fail("release_all should give the preallocation back")
    try:
        poolshim.trim(-1)
        fail("trim(-1) accepted")
    except ValueError:
        pass
    rt.cudaFree(live)
    print("idle_python_test: OK")


def fresh_process():
    """preallocate as a program's first CUDA-related call (before any framework initialised CUDA):
    the pool takes the memory then, rather than answering 0 for want of cuInit."""
    import poolshim
    pre = poolshim.preallocate(0, 4 * MIB)
    print(f"first call: poolshim.preallocate(0, 4 MiB) = {pre}")
    if pre != 4 * MIB:
        fail(f"preallocate before any CUDA call took {pre} bytes, want 4 MiB")
    if poolshim.release_all() != 4 * MIB:
        fail("release_all should give the preallocation back")
    print("idle_python_test fresh: OK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shim")
    ap.add_argument("--package", required=True)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--fresh", action="store_true")
    a = ap.parse_args()
    sys.path.insert(0, a.package)
    if a.child:
        under_shim()
        return
    if a.fresh:
        fresh_process()
        return
    import poolshim
    if poolshim.shim_loaded():
        fail("shim_loaded() without the shim")
    try:
        poolshim.trim(1)
        fail("trim without the shim did not raise ShimNotLoaded")
    except poolshim.ShimNotLoaded:
        pass
    env = dict(os.environ, LD_PRELOAD=a.shim, POOLSHIM_DAEMON="0", POOLSHIM_IDLE_RELEASE_MS="0")
    r = subprocess.run([sys.executable, __file__, "--child", "--package", a.package], env=env)
    if r.returncode != 0:
        sys.exit(r.returncode)
    r = subprocess.run([sys.executable, __file__, "--fresh", "--package", a.package], env=env)
    sys.exit(r.returncode)


if __name__ == "__main__":
    main()

"""The preloaded shim's pool controls (issue #17), for Python programs run under libpoolshim.so.

    import poolshim
    poolshim.trim(1 << 30)          # give back at least 1 GiB of idle pool memory now: bytes given
    poolshim.release_all()          # every idle byte, preallocations included
    poolshim.preallocate(0, 2 << 30)  # device 0's pool takes 2 GiB now and keeps it

Idle memory also goes back by itself (POOLSHIM_IDLE_RELEASE_MS) and when poolshimd asks for it on
behalf of another process. Only whole free segments go, never one holding a block in use. These find
the shim's exports in the running process (ctypes, no linking): without the shim preloaded they
raise ShimNotLoaded.
"""
import ctypes

__all__ = ["ShimNotLoaded", "trim", "release_all", "preallocate", "shim_loaded"]


class ShimNotLoaded(RuntimeError):
    """libpoolshim.so is not preloaded into this process (LD_PRELOAD, or scripts/poolshim run)."""


def _fn(name, restype, argtypes):
    try:
        f = getattr(ctypes.CDLL(None), name)  # the process's global scope: the preloaded shim's export
    except AttributeError:
        raise ShimNotLoaded(f"{name}: libpoolshim.so is not loaded in this process") from None
    f.restype = restype
    f.argtypes = argtypes
    return f


def shim_loaded():
    """True when libpoolshim.so is preloaded (its C API answers)."""
    try:
        _fn("poolshim_trim", ctypes.c_size_t, [ctypes.c_size_t])
        return True
    except ShimNotLoaded:
        return False


def trim(nbytes):
    """Gives back at least `nbytes` of idle memory (device first, then pinned) if the pools hold that
    much; returns the bytes given back (whole segments: possibly more)."""
    if nbytes < 0:
        raise ValueError("nbytes must be >= 0")
    return _fn("poolshim_trim", ctypes.c_size_t, [ctypes.c_size_t])(nbytes)


def release_all():
    """Gives back every idle byte of every pool, preallocated memory included; returns the bytes."""
    return _fn("poolshim_release_all", ctypes.c_size_t, [])()


def preallocate(device, nbytes):
    """Device `device`'s pool takes `nbytes` now and keeps it (small segments); returns the bytes
    taken (less when the device ran out). `device` is an ordinal or "cuda:N"."""
    if isinstance(device, str):
        if not device.startswith("cuda:"):
            raise ValueError(f"device {device!r}: want an ordinal or 'cuda:N'")
        device = int(device[5:])
    if device < 0 or nbytes < 0:
        raise ValueError("device and nbytes must be >= 0")
    return _fn("poolshim_preallocate", ctypes.c_size_t, [ctypes.c_int, ctypes.c_size_t])(device, nbytes)

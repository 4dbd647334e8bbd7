#!/usr/bin/env python3
"""Reads or patches fields of a stats file's header (struct poolshim_stats_header in
include/poolshim/stats_file.h, mirrored here with ctypes), for tests that need a damaged, hostile
or otherwise unusual file (stats_test.sh, stats_tool_test.sh).

usage: stats_header.py FILE [FIELD ...] [FIELD=VALUE ...]
  FIELD        prints the field's value (one line each, in order)
  FIELD=VALUE  writes it in place: an integer (decimal, 0x.., negative for signed fields, or
               "now-SECONDS" for a CLOCK_REALTIME nanosecond stamp SECONDS ago), or for exe and
               cmdline the text (\\xHH escapes allowed), written without a terminating NUL when it
               fills the field

The mirror is checked against the file's header_size: a layout that no longer matches is an error
(exit 2), never a patch in the wrong place."""
import ctypes
import sys
import time

u32, u64, i32, i64 = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int32, ctypes.c_int64


class Header(ctypes.Structure):
    _fields_ = [
        ("magic", ctypes.c_char * 8), ("version", u32), ("header_size", u32), ("file_size", u64),
        ("pid", i32), ("uid", u32), ("start_ns", u64), ("end_ns", u64),
        ("exe", ctypes.c_ubyte * 256), ("cmdline", ctypes.c_ubyte * 512),
        # flags: the POOLSHIM_STATS_FLAG_* bits of include/poolshim/stats_file.h (1 stacks dropped,
        # 2 stacks off, 4 live table full); tests patch them as numbers.
        ("depth_cap", u32), ("flags", u32),
        ("modules_offset", u64), ("module_capacity", u32), ("module_count", u32),
        ("slots_offset", u64), ("slot_count", u32), ("arena_frames", u32), ("arena_offset", u64),
        ("sites_offset", u64), ("kinds_offset", u64),
        ("live_offset", u64), ("live_capacity", u32), ("reserved0", u32),
        ("process_live", i64), ("process_peak", i64), ("peak_epoch", u64), ("peak_ns", u64),
        ("events", u64), ("untracked_frees", u64),
        ("shards_offset", u64), ("shard_count", u32), ("shard_size", u32),
        ("events_offset", u64), ("event_capacity", u32), ("reserved1", u32), ("event_next", u64),
        ("python_offset", u64), ("python_size", u64),
        ("device_pool_hits", u64), ("device_pool_allocs", u64),
        ("host_pool_hits", u64), ("host_pool_allocs", u64),
        ("timeline_offset", u64), ("timeline_capacity", u32), ("reserved2", u32),
        ("kind_sizes", u64 * (5 * 24)),
    ]


def value_of(field, text):
    if field in ("exe", "cmdline"):
        raw = text.encode("utf-8", "surrogateescape").decode("unicode_escape").encode("latin-1")
        size = getattr(Header, field).size
        if len(raw) > size:
            raise SystemExit(f"stats_header: {field} takes at most {size} bytes")
        return raw
    if text.startswith("now-"):
        return time.time_ns() - int(float(text[4:]) * 1e9)
    return int(text, 0)


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1]
    with open(path, "r+b") as f:
        raw = bytearray(f.read(ctypes.sizeof(Header)))
        if len(raw) < ctypes.sizeof(Header):
            print(f"stats_header: {path}: shorter than a header", file=sys.stderr)
            return 2
        h = Header.from_buffer(raw)
        if h.header_size != ctypes.sizeof(Header):
            print(f"stats_header: the file's header_size {h.header_size} is not this mirror's "
                  f"{ctypes.sizeof(Header)}: update stats_header.py from stats_file.h", file=sys.stderr)
            return 2
        changed = False
        for arg in sys.argv[2:]:
            field, eq, text = arg.partition("=")
            if field not in dict(Header._fields_):
                print(f"stats_header: no field {field}", file=sys.stderr)
                return 2
            if not eq:
                v = getattr(h, field)
                print(bytes(v).rstrip(b"\0").decode("utf-8", "replace") if field in ("exe", "cmdline")
                      else v.decode() if isinstance(v, bytes) else v)
                continue
            v = value_of(field, text)
            if field in ("exe", "cmdline"):
                arr = getattr(h, field)
                ctypes.memset(ctypes.addressof(arr), 0, ctypes.sizeof(arr))
                ctypes.memmove(ctypes.addressof(arr), v, len(v))
            else:
                ctype = dict(Header._fields_)[field]
                setattr(h, field, ctype(v).value)  # wraps like the C field would
            changed = True
        if changed:
            f.seek(0)
            f.write(raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())

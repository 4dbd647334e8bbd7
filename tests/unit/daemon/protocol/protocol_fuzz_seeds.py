#!/usr/bin/env python3
"""Writes one valid request per operation (and one reply) into the fuzz corpus folder given, so
that libFuzzer starts past the magic and version checks (protocol.h's layout)."""
import struct
import sys

MAGIC, VERSION, SIZE = 0x44485350, 2, 256  # include/poolshim/protocol.h's k_magic, k_version
SLAB = 64 << 20
ops = {1: 0, 2: SLAB, 3: 7, 4: SLAB, 5: 0, 6: 2, 7: 0, 8: 0, 9: 4096, 10: 0, 11: 0, 12: 2 << 20}  # op -> arg0
folder = sys.argv[1]
for op, arg0 in ops.items():
    arg1 = 512 if op == 9 else 0
    payload = bytes(range(1, 65)) if op == 9 else bytes(range(1, 17)) if op in (10, 11, 12) else b""
    payload += bytes(128 - len(payload))
    rec = struct.pack("<IHHII4Q", MAGIC, VERSION, op, SIZE, op, arg0, arg1, 0, 0) + payload + bytes(80)
    assert len(rec) == SIZE
    with open(f"{folder}/request-op{op}", "wb") as f:
        f.write(rec)
reply = struct.pack("<IHHIIiI6Q", MAGIC, VERSION, 5, SIZE, 7, 0, 0, 1, 2, 3, 4, 5, 6) + bytes(128) + bytes(56)
assert len(reply) == SIZE
with open(f"{folder}/reply-stats", "wb") as f:
    f.write(reply)

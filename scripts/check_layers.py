#!/usr/bin/env python3
"""Fails on any #include against the arrows of poolshim's layers (shim/CMakeLists.txt).

Every quoted include of a product file (shim/, daemon/, include/) is resolved against the include
roots its target has; the folder it lands in must be one its own folder may use. Also: the pool
includes no CUDA header, and only daemon/protocol/log_sink.cpp (spdlog compiled once, for the shim
and poolshimd) includes spdlog or fmt.
  scripts/check_layers.py [--root DIR]      check a tree (default: this checkout)
  scripts/check_layers.py --plant           show that a planted include fails, in a temporary copy
"""
import argparse
import os
import re
import shutil
import sys
import tempfile

# Who may include whom, inside the shim: the data flow, hooks -> dispatch -> route -> source ->
# pool, with stats and intercept beside it on base. "public" is include/poolshim/.
SHIM_ARROWS = {
    "front": {"dispatch", "intercept", "base", "public"},
    "dispatch": {"dispatch", "route", "stats", "intercept", "source", "pool", "base", "public"},
    "route": {"route", "source", "pool", "base", "public"},
    "source": {"source", "pool", "base", "public"},
    "stats": {"stats", "base", "public"},
    "intercept": {"intercept", "base", "public"},
    "pool": {"pool"},
    "base": {"base", "public"},
}
# The daemon's folders each use their own folder and the public headers, nothing of the shim;
# replay (poolshim-replay) runs the pool core on traces, so it may use the pool (pure C++, no CUDA)
# and poolshim-stats' reader of the stats file's event ring.
DAEMON_ARROWS = {
    "poolshimd": {"poolshimd", "public"},
    "protocol": {"protocol", "public"},
    "stats": {"daemon-stats", "public"},
    "replay": {"replay", "pool", "daemon-stats", "public"},
}
# The only file that compiles spdlog (header-only, the slowest headers of the build).
SPDLOG_FILES = ("daemon/protocol/log_sink.cpp",)
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
SOURCE_EXT = (".h", ".hpp", ".cpp", ".cc", ".c", ".inc")


def layer_of(rel):
    """The layer of a product file (path relative to the root), or None for files not checked."""
    parts = rel.split("/")
    if parts[0] == "include":
        return "public"
    if parts[0] == "shim":
        if len(parts) == 2:
            return "front"
        return parts[1] if parts[1] in SHIM_ARROWS else "unknown-shim-folder"
    if parts[0] == "daemon" and len(parts) >= 3:
        return "daemon-stats" if parts[1] == "stats" else parts[1]
    return None


def roots_of(rel):
    """The include roots a file's target compiles with (CMake's target_include_directories)."""
    top = rel.split("/")[0]
    if top == "shim":
        return ["shim", "include"]
    if top == "daemon":
        return ["daemon", "shim", "include"] if rel.startswith("daemon/replay/") else ["daemon", "include"]
    return ["include"]


def allowed_for(layer):
    if layer in SHIM_ARROWS:
        return SHIM_ARROWS[layer]
    if layer == "daemon-stats":
        return DAEMON_ARROWS["stats"]
    if layer in DAEMON_ARROWS:
        return DAEMON_ARROWS[layer]
    return {"public"}


def check(root):
    problems = []
    files = includes = 0
    for top in ("shim", "daemon", "include"):
        for dirpath, _, names in os.walk(os.path.join(root, top)):
            for name in sorted(names):
                if not name.endswith(SOURCE_EXT):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                layer = layer_of(rel)
                if layer is None:
                    continue
                files += 1
                if layer == "unknown-shim-folder":
                    problems.append(f"{rel}: shim folder not in the layer table (scripts/check_layers.py)")
                    continue
                with open(path, encoding="utf-8", errors="replace") as f:
                    lines = f.readlines()
                for n, line in enumerate(lines, 1):
                    m = INCLUDE_RE.match(line)
                    if not m:
                        continue
                    includes += 1
                    kind, target = m.groups()
                    where = f"{rel}:{n}"
                    if kind == "<":
                        if layer == "pool" and target.startswith(("cuda", "cudaTypedefs")):
                            problems.append(f"{where}: <{target}>: the pool is pure C++, no CUDA header")
                        if target.startswith(("spdlog/", "fmt/")) and rel not in SPDLOG_FILES:
                            problems.append(f"{where}: <{target}>: spdlog/fmt only in {' and '.join(SPDLOG_FILES)} "
                                            "(the loggers use poolshim/log_sink.h: spdlog compiles once)")
                        continue
                    hit = None
                    for r in [os.path.dirname(rel)] + roots_of(rel):
                        cand = os.path.normpath(os.path.join(r, target))
                        if os.path.isfile(os.path.join(root, cand)):
                            hit = cand
                            break
                    if hit is None:
                        problems.append(f'{where}: "{target}" is not under an include root of this file')
                        continue
                    to = layer_of(hit)
                    if to is None:
                        problems.append(f'{where}: "{target}" resolves to {hit}, outside the product')
                        continue
                    if to not in allowed_for(layer):
                        problems.append(f'{where}: "{target}": {layer} may not include {to} '
                                        f"(it may include: {', '.join(sorted(allowed_for(layer)))})")
    return files, includes, problems


def report(root):
    files, includes, problems = check(root)
    for p in problems:
        print(p)
    verdict = "FAILED" if problems else "ok"
    print(f"check_layers: {files} files, {includes} includes, {len(problems)} against the arrows: {verdict}")
    return 1 if problems else 0


def plant(root):
    """Copies the product folders, plants includes against the arrows and expects each to fail."""
    plants = [
        ("shim/pool/block.h", '#include "dispatch/driver_hooks.h"', "pool may not include dispatch"),
        ("shim/base/log.h", '#include "route/device_router.h"', "base may not include route"),
        ("shim/stats/recorder.h", '#include "source/daemon_client.h"', "stats may not include source"),
        ("shim/source/daemon_client.h", '#include "poolshimd/server.h"', "not under an include root"),
        ("shim/pool/segment_resource.h", "#include <cuda.h>", "no CUDA header"),
        ("daemon/poolshimd/server.h", "#include <spdlog/spdlog.h>", "spdlog/fmt only in"),
        ("daemon/replay/policies.h", '#include "source/daemon_client.h"', "replay may not include source"),
    ]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for top in ("shim", "daemon", "include"):
            shutil.copytree(os.path.join(root, top), os.path.join(tmp, top))
        files, includes, clean = check(tmp)
        if clean:
            print("check_layers --plant: the unplanted copy already fails:", *clean, sep="\n  ")
            return 1
        for rel, line, expect in plants:
            path = os.path.join(tmp, rel)
            with open(path, encoding="utf-8") as f:
                original = f.read()
            with open(path, "w", encoding="utf-8") as f:
                f.write(original.replace("#pragma once\n", "#pragma once\n" + line + "\n", 1))
            _, _, found = check(tmp)
            with open(path, "w", encoding="utf-8") as f:
                f.write(original)
            ok = len(found) == 1 and expect in found[0] and found[0].startswith(rel + ":")
            print(f"planted {line!r} in {rel}: {'caught' if ok else 'NOT CAUGHT'}: {found[0] if found else '(nothing)'}")
            failures += not ok
    print(f"check_layers --plant: {len(plants) - failures} of {len(plants)} planted includes caught")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--plant", action="store_true", help="show that includes against the arrows fail")
    a = ap.parse_args()
    if not os.path.isdir(os.path.join(a.root, "shim")):
        print(f"check_layers: {a.root} has no shim/ folder", file=sys.stderr)
        return 2
    return plant(a.root) if a.plant else report(a.root)


if __name__ == "__main__":
    sys.exit(main())

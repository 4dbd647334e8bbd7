#!/usr/bin/env python3
"""Compares real poolshim-stats JSON output with the documented schema.

usage: check_report_schema.py [--kind report|diff|node] [--all-paths] REPORT_SCHEMA.md REPORT.json...

The document has one part per kind of JSON output (report, the default; diff; node), each headed
"# `poolshim-stats KIND --format json`: schema version N". A part's sections are headed by the
JSON paths they describe (### `$.sites[]`, several paths in one heading share a table) and list
every key in a table row | `key` | type | meaning |. Every object of the reports must have exactly
the documented keys, each value the documented type (integer, number, string, boolean, object,
array, or "X or null"); a type "X, when `k` is true" (or false) is a key the object has only when
its key k has that value. With --all-paths (the tests' data), every documented path, and every such
conditional key, must also occur in at least one report, so that the data exercises the whole
schema; without it one report of a user's run (which may have no framework, no site, ...) is
checked for what it has. The reports' schema_version
must be the one the part's heading names. Only the part of --kind is read. Prints one line per
problem and exits 1 if there is any.
"""
import json
import re
import sys

TYPES = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def parse_doc(path, kind):
    text = open(path, encoding="utf-8").read()
    schema, current, version, part = {}, None, None, None
    for line in text.splitlines():
        if line.startswith("# "):
            head = re.match(r"^# `poolshim-stats (\w+) --format json`: schema version (\d+)", line)
            part = head.group(1) if head else None
            if part == kind:
                if version is not None:
                    sys.exit(f"{path}: two parts for {kind}")
                version = int(head.group(2))
            current = None
            continue
        if part != kind:
            continue
        if line.startswith("#"):
            paths = re.findall(r"`(\$[^`]*)`", line) if line.startswith("### ") else []
            current = paths or None
            for p in paths:
                if p in schema:
                    sys.exit(f"{path}: {kind}: {p} documented twice")
                schema[p] = {}
            continue
        row = re.match(r"^\|\s*`([^`]+)`\s*\|\s*([^|]+?)\s*\|", line)
        if current and row:
            key, type_text = row.group(1), row.group(2)
            when = re.match(r"^(.*?), when `(\w+)` is (true|false)$", type_text)
            cond = (when.group(2), when.group(3) == "true") if when else None
            types = [t.strip() for t in (when.group(1) if when else type_text).split(" or ")]
            for t in types:
                if t not in TYPES and t != "null":
                    sys.exit(f"{path}: unknown type '{type_text}' for {key}")
            for p in current:
                if key in schema[p]:
                    sys.exit(f"{path}: {p}.{key} documented twice")
                schema[p][key] = (types, cond)
    if version is None:
        sys.exit(f"{path}: no part headed '# `poolshim-stats {kind} --format json`: schema version N'")
    if not schema:
        sys.exit(f"{path}: {kind}: no sections with ### `$...` headings")
    return version, schema


def walk(value, path, seen, problems, schema):
    if isinstance(value, dict):
        doc = schema.get(path)
        seen.add(path)
        if doc is None:
            problems.add(f"{path}: an object the document does not describe")
            return
        # A conditional key belongs to this object only when its condition holds here.
        wanted = {k for k, (_, cond) in doc.items() if cond is None or value.get(cond[0]) is cond[1]}
        for key in sorted(set(value) - wanted):
            if key in doc:
                k, v = doc[key][1]
                problems.add(f"{path}.{key}: in the report although {k} is not {json.dumps(v)}")
            else:
                problems.add(f"{path}.{key}: in the report but not documented")
        for key in sorted(wanted - set(value)):
            problems.add(f"{path}.{key}: documented but missing from the report")
        for key, v in value.items():
            if key not in wanted:
                continue
            seen.add((path, key))
            types = doc[key][0]
            ok = (v is None and "null" in types) or any(t != "null" and TYPES[t](v) for t in types)
            if not ok:
                problems.add(f"{path}.{key}: {type(v).__name__} {json.dumps(v)[:40]}, documented as "
                             f"{' or '.join(types)}")
            walk(v, f"{path}.{key}", seen, problems, schema)
    elif isinstance(value, list):
        for item in value:
            walk(item, path + "[]", seen, problems, schema)


def main():
    args = sys.argv[1:]
    kind, all_paths = "report", False
    while args[:1] in (["--kind"], ["--all-paths"]):
        if args[0] == "--all-paths":
            all_paths, args = True, args[1:]
        elif len(args) > 1:
            kind, args = args[1], args[2:]
        else:
            sys.exit(__doc__)
    if len(args) < 2 or kind not in ("report", "diff", "node"):
        sys.exit(__doc__)
    version, schema = parse_doc(args[0], kind)
    problems, seen = set(), set()
    for report_path in args[1:]:
        report = json.load(open(report_path, encoding="utf-8"))
        if report.get("schema_version") != version:
            problems.add(f"{report_path}: schema_version {report.get('schema_version')!r}, the document's "
                         f"{kind} is version {version}")
        walk(report, "$", seen, problems, schema)
    for p in sorted(set(schema) - seen) if all_paths else []:
        problems.add(f"{p}: documented, but no report has one (the test data must exercise it)")
    for p, doc in sorted(schema.items()) if all_paths else []:
        for key, (_, cond) in sorted(doc.items()):
            if cond is not None and p in seen and (p, key) not in seen:
                problems.add(f"{p}.{key}: documented (when {cond[0]} is {json.dumps(cond[1])}), but no "
                             f"report has it (the test data must exercise it)")
    for p in sorted(problems):
        print(f"schema: FAIL: {kind}: {p}")
    if problems:
        return 1
    keys = sum(len(v) for v in schema.values())
    if all_paths:
        print(f"schema: the {kind} JSON has exactly the {keys} documented keys in {len(schema)} objects "
              f"(version {version})")
    else:
        print(f"schema: the {kind} JSON has only documented keys, each of its documented type, and every "
              f"documented key of each object it has (version {version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Compares real `poolshim-stats report --format json` output with the documented schema.

usage: check_report_schema.py REPORT_SCHEMA.md REPORT.json [REPORT.json...]

The document's sections are headed by the JSON paths they describe (### `$.sites[]`, several
paths in one heading share a table) and list every key in a table row | `key` | type | meaning |.
Every object of the reports must have exactly the documented keys, each value the documented type
(integer, number, string, boolean, object, array, or "X or null"), and every documented path must
occur in at least one report (so that the test data exercises the whole schema). The reports'
schema_version must be the one the document's title names. Prints one line per problem and exits
1 if there is any.
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


def parse_doc(path):
    text = open(path, encoding="utf-8").read()
    version = re.search(r"schema version (\d+)", text.splitlines()[0])
    if not version:
        sys.exit(f"{path}: the first line names no 'schema version N'")
    schema, current = {}, None
    for line in text.splitlines():
        if line.startswith("#"):
            paths = re.findall(r"`(\$[^`]*)`", line) if line.startswith("### ") else []
            current = paths or None
            for p in paths:
                schema.setdefault(p, {})
            continue
        row = re.match(r"^\|\s*`([^`]+)`\s*\|\s*([^|]+?)\s*\|", line)
        if current and row:
            key, type_text = row.group(1), row.group(2)
            types = [t.strip() for t in type_text.split(" or ")]
            for t in types:
                if t not in TYPES and t != "null":
                    sys.exit(f"{path}: unknown type '{type_text}' for {key}")
            for p in current:
                if key in schema[p]:
                    sys.exit(f"{path}: {p}.{key} documented twice")
                schema[p][key] = types
    if not schema:
        sys.exit(f"{path}: no sections with ### `$...` headings")
    return int(version.group(1)), schema


def walk(value, path, seen, problems, schema):
    if isinstance(value, dict):
        doc = schema.get(path)
        seen.add(path)
        if doc is None:
            problems.add(f"{path}: an object the document does not describe")
            return
        for key in sorted(set(value) - set(doc)):
            problems.add(f"{path}.{key}: in the report but not documented")
        for key in sorted(set(doc) - set(value)):
            problems.add(f"{path}.{key}: documented but missing from the report")
        for key, v in value.items():
            types = doc.get(key)
            if types is not None:
                ok = (v is None and "null" in types) or any(t != "null" and TYPES[t](v) for t in types)
                if not ok:
                    problems.add(f"{path}.{key}: {type(v).__name__} {json.dumps(v)[:40]}, documented as "
                                 f"{' or '.join(types)}")
            walk(v, f"{path}.{key}", seen, problems, schema)
    elif isinstance(value, list):
        for item in value:
            walk(item, path + "[]", seen, problems, schema)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    version, schema = parse_doc(sys.argv[1])
    problems, seen = set(), set()
    for report_path in sys.argv[2:]:
        report = json.load(open(report_path, encoding="utf-8"))
        if report.get("schema_version") != version:
            problems.add(f"{report_path}: schema_version {report.get('schema_version')!r}, the document is "
                         f"version {version}")
        walk(report, "$", seen, problems, schema)
    for p in sorted(set(schema) - seen):
        problems.add(f"{p}: documented, but no report has one (the test data must exercise it)")
    for p in sorted(problems):
        print(f"schema: FAIL: {p}")
    if problems:
        return 1
    keys = sum(len(v) for v in schema.values())
    print(f"schema: the reports have exactly the {keys} documented keys in {len(schema)} objects "
          f"(version {version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

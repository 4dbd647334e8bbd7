#!/usr/bin/python3
"""The daemon's real metrics page against Prometheus' conventions and the Grafana dashboard: a
poolshimd of the test's own (--metrics-port, --metrics-clients 1) with a named buffer, a shared
one and a channel open, so that every family has lines.
  prometheus_metrics: `promtool check metrics` finds nothing on the page (and does find a
                      counter typed as a gauge, so the check can fail);
  grafana_dashboard:  the dashboard is well-formed Grafana JSON, every query's PromQL parses
                      (`promtool check rules` over the queries), every metric a query names is on
                      the page, and every family of the page is on the dashboard.
usage: metrics_test.py prometheus_metrics|grafana_dashboard --daemon poolshimd --lib
       libpoolshim_buffers.so --package DIR --dashboard FILE.json
"FAIL: ..." and exit 1 on a failed check; 77 (skipped) without promtool.
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from check_helpers import PrivateDaemon, check, failures  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("check", choices=["prometheus_metrics", "grafana_dashboard"])
ap.add_argument("--daemon", required=True)
ap.add_argument("--lib", required=True)
ap.add_argument("--package", required=True)
ap.add_argument("--dashboard", required=True)
args = ap.parse_args()
promtool = shutil.which("promtool")
if promtool is None:
    print("no promtool (Debian: prometheus; scripts/setup.sh installs it): skipped")
    sys.exit(77)
os.environ["POOLSHIM_BUFFERS_LIB"] = args.lib
sys.path.insert(0, args.package)
from poolshim import Buffer, Channel  # noqa: E402


# The page is served on a loopback address other than the default 127.0.0.1 (--metrics-address),
# so that the test also shows the option is honoured and the default address is not listened on.
ADDRESS = "127.0.0.2"


def free_port():
    s = socket.socket()
    s.bind((ADDRESS, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metrics_page(port, address=ADDRESS):
    s = socket.create_connection((address, port), timeout=5)
    s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    check(head.startswith("HTTP/1.0 200") and "text/plain; version=0.0.4" in head, f"the page's header: {head!r}")
    return body


def families(page):
    """{name: type} of the page's # TYPE lines."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", page, re.M))


def promtool_run(what, text, *extra):
    return subprocess.run([promtool, "check", what, *extra], input=text, capture_output=True, text=True)


def check_page(page):
    r = promtool_run("metrics", page)
    found = (r.stdout + r.stderr).strip()
    check(r.returncode == 0 and not found, f"promtool check metrics: {found or 'no finding'}")
    fam = families(page)
    counters = sorted(n for n, t in fam.items() if t == "counter")
    check(all(n.endswith("_total") for n in counters) and
          all(t == "counter" for n, t in fam.items() if n.endswith("_total")),
          f"counters are the _total families: {', '.join(counters)}")
    check(all(n.startswith("poolshimd_") for n in fam), "every family is named poolshimd_*")
    # The check can fail: the same lint over a counter typed as a gauge, a family without help.
    bad = "# TYPE poolshimd_bad_total gauge\npoolshimd_bad_total 1\n# TYPE poolshimd_no_help gauge\npoolshimd_no_help 1\n"
    r = promtool_run("metrics", bad)
    out = r.stdout + r.stderr
    check(r.returncode != 0 and "poolshimd_bad_total" in out and "no help" in out,
          f"promtool reports a broken page: {out.strip()!r}")


# Dashboard variables, as Grafana substitutes them, so that promtool can parse the queries.
VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$instance": ".*", "${instance}": ".*"}


def dashboard_problems(dash, fam):
    """What is wrong with a dashboard against the page's families: a list of sentences."""
    problems = []
    for key in ("title", "uid", "panels", "schemaVersion", "templating"):
        if key not in dash:
            problems.append(f"no '{key}'")
    queries = []  # (where, PromQL)
    ids = set()
    for p in dash.get("panels", []):
        pid = p.get("id")
        if pid in ids or not isinstance(pid, int):
            problems.append(f"panel id {pid!r} is missing or not unique")
        ids.add(pid)
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in ("x", "y", "w", "h")) or g.get("x", 0) + g.get("w", 0) > 24:
            problems.append(f"panel {pid}: gridPos {g} is not within Grafana's 24 columns")
        if p.get("type") == "row":
            continue
        targets = p.get("targets", [])
        if not targets:
            problems.append(f"panel {pid} ({p.get('title')}) has no query")
        if p.get("datasource", {}).get("type") != "prometheus":
            problems.append(f"panel {pid}: not a Prometheus data source")
        for t in targets:
            if not t.get("expr") or not t.get("refId"):
                problems.append(f"panel {pid}: a target without expr or refId")
            else:
                queries.append((f"panel {pid} {t['refId']}", t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if v.get("type") == "query" and isinstance(q, str):
            m = re.fullmatch(r"label_values\((.+),\s*\w+\)", q)
            queries.append((f"variable {v.get('name')}", m.group(1) if m else q))
    named = set()
    for where, q in queries:
        names = set(re.findall(r"\bpoolshimd_[a-z0-9_]+\b", q))
        if not names:
            problems.append(f"{where}: names no poolshimd metric: {q}")
        for n in sorted(names - set(fam)):
            problems.append(f"{where}: {n} is not on the daemon's metrics page")
        named |= names
    for n in sorted(set(fam) - named):
        problems.append(f"the page's {n} is on no panel")
    # Every query parses as PromQL: a recording rule each, checked by promtool.
    def substituted(q):
        for k, v in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
            q = q.replace(k, v)
        return q
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        rules = [{"record": f"dashboard:query_{i}", "expr": substituted(q)} for i, (_, q) in enumerate(queries)]
        json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)  # JSON is YAML
    try:
        r = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"promtool check rules: {(r.stdout + r.stderr).strip()}")
    finally:
        os.unlink(f.name)
    return problems, len(queries)


def check_dashboard(page):
    fam = families(page)
    with open(args.dashboard) as f:
        dash = json.load(f)  # not JSON: the test fails here, with the position
    problems, n = dashboard_problems(dash, fam)
    check(not problems, f"the dashboard's {n} queries against the page's {len(fam)} families: "
          + ("; ".join(problems) or "every metric exists, every query parses"))
    # The check can fail: a misspelled metric and a query that does not parse.
    broken = json.loads(json.dumps(dash))
    panel = next(p for p in broken["panels"] if p.get("targets"))
    panel["targets"][0]["expr"] = "poolshimd_lent_byte / on( poolshimd_region_bytes"
    problems, _ = dashboard_problems(broken, fam)
    check(any("poolshimd_lent_byte is not" in p for p in problems) and any("promtool" in p for p in problems),
          f"a broken dashboard is caught: {problems}")


port = free_port()
daemon = PrivateDaemon(args.daemon, "poolshim-metrics-", "--region", "128M", "--slab", "16M", "--metrics-port",
                       str(port), "--metrics-address", ADDRESS, "--metrics-clients", "1")
try:
    with Buffer.create("deploy.own", (4, 4), "float32") as b1, \
            Buffer.create("deploy.shared", (16,), "uint8", shared=True) as b2, \
            Channel.create("deploy.channel", readers=1, capacity=1 << 16) as ch:
        page = metrics_page(port)
    print(f"the metrics page on {ADDRESS}:{port}: {len(families(page))} families, {len(page.splitlines())} lines")
    try:
        metrics_page(port, "127.0.0.1")
        check(False, f"--metrics-address {ADDRESS}: 127.0.0.1:{port} answers too")
    except OSError as e:
        check(True, f"--metrics-address {ADDRESS}: 127.0.0.1:{port} is not listened on ({e.__class__.__name__})")
    bad = subprocess.run([args.daemon, "--metrics-port", str(port), "--metrics-address", "localhost", "--socket",
                          os.path.join(daemon.dir, "other.sock")], capture_output=True, text=True, timeout=20)
    check(bad.returncode != 0 and "is not an IPv4 address" in bad.stderr,
          f"--metrics-address localhost is refused: {bad.stderr.strip()!r}")
    for family in ("poolshimd_named_buffer_bytes{", "poolshimd_channel_readers{", "poolshimd_client_lent_bytes{",
                   "poolshimd_build_info{"):
        check(family in page, f"the page has labelled lines of {family[:-1]}")
    if args.check == "prometheus_metrics":
        check_page(page)
    else:
        check_dashboard(page)
finally:
    daemon.stop()
if failures:
    sys.exit(1)
print(f"deploy.{args.check}: ok")

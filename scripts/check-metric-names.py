#!/usr/bin/env python3
"""Checks that every metric the dashboard and the alerts use is exported by Gangway.

  scripts/check-metric-names.py [-v] URL [URL ...]
      URL: a live node's metrics, e.g. http://127.0.0.1:9090/metrics

Extracts every metric name from the PromQL of deploy/grafana/gangway.json (panel queries and
label_values() variables) and deploy/prometheus/alerts.yaml, ignoring `up` (Prometheus's own)
and the names of recording rules, and checks that at least one of the nodes exports each: a
`# TYPE` line of its family or a sample line. `x_bucket`, `x_sum` and `x_count` also match a
histogram or summary family `x`.

Note: the prometheus Rust crate omits a labelled family (`..._total{reason}`, histograms by
route) until it has a sample, so a node fresh from its start lacks some; give it traffic first.

Prints the missing names (with -v every name) and exits 1 if any is missing.
PyYAML is installed into .venv when the running Python lacks it.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

try:
    import yaml
except ImportError:
    venv_python = ROOT / ".venv" / "bin" / "python"
    if os.environ.get("CHECK_METRIC_NAMES_IN_VENV"):
        sys.exit("check-metric-names: PyYAML is missing from .venv and could not be installed")
    if not venv_python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ROOT / ".venv")], check=True)
    if subprocess.run([str(venv_python), "-c", "import yaml"], capture_output=True).returncode:
        print("check-metric-names: installing PyYAML into .venv", file=sys.stderr)
        subprocess.run([str(venv_python), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", "pyyaml"], check=True)
    os.environ["CHECK_METRIC_NAMES_IN_VENV"] = "1"
    os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])

IGNORED = {"up"}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "offset", "bool", "inf", "nan", "atan2"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr):
    """The metric names a PromQL expression selects."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    s = re.sub(r"\{[^{}]*\}", " ", s)                                           # label matchers
    s = re.sub(r"\[[^\[\]]*\]", " ", s)                                         # ranges, subqueries
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w$.:])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", s):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in KEYWORDS:
            continue  # a function, an aggregation, or a keyword
        names.add(name)
    return names


def dashboard_exprs(path):
    dash = json.loads(Path(path).read_text())
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets") or []:
                if t.get("expr"):
                    out.append(t["expr"])
            walk(p.get("panels") or [])

    walk(dash.get("panels") or [])
    for v in (dash.get("templating") or {}).get("list") or []:
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"\s*(?:label_values|query_result)\((.*?)(?:,\s*\w+)?\)\s*", q or "")
        if m:
            out.append(m.group(1))
        elif q and not re.fullmatch(r"\s*(label_names|metrics)\(.*\)\s*", q):
            out.append(q)
    return out


def rule_exprs(path):
    doc = yaml.safe_load(Path(path).read_text()) or {}
    exprs, records = [], set()
    for g in doc.get("groups") or []:
        for r in g.get("rules") or []:
            exprs.append(str(r.get("expr", "")))
            if r.get("record"):
                records.add(r["record"])
    return exprs, records


def exported(url):
    """(sample names, {family: type}) of one node's exposition."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    samples, families = set(), {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                families[parts[2]] = parts[3]
        elif line and not line.startswith("#"):
            samples.add(re.split(r"[{\s]", line, 1)[0])
    return samples, families


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("urls", nargs="+", metavar="URL", help="a node's /metrics URL")
    ap.add_argument("--dashboard", default=str(ROOT / "deploy/grafana/gangway.json"))
    ap.add_argument("--rules", default=str(ROOT / "deploy/prometheus/alerts.yaml"))
    ap.add_argument("-v", "--verbose", action="store_true", help="print every name, not only the missing")
    args = ap.parse_args()

    used = {}  # name -> where
    for e in dashboard_exprs(args.dashboard):
        for n in metric_names(e):
            used.setdefault(n, set()).add(Path(args.dashboard).name)
    exprs, records = rule_exprs(args.rules)
    for e in exprs:
        for n in metric_names(e):
            used.setdefault(n, set()).add(Path(args.rules).name)
    for n in IGNORED | records:
        used.pop(n, None)

    nodes = []
    for url in args.urls:
        try:
            nodes.append((url, *exported(url)))
        except OSError as e:
            print(f"check-metric-names: {url}: {e}", file=sys.stderr)
            return 2

    missing = []
    for name in sorted(used):
        found_on = []
        for url, samples, families in nodes:
            base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
            if name in samples or name in families or \
                    (base and families.get(base) in ("histogram", "summary")):
                found_on.append(url)
        where = ", ".join(sorted(used[name]))
        if not found_on:
            missing.append(name)
            print(f"missing {name}  (used in {where})")
        elif args.verbose:
            print(f"ok      {name}  ({len(found_on)} of {len(nodes)} nodes; used in {where})")
    print(f"check-metric-names: {len(used)} metric names used, {len(used) - len(missing)} exported, "
          f"{len(missing)} missing")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())

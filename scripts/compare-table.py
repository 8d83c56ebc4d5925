#!/usr/bin/env python3
"""Prints bench-compare.sh's table from its result files: compare-table.py RESULT_DIR SERVER...

Workload A: deliveries/s, latency, loss. Workloads B (sparse) and Bp (B, pinned): the median
over runs of each column on its own — p50, p99, and the server's CPU time per delivery (its
processes plus the kernel's ksoftirqd threads) — with
every run's values below the table."""
import glob
import json
import os
import re
import statistics
import sys

res, servers = sys.argv[1], sys.argv[2:]


def load(path):
    with open(path) as f:
        return json.load(f)


def runs(server, w):
    files = [f for f in glob.glob(os.path.join(res, f"compare-{server}-{w}[0-9]*.json"))
             if re.search(rf"-{w}\d+\.json$", f)]
    files.sort(key=lambda f: int(re.search(r"(\d+)\.json$", f).group(1)))
    return [load(f) for f in files]


def cpu(r):
    """CPU per delivery: the server's processes plus the kernel's ksoftirqd threads (network
    work deferred out of the sender), where the load tool measured both."""
    v = r.get("server_and_softirq_cpu_us_per_delivery")
    return v if v is not None else r.get("server_cpu_us_per_delivery")


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=1):
    return "—" if v is None else f"{v:.{digits}f}"


def sparse(server, w):
    rs = runs(server, w)
    if not rs:
        return None
    return {
        "p50": med([r["delivery_latency"]["p50_ms"] for r in rs]),
        "p99": med([r["delivery_latency"]["p99_ms"] for r in rs]),
        "cpu": med([cpu(r) for r in rs]),
        "lost": sum(r["lost"] for r in rs),
        "expected": sum(r["expected_deliveries"] for r in rs),
        "runs": rs,
    }


rows = {}
for s in servers:
    a_path = os.path.join(res, f"compare-{s}-A.json")
    rows[s] = {"A": load(a_path) if os.path.exists(a_path) else None,
               "B": sparse(s, "B"), "Bp": sparse(s, "Bp")}

print("\n| Server | A: deliveries/s (1 000 subs) | A: CPU µs/delivery | A: lost "
      "| B: p50 / p99 ms (10 000 subs, 5/s) | B: CPU µs/delivery | B: lost "
      "| Bp (pinned): p50 / p99 ms | Bp: CPU µs/delivery |")
print("|---|---|---|---|---|---|---|---|---|")
for s in servers:
    a, b, bp = rows[s]["A"], rows[s]["B"], rows[s]["Bp"]
    cells = [s]
    if a:
        cells += [f"{a['deliveries_per_sec']:.0f}", fmt(cpu(a), 2), f"{a['lost']} of {a['expected_deliveries']}"]
    else:
        cells += ["—"] * 3
    if b:
        cells += [f"{fmt(b['p50'])} / {fmt(b['p99'])}", fmt(b["cpu"], 2), f"{b['lost']} of {b['expected']}"]
    else:
        cells += ["—"] * 3
    if bp:
        cells += [f"{fmt(bp['p50'])} / {fmt(bp['p99'])}", fmt(bp["cpu"], 2)]
    else:
        cells += ["—"] * 2
    print("| " + " | ".join(cells) + " |")
print()
for s in servers:
    for w in ("B", "Bp"):
        x = rows[s][w]
        if x:
            print(f"workload {w} runs, {s}: " + "; ".join(
                f"{r['delivery_latency']['p50_ms']:.1f} / {r['delivery_latency']['p99_ms']:.1f} ms, "
                f"{fmt(cpu(r), 2)} µs" for r in x["runs"]))
g = rows.get("gangway")
if g and g["A"]:
    for other in ("reference", "nchan-1", "nchan-2"):
        o = rows.get(other)
        if o and o["A"]:
            print(f"A: Gangway / {other}: {g['A']['deliveries_per_sec'] / max(o['A']['deliveries_per_sec'], 1e-9):.2f}x")
for w in ("B", "Bp"):
    if g and g[w]:
        for other in ("reference", "nchan-1", "nchan-2"):
            o = rows.get(other)
            if o and o[w] and o[w]["p50"] and o[w]["cpu"] and g[w]["cpu"]:
                print(f"{w}: Gangway / {other}: p50 {g[w]['p50'] / o[w]['p50']:.2f}x, "
                      f"p99 {g[w]['p99'] / o[w]['p99']:.2f}x, CPU per delivery {g[w]['cpu'] / o[w]['cpu']:.2f}x")

#!/usr/bin/env python3
"""Peak memory a 16 MiB POST /@batch costs a node (issue 9, item 4).

Usage: scripts/bench-batch-memory.py [path/to/gangway]   (default: target/release/gangway)

For each body shape — 16 MiB of tiny objects as items, and the same nested in one item's data —
a fresh node is started, warmed up with an empty batch, sent the body, and its peak RSS
(VmHWM) before and after is compared. Prints one JSON object: status, body bytes, peak growth
and growth / body size for each shape.
"""
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/gangway"
SIZE = 16 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def post(url, body):
    req = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the node did not start")


item = '{"":0}'
shapes = {
    "items": ("[" + ",".join([item] * ((SIZE - 16) // 7)) + "]").encode(),
    "nested_in_data": ('[{"connectionId":"AVpvRk1vGeeYed9gPVVeYgSb","data":['
                       + ",".join([item] * ((SIZE - 80) // 7)) + "]}]").encode(),
}
results = {}
for name, body in shapes.items():
    ws, ctl = free_port(), free_port()
    node = subprocess.Popen([BIN, "--websocket-listen", f"127.0.0.1:{ws}",
                             "--control-listen", f"127.0.0.1:{ctl}", "--log-level", "warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(ctl)
        url = f"http://127.0.0.1:{ctl}/@batch"
        post(url, b"[]")
        before = peak(node.pid)
        status = post(url, body)
        grew = peak(node.pid) - before
        results[name] = {"status": status, "body_bytes": len(body), "peak_rss_growth_bytes": grew,
                         "multiple_of_body": round(grew / len(body), 2)}
    finally:
        node.terminate()
        node.wait()
print(json.dumps(results))

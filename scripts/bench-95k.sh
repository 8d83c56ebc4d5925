#!/usr/bin/env bash
# Five release nodes in one cluster (one redis-server) on one machine holding 95 000 idle
# WebSocket connections together (19 000 each: this machine allows 20 000 open files per
# process). gangway-loadtest spreads the connections over the five nodes from 10 worker
# processes and 20 source addresses; the script reads each node's VmRSS before and after.
#
# Results (also printed) go to ${BENCH_OUT:-target/bench} (relative to the repository root):
#   five-nodes-N.json          connections_requested, connect_rate, connections (held by all
#                              nodes together, read once the count stops growing),
#                              rss_before_kib, rss_after_kib (sums), per_connection_bytes, and
#                              nodes: [{node, connections, rss_before_kib, rss_after_kib}]
#   five-nodes-N-connect.json  the load tool's --json result (merged over its 10 workers)
#
# Usage: [CONNECT_RATE=6000] scripts/bench-95k.sh [N=95000]  (handshakes/s over all workers)
# 6 000/s: five nodes, ten load processes and Redis share two cores here; at 10 000/s some
# 2-core machines cannot keep up, and handshakes past max_pending_handshakes (4 096 a node) are
# refused with 503 (BENCHMARKS.md, "Five nodes").
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p gangway -p gangway-loadtest
N=${1:-95000}
OUT=${BENCH_OUT:-target/bench}
mkdir -p "$OUT"
rm -f "$OUT/five-nodes-$N.json" "$OUT/five-nodes-$N-connect.json"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REDIS=$(free_port)
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
PIDS=($!)
# Nodes first (they deregister from Redis as they drain), Redis last.
trap 'kill "${NODE_PIDS[@]}" 2>/dev/null || true; sleep 2; kill "${PIDS[0]}" 2>/dev/null || true' EXIT
sleep 0.5
URLS=(); CTLS=(); NODE_PIDS=()

for n in 1 2 3 4 5; do
  ws=$(free_port); ctl=$(free_port)
  target/release/gangway --websocket-listen 127.0.0.1:$ws --control-listen 127.0.0.1:$ctl \
    --redis-url "redis://127.0.0.1:$REDIS" --node-id "held-$n" --log-level warn &
  PIDS+=($!); NODE_PIDS+=($!)
  URLS+=("ws://127.0.0.1:$ws/"); CTLS+=("$ctl")
done
sleep 2
rss() { awk '/VmRSS/ {print $2}' /proc/$1/status; }
BEFORE=(); for p in "${NODE_PIDS[@]}"; do BEFORE+=("$(rss "$p")"); done
IPS=$(python3 -c 'print(",".join(f"127.0.5.{i}" for i in range(1, 21)))')
target/release/gangway-loadtest connect --json --url "$(IFS=,; echo "${URLS[*]}")" --connections "$N" \
  --connect-rate "${CONNECT_RATE:-6000}" --hold-secs 25 --workers 10 --source-ips "$IPS" >"$OUT/five-nodes-$N-connect.json" &
LT=$!
# Until all N are held, or the count has stopped growing for 3 s (some were refused: the nodes
# are read while they hold what they got, before the load tool lets go).
total=0; best=0; still=0
for _ in $(seq 1 120); do
  total=0
  for c in "${CTLS[@]}"; do
    n=$(curl -s -m 5 "http://127.0.0.1:$c/metrics" | awk '/^gangway_connections / {print $2}')
    total=$((total + ${n:-0}))
  done
  [ "$total" -ge "$N" ] && break
  if [ "$total" -gt "$best" ]; then best=$total; still=0; else still=$((still + 1)); fi
  [ "$best" -gt 0 ] && [ "$still" -ge 3 ] && break
  sleep 1
done
sleep 3
echo "connections held by the five nodes together: $total"
NODES=()
for i in 0 1 2 3 4; do
  after=$(rss "${NODE_PIDS[$i]}")
  n=$(curl -s "http://127.0.0.1:${CTLS[$i]}/metrics" | awk '/^gangway_connections / {print $2}')
  echo "node $((i + 1)): $n connections, RSS ${BEFORE[$i]} KiB -> $after KiB"
  NODES+=("held-$((i + 1)):${n:-0}:${BEFORE[$i]}:$after")
done
python3 - "$OUT/five-nodes-$N.json" "$N" "$total" "${CONNECT_RATE:-6000}" "${NODES[@]}" <<'PY'
import json, sys
path, n, total, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
nodes = []
for spec in sys.argv[5:]:
    name, conns, before, after = spec.split(":")
    nodes.append({"node": name, "connections": int(conns),
                  "rss_before_kib": int(before), "rss_after_kib": int(after)})
before = sum(x["rss_before_kib"] for x in nodes)
after = sum(x["rss_after_kib"] for x in nodes)
per = (after - before) * 1024 / max(total, 1)
result = {"connections_requested": n, "connect_rate": rate, "connections": total, "rss_before_kib": before,
          "rss_after_kib": after, "per_connection_bytes": round(per, 1), "nodes": nodes}
with open(path, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
print(f"per idle connection (all nodes): {per:.0f} bytes -> {path}")
PY
wait $LT || true
python3 scripts/render-benchmarks.py --summary "$OUT/five-nodes-$N-connect.json" || true

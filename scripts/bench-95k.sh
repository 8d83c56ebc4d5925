#!/usr/bin/env bash
# Five release nodes in one cluster (one redis-server) on one machine holding 95 000 idle
# WebSocket connections together (19 000 each: this machine allows 20 000 open files per
# process). gangway-loadtest spreads the connections over the five nodes from 10 worker
# processes and 20 source addresses; the script reads each node's VmRSS before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p gangway -p gangway-loadtest
N=${1:-95000}
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
target/release/gangway-loadtest connect --url "$(IFS=,; echo "${URLS[*]}")" --connections "$N" \
  --connect-rate 10000 --hold-secs 25 --workers 10 --source-ips "$IPS" >/tmp/gangway-95k.txt &
LT=$!
total=0
for _ in $(seq 1 120); do
  total=0
  for c in "${CTLS[@]}"; do
    n=$(curl -s "http://127.0.0.1:$c/metrics" | awk '/^gangway_connections / {print $2}')
    total=$((total + ${n:-0}))
  done
  [ "$total" -ge "$N" ] && break
  sleep 1
done
sleep 3
echo "connections held by the five nodes together: $total"
sum_before=0; sum_after=0
for i in 0 1 2 3 4; do
  after=$(rss "${NODE_PIDS[$i]}")
  n=$(curl -s "http://127.0.0.1:${CTLS[$i]}/metrics" | awk '/^gangway_connections / {print $2}')
  echo "node $((i + 1)): $n connections, RSS ${BEFORE[$i]} KiB -> $after KiB"
  sum_before=$((sum_before + BEFORE[$i])); sum_after=$((sum_after + after))
done
python3 -c "print(f'per idle connection (all nodes): {($sum_after - $sum_before) * 1024 / max($total, 1):.0f} bytes')"
wait $LT || true
grep -E "^connections|failures|dropped" /tmp/gangway-95k.txt || true

#!/usr/bin/env bash
# Broker RSS per idle connection: starts a release node, opens N idle WebSocket connections with
# gangway-loadtest (several processes, several 127.0.0.x source addresses, at most 9 500 each),
# and reads the node's VmRSS before and after.
#
# Results (also printed) go to ${BENCH_OUT:-target/bench} (relative to the repository root):
#   idle-memory-N.json            connections_requested, connections, rss_before_kib,
#                                 rss_after_kib, per_connection_bytes
#   idle-memory-N-connect-I.json  the --json result of load-tool process I
#
# Usage: scripts/bench-idle-memory.sh [N=10000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
PER_PROC=9500
OUT=${BENCH_OUT:-target/bench}
mkdir -p "$OUT"
rm -f "$OUT/idle-memory-$N.json" "$OUT"/idle-memory-"$N"-connect-*.json
cargo build --release -q -p gangway -p gangway-loadtest
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WS=$(free_port); CTL=$(free_port)
GANGWAY_LIMITS_MAX_CONNECTIONS=100000 target/release/gangway \
  --websocket-listen 127.0.0.1:$WS --control-listen 127.0.0.1:$CTL --log-level warn &
PID=$!
trap 'kill $PID 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true' EXIT
sleep 1
rss() { awk '/VmRSS/ {print $2}' /proc/$PID/status; }
BASE=$(rss)
HOLD=$(( N / 2000 + 25 ))
procs=$(( (N + PER_PROC - 1) / PER_PROC ))
for i in $(seq 1 $procs); do
  n=$(( N - (i - 1) * PER_PROC )); [ $n -gt $PER_PROC ] && n=$PER_PROC
  target/release/gangway-loadtest connect --json --url ws://127.0.0.1:$WS/ --connections $n \
    --connect-rate 5000 --hold-secs $HOLD --source-ips 127.0.$((10 + i)).1,127.0.$((10 + i)).2 \
    >"$OUT/idle-memory-$N-connect-$i.json" 2>/tmp/gangway-idle-$i.err &
done
open=0
for _ in $(seq 1 600); do
  open=$(curl -s http://127.0.0.1:$CTL/metrics | awk '/^gangway_connections / {print $2}')
  open=${open:-0}
  [ "$open" -ge "$N" ] && break
  sleep 0.5
done
sleep 3
RSS=$(rss)
echo "connections open: $open"
echo "rss before: ${BASE} KiB, with $open idle connections: ${RSS} KiB"
python3 - "$OUT/idle-memory-$N.json" "$N" "$open" "$BASE" "$RSS" <<'PY'
import json, sys
path = sys.argv[1]
n, held, before, after = (int(a) for a in sys.argv[2:])
per = (after - before) * 1024 / max(held, 1)
result = {"connections_requested": n, "connections": held, "rss_before_kib": before,
          "rss_after_kib": after, "per_connection_bytes": round(per, 1)}
with open(path, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
print(f"per idle connection: {per:.0f} bytes ({per / 1024:.2f} KiB) -> {path}")
PY
wait $(jobs -p | grep -v "^$PID$") 2>/dev/null || true
for i in $(seq 1 $procs); do
  python3 scripts/render-benchmarks.py --summary "$OUT/idle-memory-$N-connect-$i.json" || cat /tmp/gangway-idle-$i.err
done

#!/usr/bin/env bash
# Broker RSS per idle connection: starts a release node, opens N idle WebSocket connections with
# gangway-loadtest (several processes, several 127.0.0.x source addresses, at most 9 500 each),
# and reads the node's VmRSS before and after.
#
# Usage: scripts/bench-idle-memory.sh [N=10000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
PER_PROC=9500
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
  target/release/gangway-loadtest connect --url ws://127.0.0.1:$WS/ --connections $n \
    --connect-rate 5000 --hold-secs $HOLD --source-ips 127.0.$((10 + i)).1,127.0.$((10 + i)).2 \
    >/tmp/gangway-idle-$i.txt 2>&1 &
done
for _ in $(seq 1 600); do
  open=$(curl -s http://127.0.0.1:$CTL/metrics | awk '/^gangway_connections / {print $2}')
  [ "${open:-0}" -ge "$N" ] && break
  sleep 0.5
done
sleep 3
RSS=$(rss)
echo "connections open: $open"
echo "rss before: ${BASE} KiB, with $open idle connections: ${RSS} KiB"
python3 -c "print(f'per idle connection: {($RSS - $BASE) * 1024 / max($open, 1):.0f} bytes ({($RSS - $BASE) / max($open, 1):.2f} KiB)')"
wait $(jobs -p | grep -v "^$PID$") 2>/dev/null || true
cat /tmp/gangway-idle-*.txt | grep -E "^connections|failures|dropped" || true

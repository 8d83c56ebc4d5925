#!/usr/bin/env bash
# Echo round trips and handshakes against one release node with no configuration
# (BENCHMARKS.md, "Echo" and "Handshakes"): the node's $default route is the mock echo. Starts the
# node on free ports, then runs gangway-loadtest:
#   - echo, 100-byte messages, 10 s after the ramp, for (connections, messages in flight per
#     connection) = (10, 1), (100, 1), (100, 8), (1 000, 1);
#   - connect, 10 000 connections at up to 50 000/s from 127.0.0.2 and 127.0.0.3, held 1 s
#     (handshakes per second).
# Stops the node at the end.
#
# Each run's --json result goes to ${BENCH_OUT:-target/bench} (relative to the repository root):
#   echo-c10-w1.json, echo-c100-w1.json, echo-c100-w8.json, echo-c1000-w1.json, handshakes.json
# and a short summary of it is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p gangway -p gangway-loadtest
OUT=${BENCH_OUT:-target/bench}
mkdir -p "$OUT"
rm -f "$OUT"/echo-c*-w*.json "$OUT/handshakes.json"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WS=$(free_port); CTL=$(free_port)
target/release/gangway --websocket-listen 127.0.0.1:$WS --control-listen 127.0.0.1:$CTL --log-level warn &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
sleep 1
L=target/release/gangway-loadtest
run() { # result-name scenario args...
  local name=$1; shift
  echo "== $*"
  "$L" "$@" --quiet --json >"$OUT/$name.json"
  python3 scripts/render-benchmarks.py --summary "$OUT/$name.json"
  echo
}
for cw in 10:1 100:1 100:8 1000:1; do
  c=${cw%:*}; w=${cw#*:}
  run "echo-c$c-w$w" echo --url "ws://127.0.0.1:$WS/" --connections "$c" --window "$w" --duration-secs 10 --size 100
done
run handshakes connect --url "ws://127.0.0.1:$WS/" --connections 10000 --connect-rate 50000 --hold-secs 1 \
  --source-ips 127.0.0.2,127.0.0.3
kill $PID 2>/dev/null || true
wait $PID 2>/dev/null || true

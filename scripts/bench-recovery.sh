#!/usr/bin/env bash
# History and recovery under reconnect churn on one release node (README: History and recovery):
# starts the node with examples/history.toml on free ports, then runs gangway-loadtest recovery
# twice with the same workload — SUBSCRIBERS (default 1 000) subscribers on 10 channels, RATE
# (default 200) publishes/s for SECS (default 30) s, each subscriber reconnecting every 10 s on
# average (--reconnect-churn 0.1), away up to 500 ms — once reconnecting with recover= and once
# without, so the second shows what recovery saves.
#
# Results (--json) go to ${BENCH_OUT:-target/bench}: recovery-on.json, recovery-off.json.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p gangway -p gangway-loadtest
OUT=${BENCH_OUT:-target/bench}
mkdir -p "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WS=$(free_port); CTL=$(free_port); BACKEND=$(free_port)
sed "s#127.0.0.1:3999#127.0.0.1:$BACKEND#" examples/history.toml >target/bench-recovery.toml
target/release/gangway --config target/bench-recovery.toml \
  --websocket-listen 127.0.0.1:$WS --control-listen 127.0.0.1:$CTL &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
sleep 1
for mode in on off; do
  flag=""; [ "$mode" = off ] && flag="--no-recover"
  echo "== recovery $mode"
  target/release/gangway-loadtest recovery --url "ws://127.0.0.1:$WS/?ch={channel}" \
    --publish-url "http://127.0.0.1:$CTL/@channels/{channel}" --backend-listen 127.0.0.1:$BACKEND \
    --subscribers "${SUBSCRIBERS:-1000}" --channels 10 --rate "${RATE:-200}" \
    --duration-secs "${SECS:-30}" --reconnect-churn 0.1 --offline-ms 500 $flag --json \
    | tee "$OUT/recovery-$mode.json"
done

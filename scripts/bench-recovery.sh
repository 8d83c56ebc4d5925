#!/usr/bin/env bash
# History and recovery benchmarks (README: History, recovery and presence), release builds,
# everything on loopback and bounded in time:
#   1. churn on one node: SUBSCRIBERS (default 1 000) subscribers on 10 channels with history,
#      RATE (default 200) publishes/s for SECS (default 30) s, each subscriber reconnecting every
#      10 s on average (--reconnect-churn 0.1), away up to 500 ms; once with recover=, once
#      without (what recovery saves) -> recovery-1-on.json, recovery-1-off.json;
#   2. the same on three nodes over one redis-server (subscribers and publishes spread over the
#      nodes; each reconnect moves to the next node) -> recovery-3-on.json, recovery-3-off.json;
#   3. fan-out W1 (1 000 subscribers on one channel, 4 publishes in flight, 10 s) on a channel
#      without history and one with (history_size 100), alternating, ROUNDS (default 3) each
#      -> w1-plain-<n>.json, w1-history-<n>.json;
#   4. a reconnect storm on one node: STORM (default 10 000) clients connect at once, each
#      recovering 50 missed messages -> storm-1.json; and 2 000 on the three nodes, with the
#      Redis commands it took (INFO commandstats) -> storm-3.json, storm-3-redis.txt;
#   5. the storm without a webhook: a node whose `$connect` is a mock route subscribing every
#      client to one channel, 3 runs recovering 50 messages and 3 recovering 1
#      -> storm-mock-50-<n>.json, storm-mock-1-<n>.json.
# Results go to ${BENCH_OUT:-target/bench}.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p gangway -p gangway-loadtest
OUT=${BENCH_OUT:-target/bench}
mkdir -p "$OUT"
ulimit -n 20000 2>/dev/null || true
L=target/release/gangway-loadtest
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
BACKEND=$(free_port)
sed "s#127.0.0.1:3999#127.0.0.1:$BACKEND#" examples/history.toml >target/bench-recovery.toml

# One node.
WS=$(free_port); CTL=$(free_port)
target/release/gangway --config target/bench-recovery.toml \
  --websocket-listen 127.0.0.1:$WS --control-listen 127.0.0.1:$CTL &
PIDS+=($!)
sleep 1
churn() { # name ws-urls publish-urls [--no-recover]
  local name=$1 urls=$2 pubs=$3; shift 3
  echo "== $name"
  "$L" recovery --url "$urls" --publish-url "$pubs" --backend-listen 127.0.0.1:$BACKEND \
    --subscribers "${SUBSCRIBERS:-1000}" --channels 10 --rate "${RATE:-200}" \
    --duration-secs "${SECS:-30}" --reconnect-churn 0.1 --offline-ms 500 --json "$@" \
    | tee "$OUT/$name.json"
}
U1="ws://127.0.0.1:$WS/?ch={channel}"
P1="http://127.0.0.1:$CTL/@channels/{channel}"
churn recovery-1-on "$U1" "$P1"
churn recovery-1-off "$U1" "$P1" --no-recover
for round in $(seq 1 "${ROUNDS:-3}"); do
  for kind in plain history; do
    prefix=bench; [ "$kind" = history ] && prefix=hist
    echo "== W1 $kind, round $round"
    "$L" fanout --url "ws://127.0.0.1:$WS/?ch={channel}&i={i}" --publish-url "$P1" \
      --backend-listen 127.0.0.1:$BACKEND --connections 1000 --channels 1 --channel-prefix "$prefix" \
      --duration-secs 10 --concurrency 4 --source-ips 127.0.3.$round --quiet --json \
      >"$OUT/w1-$kind-$round.json"
    python3 scripts/render-benchmarks.py --summary "$OUT/w1-$kind-$round.json"
  done
done
echo "== storm on one node"
"$L" recovery --url "$U1" --publish-url "$P1" --backend-listen 127.0.0.1:$BACKEND \
  --storm "${STORM:-10000}" --missed 50 --json | tee "$OUT/storm-1.json"
cleanup; PIDS=()
sleep 1

# The storm without a webhook call per connection.
WS=$(free_port); CTL=$(free_port)
cat >target/bench-storm.toml <<TOML
[routes."\$connect"]
integration = "mock"
response = '{"channels":["churn-storm"]}'
[[channels]]
pattern = "churn-*"
history_size = 2000
history_ttl_secs = 600
envelope = "json"
[log]
level = "warn"
TOML
target/release/gangway --config target/bench-storm.toml \
  --websocket-listen 127.0.0.1:$WS --control-listen 127.0.0.1:$CTL &
PIDS+=($!)
sleep 1
for missed in 50 1; do
  for round in $(seq 1 "${ROUNDS:-3}"); do
    echo "== storm, mock \$connect, $missed missed, round $round"
    "$L" recovery --url "ws://127.0.0.1:$WS/" --publish-url "http://127.0.0.1:$CTL/@channels/{channel}" \
      --backend-listen 127.0.0.1:$BACKEND --storm "${STORM:-10000}" --missed "$missed" \
      --storm-channel churn-storm --json | tee "$OUT/storm-mock-$missed-$round.json"
    sleep 2
  done
done
cleanup; PIDS=()
sleep 1

# Three nodes over one redis-server.
RP=$(free_port)
RDIR=$(mktemp -d)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --dir "$RDIR" >/dev/null &
PIDS+=($!)
sleep 0.5
URLS=(); PUBS=()
for n in a b c; do
  W=$(free_port); C=$(free_port)
  GANGWAY_CLUSTER_REDIS_URL="redis://127.0.0.1:$RP" GANGWAY_CLUSTER_NODE_ID="bench-$n" \
    target/release/gangway --config target/bench-recovery.toml \
    --websocket-listen 127.0.0.1:$W --control-listen 127.0.0.1:$C &
  PIDS+=($!)
  URLS+=("ws://127.0.0.1:$W/?ch={channel}"); PUBS+=("http://127.0.0.1:$C/@channels/{channel}")
done
sleep 2
U3=$(IFS=,; echo "${URLS[*]}"); P3=$(IFS=,; echo "${PUBS[*]}")
churn recovery-3-on "$U3" "$P3"
churn recovery-3-off "$U3" "$P3" --no-recover
redis-cli -p "$RP" CONFIG RESETSTAT >/dev/null
echo "== storm on three nodes (all recovering on the first)"
"$L" recovery --url "$U3" --publish-url "$P3" --backend-listen 127.0.0.1:$BACKEND \
  --storm 2000 --missed 50 --json | tee "$OUT/storm-3.json"
redis-cli -p "$RP" INFO commandstats | tee "$OUT/storm-3-redis.txt"
rm -rf "$RDIR"

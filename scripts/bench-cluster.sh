#!/usr/bin/env bash
# Cluster benchmarks (BENCHMARKS.md, "Cluster"): a redis-server and three release nodes on free
# ports, each node's $connect pointing at the load tool's backend; then gangway-loadtest:
#   - pushes to connections on node A sent through node B's control API (cross-node);
#   - the same pushes sent through node A (same node), for comparison;
#   - fan-out to 3 000 subscribers spread over the 3 nodes, publishing through A, against the
#     same 3 000 subscribers all on A;
#   - fan-out to 9 000 subscribers spread over the 3 nodes at 5 publishes/s (latency).
# Every run is bounded (10 s of publishing); everything stops at the end.
#
# Each run's --json result goes to ${BENCH_OUT:-target/bench} (relative to the repository root),
# in the order above: cluster-push-via-b.json, cluster-push-via-a.json,
# cluster-fanout-3000-spread.json, cluster-fanout-3000-on-a.json,
# cluster-fanout-9000-spread-r5.json; a short summary of each is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p gangway -p gangway-loadtest
OUT=${BENCH_OUT:-target/bench}
mkdir -p "$OUT"
rm -f "$OUT"/cluster-push-*.json "$OUT"/cluster-fanout-*.json
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REDIS=$(free_port); BACKEND=$(free_port)
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
PIDS=($!)
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
sleep 0.5
WS=(); CTL=()
for n in a b c; do
  ws=$(free_port); ctl=$(free_port)
  cat >target/bench-cluster-$n.toml <<TOML
[api]
webhook_secret = "bench-secret"
[routes."\$connect"]
integration = "http"
url = "http://127.0.0.1:$BACKEND/connect"
[cluster]
redis_url = "redis://127.0.0.1:$REDIS"
node_id = "bench-$n"
[log]
level = "warn"
TOML
  target/release/gangway --config target/bench-cluster-$n.toml \
    --websocket-listen 127.0.0.1:$ws --control-listen 127.0.0.1:$ctl &
  PIDS+=($!)
  WS+=("$ws"); CTL+=("$ctl")
done
sleep 2
L=target/release/gangway-loadtest
run() { # result-name scenario args...
  local name=$1; shift
  echo "== $*"
  "$L" "$@" --quiet --json --backend-listen 127.0.0.1:$BACKEND >"$OUT/$name.json"
  python3 scripts/render-benchmarks.py --summary "$OUT/$name.json"
  echo
}
A="ws://127.0.0.1:${WS[0]}/?ch={channel}&i={i}"
ALL="ws://127.0.0.1:${WS[0]}/?ch={channel}&i={i},ws://127.0.0.1:${WS[1]}/?ch={channel}&i={i},ws://127.0.0.1:${WS[2]}/?ch={channel}&i={i}"
run cluster-push-via-b direct --url "ws://127.0.0.1:${WS[0]}/?i={i}" --push-url "http://127.0.0.1:${CTL[1]}/@connections/{id}" \
  --connections 1000 --duration-secs 10 --concurrency 32 --source-ips 127.0.2.1
run cluster-push-via-a direct --url "ws://127.0.0.1:${WS[0]}/?i={i}" --push-url "http://127.0.0.1:${CTL[0]}/@connections/{id}" \
  --connections 1000 --duration-secs 10 --concurrency 32 --source-ips 127.0.2.2
run cluster-fanout-3000-spread fanout --url "$ALL" --publish-url "http://127.0.0.1:${CTL[0]}/@channels/{channel}" \
  --connections 3000 --connect-rate 5000 --duration-secs 10 --concurrency 4 --source-ips 127.0.2.3
run cluster-fanout-3000-on-a fanout --url "$A" --publish-url "http://127.0.0.1:${CTL[0]}/@channels/{channel}" \
  --connections 3000 --connect-rate 5000 --duration-secs 10 --concurrency 4 --source-ips 127.0.2.4
run cluster-fanout-9000-spread-r5 fanout --url "$ALL" --publish-url "http://127.0.0.1:${CTL[0]}/@channels/{channel}" \
  --connections 9000 --connect-rate 5000 --duration-secs 10 --rate 5 --concurrency 1 --source-ips 127.0.2.5,127.0.2.6

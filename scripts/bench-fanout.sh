#!/usr/bin/env bash
# Fan-out and push benchmarks of one release node (BENCHMARKS.md, "Fan-out" and "Pushes"):
# starts the node with examples/bench.toml on free ports, then runs gangway-loadtest:
#   - fanout, 1 000 and 10 000 subscribers on one channel, publishing as fast as 4 (2) requests
#     in flight allow, 100-byte messages;
#   - fanout, 10 000 subscribers at 5 publishes/s (the latency workload of SPEC §8);
#   - direct pushes to 1 000 connection ids, 32 requests in flight.
# Each run is bounded (10 s of publishing) and uses its own 127.0.x.y source addresses.
#
# Each run's --json result goes to ${BENCH_OUT:-target/bench} (relative to the repository root):
#   fanout-1000-c4.json, fanout-1000-c1.json, fanout-10000-c2.json, fanout-10000-r5.json,
#   push-1000-c32.json
# and a short summary of it is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p gangway -p gangway-loadtest
OUT=${BENCH_OUT:-target/bench}
mkdir -p "$OUT"
rm -f "$OUT"/fanout-*.json "$OUT/push-1000-c32.json"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WS=$(free_port); CTL=$(free_port); BACKEND=$(free_port)
sed "s#127.0.0.1:3999#127.0.0.1:$BACKEND#" examples/bench.toml >target/bench-fanout.toml
target/release/gangway --config target/bench-fanout.toml \
  --websocket-listen 127.0.0.1:$WS --control-listen 127.0.0.1:$CTL &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
sleep 1
L=target/release/gangway-loadtest
U="ws://127.0.0.1:$WS/?ch={channel}&i={i}"
P="http://127.0.0.1:$CTL/@channels/{channel}"
run() { # result-name scenario args...
  local name=$1; shift
  echo "== $*"
  "$L" "$@" --quiet --json --backend-listen 127.0.0.1:$BACKEND >"$OUT/$name.json"
  python3 scripts/render-benchmarks.py --summary "$OUT/$name.json"
  echo
}
run fanout-1000-c4 fanout --url "$U" --publish-url "$P" --connections 1000 --duration-secs 10 --concurrency 4 --source-ips 127.0.1.1
run fanout-1000-c1 fanout --url "$U" --publish-url "$P" --connections 1000 --duration-secs 10 --concurrency 1 --source-ips 127.0.1.2
run fanout-10000-c2 fanout --url "$U" --publish-url "$P" --connections 10000 --connect-rate 5000 --duration-secs 10 --concurrency 2 --source-ips 127.0.1.3,127.0.1.4
run fanout-10000-r5 fanout --url "$U" --publish-url "$P" --connections 10000 --connect-rate 5000 --duration-secs 10 --rate 5 --concurrency 1 --source-ips 127.0.1.5,127.0.1.6
run push-1000-c32 direct --url "ws://127.0.0.1:$WS/?i={i}" --push-url "http://127.0.0.1:$CTL/@connections/{id}" --connections 1000 --duration-secs 10 --concurrency 32 --source-ips 127.0.1.7

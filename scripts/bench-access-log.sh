#!/usr/bin/env bash
# What the access log costs (BENCHMARKS.md, "Access log"): the same release node with
# `[log] access` on and off, alternately, at log level info with JSON lines written to a file
# (as in production), under three workloads:
#   - echo: 100 connections, 8 messages in flight each, 100-byte messages, 10 s (long-lived
#     connections: the log writes nothing, the counters run on every message);
#   - fan-out: 1 000 subscribers on one channel, publishing with 4 requests in flight, 10 s;
#   - connection churn: 10 000 connections opened at up to 50 000/s, held 1 s, closed (one
#     access line each): handshakes/s.
# ROUNDS (default 3) rounds of on/off; prints every run and the medians. Results (JSON) go to
# ${BENCH_OUT:-target/bench}/access-{on,off}-{echo,fanout,churn}-<round>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p gangway -p gangway-loadtest
OUT=${BENCH_OUT:-target/bench}
ROUNDS=${ROUNDS:-3}
mkdir -p "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
L=target/release/gangway-loadtest
tmp=$(mktemp -d -t gangway-access.XXXXXX)
PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi; }
trap 'stop; rm -rf "$tmp"' EXIT

start_node() { # access config-args...
  local access=$1; shift
  local flag=true; [ "$access" = off ] && flag=false
  WS=$(free_port); CTL=$(free_port)
  GANGWAY_LOG_ACCESS=$flag target/release/gangway "$@" --log-format json --log-level info \
    --websocket-listen 127.0.0.1:$WS --control-listen 127.0.0.1:$CTL >>"$tmp/node-$access.log" 2>&1 &
  PID=$!
  sleep 1
}
for round in $(seq 1 "$ROUNDS"); do
  for access in on off; do
    # Echo and churn: no configuration (the $default route echoes, no $connect backend).
    start_node "$access"
    "$L" echo --url "ws://127.0.0.1:$WS/" --connections 100 --window 8 --duration-secs 10 --size 100 \
      --quiet --json >"$OUT/access-$access-echo-$round.json"
    "$L" connect --url "ws://127.0.0.1:$WS/" --connections 10000 --connect-rate 50000 --hold-secs 1 \
      --source-ips 127.0.2.2,127.0.2.3 --quiet --json >"$OUT/access-$access-churn-$round.json"
    stop
    # Fan-out: examples/bench.toml, whose $connect calls the load tool's backend.
    BACKEND=$(free_port)
    sed "s#127.0.0.1:3999#127.0.0.1:$BACKEND#" examples/bench.toml >"$tmp/bench.toml"
    start_node "$access" --config "$tmp/bench.toml"
    "$L" fanout --url "ws://127.0.0.1:$WS/?ch={channel}&i={i}" --publish-url "http://127.0.0.1:$CTL/@channels/{channel}" \
      --backend-listen 127.0.0.1:$BACKEND --connections 1000 --duration-secs 10 --concurrency 4 \
      --source-ips 127.0.2.1 --quiet --json >"$OUT/access-$access-fanout-$round.json"
    stop
  done
done
for access in on off; do
  echo "access $access: $(grep -c '"target":"gangway::access"' "$tmp/node-$access.log" || true) access lines written"
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def get(access, kind, r):
    try:
        return json.load(open(f"{out}/access-{access}-{kind}-{r}.json"))
    except (OSError, ValueError):
        return None
rows = [("echo", "round_trips_per_sec", "round trips/s"),
        ("fanout", "deliveries_per_sec", "deliveries/s"),
        ("churn", "connects_per_sec", "handshakes/s")]
print(f"{'workload':10} {'access on (median)':>20} {'access off (median)':>20}   every run (on | off)")
for kind, key, unit in rows:
    on = [get("on", kind, r) for r in range(1, rounds + 1)]
    off = [get("off", kind, r) for r in range(1, rounds + 1)]
    v_on = [j[key] for j in on if j]
    v_off = [j[key] for j in off if j]
    if not v_on or not v_off:
        print(f"{kind:10} missing results"); continue
    print(f"{kind:10} {statistics.median(v_on):>14,.0f} {unit:<5} {statistics.median(v_off):>14,.0f} {unit:<5}   "
          + " ".join(f"{v:,.0f}" for v in v_on) + " | " + " ".join(f"{v:,.0f}" for v in v_off))
PY

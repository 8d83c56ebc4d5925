#!/usr/bin/env bash
# A/B of two gangway binaries on the sparse workload (bench-compare.sh's B: 10 000 subscribers in
# two load processes, 100-byte messages through POST /@broadcast at 5/s for 20 s), run in
# alternating pairs so both see the same machine (a shared VM drifts by more than most changes):
#
#   scripts/bench-sparse-pair.sh OLD_BINARY NEW_BINARY [PAIRS]     (default 4 pairs)
#
# e.g. `cp target/release/gangway /tmp/gangway-old`, change the code, `cargo build --release`,
# then `scripts/bench-sparse-pair.sh /tmp/gangway-old target/release/gangway`.
# PIN=1 (the default) pins each node to core 0 and the load tool to core 1 (bench-compare's Bp);
# PIN=0 leaves them unpinned (B). SEND_PATH=sendmsg runs both with [limits] send_path = "sendmsg".
# REFERENCE=1 adds a run of the raw reference server to each pair. Every run's --json result goes
# to ${BENCH_OUT:-target/bench-pair}; one line per run is printed (p50/p90/p99 ms, CPU µs per
# delivery with the kernel's ksoftirqd time counted, the server's alone, connections held, lost).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,14p "$0"; exit 2; }
OLD=$(realpath "$1"); NEW=$(realpath "$2"); PAIRS=${3:-4}
PIN=${PIN:-1}; SEND_PATH=${SEND_PATH:-auto}; REFERENCE=${REFERENCE:-0}
for b in "$OLD" "$NEW"; do [ -x "$b" ] || { echo "bench-sparse-pair: $b is not an executable" >&2; exit 2; }; done
cargo build --release -q -p gangway-loadtest
L=target/release/gangway-loadtest
RES=${BENCH_OUT:-target/bench-pair}; mkdir -p "$RES"
OUT=target/bench-pair-config; mkdir -p "$OUT"
ulimit -n 20000
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; true' EXIT
SRC=0
run() { # tag binary-or-"reference"
  local tag=$1 bin=$2 url pub extra=() pin=()
  SRC=$(((SRC + 2) % 250))
  if [ "$bin" = reference ]; then
    local rws rpub; rws=$(free_port); rpub=$(free_port)
    "$L" reference --websocket "127.0.0.1:$rws" --publish "127.0.0.1:$rpub" >/dev/null &
    PID=$!; url="ws://127.0.0.1:$rws/"; pub="http://127.0.0.1:$rpub/pub"
  else
    local ws ctl be; ws=$(free_port); ctl=$(free_port); be=$(free_port)
    sed "s#127.0.0.1:3999#127.0.0.1:$be#" examples/bench.toml >"$OUT/$tag.toml"
    printf '\n[limits]\nsend_path = "%s"\n' "$SEND_PATH" >>"$OUT/$tag.toml"
    "$bin" --config "$OUT/$tag.toml" --websocket-listen "127.0.0.1:$ws" --control-listen "127.0.0.1:$ctl" >/dev/null &
    PID=$!; url="ws://127.0.0.1:$ws/?ch={channel}&i={i}"; pub="http://127.0.0.1:$ctl/@broadcast"
    extra=(--backend-listen "127.0.0.1:$be")
  fi
  sleep 1
  if [ "$PIN" = 1 ]; then taskset -a -p -c 0 "$PID" >/dev/null; pin=(taskset -c 1); fi
  "${pin[@]}" "$L" fanout --quiet --json --url "$url" --publish-url "$pub" --connections 10000 \
    --connect-rate 5000 --workers 2 --duration-secs 20 --rate 5 --concurrency 1 --size 100 \
    --channel-prefix "p$RANDOM" --source-ips "127.9.$SRC.1,127.9.$((SRC + 1)).1" \
    --server-pid "$PID" "${extra[@]}" >"$RES/$tag.json"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  python3 - "$RES/$tag.json" "$tag" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); d = r["delivery_latency"]
cpu = r.get("server_and_softirq_cpu_us_per_delivery") or 0
srv = r.get("server_cpu_us_per_delivery") or 0
print(f"{sys.argv[2]:>12}  p50 {d['p50_ms']:6.1f}  p90 {d['p90_ms']:6.1f}  p99 {d['p99_ms']:6.1f} ms  "
      f"cpu {cpu:5.2f} (server {srv:5.2f}) µs/delivery  held {r['connections_established']}  lost {r['lost']}")
PY
}
for i in $(seq 1 "$PAIRS"); do
  run "old-$i" "$OLD"
  run "new-$i" "$NEW"
  if [ "$REFERENCE" = 1 ]; then run "reference-$i" reference; fi
done

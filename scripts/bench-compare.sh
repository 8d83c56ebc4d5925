#!/usr/bin/env bash
# Side-by-side fan-out, in one run, on this machine: Gangway against the raw one-write-per-socket
# reference (gangway-loadtest reference) and nchan (Debian's nginx + libnginx-mod-nchan, 1 and 2
# workers). Each server runs alone while it is measured, with the same load tool and workloads:
#   A. dense: 1 000 subscribers on one channel, publishing as fast as 4 requests in flight
#      allow, 10 s;
#   B. sparse (the push-notification shape): 10 000 subscribers held by two load processes
#      (4 KiB read buffers), 100-byte messages to all of them at 5/s for 20 s (Gangway through
#      POST /@broadcast), run B_RUNS times (default 3); the table gives each column's median
#      (p50, p99, and the server's CPU time per delivery from /proc/PID/stat, all its threads,
#      from the first publish to the last delivery);
#   Bp. B again with the server pinned to core 0 and the load tool to core 1 (taskset), so
#      neither takes the other's core (PINNED=0 skips it).
# SERVERS (default "gangway reference nchan-1 nchan-2"; also "gangway-sendmsg") picks servers. Prints a table with ratios.
# Each run's --json result goes to ${BENCH_OUT:-target/bench} (relative to the repository root) as
# compare-<server>-<workload>.json, server one of gangway, reference, nchan-1, nchan-2 and
# workload A, B<k>/Bp<k> (run k), B/Bp (the run with the median p99); nginx's configuration and
# logs go to target/compare/.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
  echo "bench-compare: installing nginx and libnginx-mod-nchan"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq nginx libnginx-mod-nchan >/dev/null
fi
cargo build --release -q -p gangway -p gangway-loadtest
OUT=target/compare; rm -rf "$OUT"; mkdir -p "$OUT/nchan/logs" "$OUT/nchan/tmp"
RES=${BENCH_OUT:-target/bench}; mkdir -p "$RES"; rm -f "$RES"/compare-*.json
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
L=target/release/gangway-loadtest
PID=""
stop() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  PID=""; sleep 1
}
trap 'stop; [ -f "$OUT/nchan/nginx.pid" ] && kill -QUIT "$(cat "$OUT/nchan/nginx.pid")" 2>/dev/null; true' EXIT
SRC=0
B_RUNS=${B_RUNS:-3}
PINNED=${PINNED:-1}
SERVERS=${SERVERS:-"gangway reference nchan-1 nchan-2"}
wanted() { case " $SERVERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# The median-p99 run of workload $2 ("B" or "Bp") becomes compare-$1-$2.json.
pick_median() {
  python3 - "$RES" "$1" "$2" "$B_RUNS" <<'PY2'
import json, shutil, sys
res, name, w, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
r = {k: json.load(open(f"{res}/compare-{name}-{w}{k}.json")) for k in range(1, n + 1)}
# Among runs that held every connection and published; a failed run is never the one compared.
ok = [k for k in r if r[k]["connections_established"] == r[k]["connections_requested"] and r[k]["published"] > 0]
runs = sorted(ok or list(r), key=lambda k: r[k]["delivery_latency"]["p99_ms"])
shutil.copyfile(f"{res}/compare-{name}-{w}{runs[(len(runs) - 1) // 2]}.json", f"{res}/compare-{name}-{w}.json")
PY2
}
measure() { # name url publish_url_A publish_url_B server_pids extra...
  local name=$1 url=$2 pub=$3 pub_b=$4 pids=$5; shift 5
  SRC=$((SRC + 1))
  "$L" fanout --quiet --json --url "$url" --publish-url "$pub" --connections 1000 --duration-secs 10 \
    --concurrency 4 --channel-prefix "a$RANDOM$SRC" --source-ips "127.0.6.$SRC" --server-pid "$pids" \
    "$@" >"$RES/compare-$name-A.json"
  # Workload B's p99 moves from run to run by more than the differences it is meant to show
  # (one process's hiccup moves it by 10-20 ms), so it runs $B_RUNS times.
  local sets="B" w pin k
  [ "$PINNED" = 1 ] && sets="B Bp"
  for w in $sets; do
    pin=""
    if [ "$w" = Bp ]; then
      for p in ${pids//,/ }; do taskset -a -p -c 0 "$p" >/dev/null; done
      pin="taskset -c 1"
    fi
    for k in $(seq 1 "$B_RUNS"); do
      SRC=$((SRC + 1))
      $pin "$L" fanout --quiet --json --url "$url" --publish-url "$pub_b" --connections 10000 \
        --connect-rate 5000 --workers 2 --duration-secs 20 --rate 5 --concurrency 1 --size 100 \
        --channel-prefix "b$RANDOM$SRC" --source-ips "127.0.7.$SRC,127.0.8.$SRC" \
        --server-pid "$pids" "$@" >"$RES/compare-$name-$w$k.json"
    done
    if [ "$w" = Bp ]; then
      for p in ${pids//,/ }; do taskset -a -p -c 0-$(($(nproc) - 1)) "$p" >/dev/null; done
    fi
    pick_median "$name" "$w"
  done
  echo "bench-compare: $name done"
  python3 scripts/render-benchmarks.py --summary "$RES/compare-$name-A.json" "$RES/compare-$name-B.json"
}

# Gangway (the node's $connect puts each client in its ?ch= channel via the tool's backend);
# "gangway-sendmsg" in SERVERS also runs it with [limits] send_path = "sendmsg" (no io_uring).
for variant in gangway gangway-sendmsg; do
  wanted "$variant" || continue
  WS=$(free_port); CTL=$(free_port); BACKEND=$(free_port)
  sed "s#127.0.0.1:3999#127.0.0.1:$BACKEND#" examples/bench.toml >"$OUT/$variant.toml"
  if [ "$variant" = gangway-sendmsg ]; then printf '\n[limits]\nsend_path = "sendmsg"\n' >>"$OUT/$variant.toml"; fi
  target/release/gangway --config "$OUT/$variant.toml" --websocket-listen 127.0.0.1:$WS --control-listen 127.0.0.1:$CTL &
  PID=$!; sleep 1
  measure "$variant" "ws://127.0.0.1:$WS/?ch={channel}&i={i}" "http://127.0.0.1:$CTL/@channels/{channel}" \
    "http://127.0.0.1:$CTL/@broadcast" "$PID" --backend-listen 127.0.0.1:$BACKEND
  stop
done

# The raw reference (one channel: every socket).
if wanted reference; then
  RWS=$(free_port); RPUB=$(free_port)
  "$L" reference --websocket 127.0.0.1:$RWS --publish 127.0.0.1:$RPUB >/dev/null &
  PID=$!; sleep 1
  measure reference "ws://127.0.0.1:$RWS/" "http://127.0.0.1:$RPUB/pub" "http://127.0.0.1:$RPUB/pub" "$PID"
  stop
fi

for workers in 1 2; do
  wanted "nchan-$workers" || continue
  NP=$(free_port)
  cat >"$OUT/nchan/nginx.conf" <<NGINX
load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
worker_processes $workers;
worker_rlimit_nofile 19000;
pid $PWD/$OUT/nchan/nginx.pid;
error_log $PWD/$OUT/nchan/logs/error.log warn;
events { worker_connections 19000; }
http {
  access_log off;
  client_body_temp_path $PWD/$OUT/nchan/tmp/body; proxy_temp_path $PWD/$OUT/nchan/tmp/proxy;
  fastcgi_temp_path $PWD/$OUT/nchan/tmp/fastcgi; uwsgi_temp_path $PWD/$OUT/nchan/tmp/uwsgi; scgi_temp_path $PWD/$OUT/nchan/tmp/scgi;
  server {
    listen 127.0.0.1:$NP;
    location = /sub { nchan_subscriber websocket; nchan_channel_id \$arg_id; }
    location = /pub { nchan_publisher; nchan_channel_id \$arg_id; }
  }
}
NGINX
  nginx -c "$PWD/$OUT/nchan/nginx.conf" -p "$PWD/$OUT/nchan/"
  sleep 1
  NPIDS=$(cat "$OUT/nchan/nginx.pid"),$(pgrep -d, -P "$(cat "$OUT/nchan/nginx.pid")")
  measure "nchan-$workers" "ws://127.0.0.1:$NP/sub?id={channel}" "http://127.0.0.1:$NP/pub?id={channel}" \
    "http://127.0.0.1:$NP/pub?id={channel}" "$NPIDS"
  kill -QUIT "$(cat "$OUT/nchan/nginx.pid")"; sleep 2
done

python3 scripts/compare-table.py "$RES" $SERVERS

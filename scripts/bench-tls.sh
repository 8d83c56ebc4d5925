#!/usr/bin/env bash
# Fan-out and handshakes over TLS, side by side in one run (BENCHMARKS.md, "TLS"): Gangway with
# [tls.websocket] against nginx + nchan (2 workers) terminating TLS with the same certificate
# (a throwaway CA and a 127.0.0.1 certificate made with openssl: KEY=rsa, RSA 2048, the default,
# or KEY=ecdsa, P-256), and Gangway in the
# clear for scale. Each server runs alone while it is measured, with the same load tool:
#   W1: 1 000 wss:// subscribers on one channel, publishing (plain HTTP) as fast as 4 requests in
#       flight allow, 10 s — deliveries/s;
#   H:  5 000 wss:// connections opened at up to 50 000/s, held 1 s — handshakes/s (TLS + upgrade).
# Every H connection is a distinct client with a full TLS handshake; RESUME=1 lets the load tool
# resume sessions from earlier connections' tickets (--tls-resume), as reconnecting clients do.
# RUNS (default 3) rounds; prints every run and the medians. JSON results go to
# ${BENCH_OUT:-target/bench}/tls-<server>-<W1|H>-<round>.json (overwritten by the next run).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
  echo "bench-tls: installing nginx and libnginx-mod-nchan"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq nginx libnginx-mod-nchan >/dev/null
fi
cargo build --release -q -p gangway -p gangway-loadtest
RES=${BENCH_OUT:-target/bench}; mkdir -p "$RES"
RUNS=${RUNS:-3}
OUT=$(mktemp -d -t gangway-tls.XXXXXX); mkdir -p "$OUT/nchan/logs" "$OUT/nchan/tmp"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
L=target/release/gangway-loadtest
PID=""
stop() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  PID=""; sleep 1
}
trap 'stop; [ -f "$OUT/nchan/nginx.pid" ] && kill -QUIT "$(cat "$OUT/nchan/nginx.pid")" 2>/dev/null; rm -rf "$OUT"' EXIT

# The certificate both servers use.
# KEY=rsa (default, RSA 2048) or KEY=ecdsa (P-256): the handshake's cost is mostly the
# server's signature.
case "${KEY:-rsa}" in
  rsa) NEWKEY=(-newkey rsa:2048) ;;
  ecdsa) NEWKEY=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
  *) echo "bench-tls: KEY must be rsa or ecdsa" >&2; exit 2 ;;
esac
openssl req -x509 "${NEWKEY[@]}" -nodes -days 1 -subj "/CN=bench CA" -keyout "$OUT/ca.key" -out "$OUT/ca.pem" 2>/dev/null
openssl req "${NEWKEY[@]}" -nodes -subj "/CN=127.0.0.1" -keyout "$OUT/server.key" -out "$OUT/server.csr" 2>/dev/null
echo "subjectAltName=IP:127.0.0.1" >"$OUT/ext.cnf"
openssl x509 -req -in "$OUT/server.csr" -CA "$OUT/ca.pem" -CAkey "$OUT/ca.key" -CAcreateserial -days 1 \
  -extfile "$OUT/ext.cnf" -out "$OUT/server.pem" 2>/dev/null

SRC=0
w1() { # name round url publish_url extra...
  local name=$1 round=$2 url=$3 pub=$4; shift 4
  SRC=$((SRC + 1))
  local ca=(); if [[ $url == wss://* ]]; then ca=(--ca-file "$OUT/ca.pem"); fi
  "$L" fanout --quiet --json --url "$url" --publish-url "$pub" --connections 1000 --duration-secs 10 \
    --concurrency 4 --channel-prefix "w$RANDOM$SRC" --source-ips "127.0.9.$SRC" "${ca[@]}" "$@" \
    >"$RES/tls-$name-W1-$round.json"
}
handshakes() { # name round url
  local name=$1 round=$2 url=$3
  SRC=$((SRC + 1))
  local ca=(); if [[ $url == wss://* ]]; then ca=(--ca-file "$OUT/ca.pem"); fi
  if [ "${RESUME:-0}" = 1 ]; then ca+=(--tls-resume); fi
  "$L" connect --quiet --json --url "$url" --connections 5000 --connect-rate 50000 --hold-secs 1 \
    --source-ips "127.0.10.$SRC,127.0.11.$SRC" "${ca[@]}" >"$RES/tls-$name-H-$round.json"
}
tls_section() { printf '[tls.websocket]\ncert_file = "%s"\nkey_file = "%s"\n' "$OUT/server.pem" "$OUT/server.key"; }

for round in $(seq 1 "$RUNS"); do
  for tls in on off; do
    scheme=ws; if [ "$tls" = on ]; then scheme=wss; fi
    # W1: examples/bench.toml, whose $connect puts each client in its ?ch= channel.
    WS=$(free_port); CTL=$(free_port); BACKEND=$(free_port)
    sed "s#127.0.0.1:3999#127.0.0.1:$BACKEND#" examples/bench.toml >"$OUT/gangway.toml"
    if [ "$tls" = on ]; then tls_section >>"$OUT/gangway.toml"; fi
    target/release/gangway --config "$OUT/gangway.toml" --websocket-listen 127.0.0.1:$WS --control-listen 127.0.0.1:$CTL &
    PID=$!; sleep 1
    w1 "gangway-$tls" "$round" "$scheme://127.0.0.1:$WS/?ch={channel}&i={i}" \
      "http://127.0.0.1:$CTL/@channels/{channel}" --backend-listen 127.0.0.1:$BACKEND
    stop
    # H: no $connect route (the handshake itself is measured).
    WS=$(free_port); CTL=$(free_port)
    printf '[routes."$default"]\nintegration = "mock"\n[log]\nlevel = "warn"\n' >"$OUT/plain.toml"
    if [ "$tls" = on ]; then tls_section >>"$OUT/plain.toml"; fi
    target/release/gangway --config "$OUT/plain.toml" --websocket-listen 127.0.0.1:$WS --control-listen 127.0.0.1:$CTL &
    PID=$!; sleep 1
    handshakes "gangway-$tls" "$round" "$scheme://127.0.0.1:$WS/"
    stop
  done
  NP=$(free_port); NS=$(free_port)
  cat >"$OUT/nchan/nginx.conf" <<NGINX
load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
worker_processes 2;
worker_rlimit_nofile 19000;
pid $OUT/nchan/nginx.pid;
error_log $OUT/nchan/logs/error.log warn;
events { worker_connections 19000; }
http {
  access_log off;
  client_body_temp_path $OUT/nchan/tmp/body; proxy_temp_path $OUT/nchan/tmp/proxy;
  fastcgi_temp_path $OUT/nchan/tmp/fastcgi; uwsgi_temp_path $OUT/nchan/tmp/uwsgi; scgi_temp_path $OUT/nchan/tmp/scgi;
  server {
    listen 127.0.0.1:$NS ssl;
    ssl_certificate $OUT/server.pem;
    ssl_certificate_key $OUT/server.key;
    location = /sub { nchan_subscriber websocket; nchan_channel_id \$arg_id; }
  }
  server {
    listen 127.0.0.1:$NP;
    location = /pub { nchan_publisher; nchan_channel_id \$arg_id; }
  }
}
NGINX
  nginx -c "$OUT/nchan/nginx.conf" -p "$OUT/nchan/"
  sleep 1
  w1 nchan-tls "$round" "wss://127.0.0.1:$NS/sub?id={channel}" "http://127.0.0.1:$NP/pub?id={channel}"
  handshakes nchan-tls "$round" "wss://127.0.0.1:$NS/sub?id=h$round"
  kill -QUIT "$(cat "$OUT/nchan/nginx.pid")"; sleep 2
  echo "bench-tls: round $round done"
done

python3 - "$RES" "$RUNS" <<'PY'
import json, statistics, sys
res, runs = sys.argv[1], int(sys.argv[2])
names = ["gangway-on", "nchan-tls", "gangway-off"]
label = {"gangway-on": "Gangway, wss://", "nchan-tls": "nginx + nchan (2 workers), wss://", "gangway-off": "Gangway, ws:// (no TLS)"}
def vals(name, w, key):
    out = []
    for r in range(1, runs + 1):
        j = json.load(open(f"{res}/tls-{name}-{w}-{r}.json"))
        out.append((j[key], j))
    return out
med = {}
print("| Server | W1 deliveries/s (median; runs) | W1 lost | handshakes/s (median; runs) | established |")
print("|---|---|---|---|---|")
for n in names:
    w1 = vals(n, "W1", "deliveries_per_sec")
    h = vals(n, "H", "connects_per_sec")
    m1 = statistics.median(v for v, _ in w1); mh = statistics.median(v for v, _ in h)
    med[n] = (m1, mh)
    print(f"| {label[n]} | {m1:,.0f} ({', '.join(f'{v:,.0f}' for v, _ in w1)}) | "
          f"{sum(j['lost'] for _, j in w1)} | {mh:,.0f} ({', '.join(f'{v:,.0f}' for v, _ in h)}) | "
          f"{min(j['connections_established'] for _, j in h)} of {h[0][1]['connections_requested']} |")
g, n = med["gangway-on"], med["nchan-tls"]
print(f"\nGangway TLS / nchan TLS: W1 {g[0] / n[0]:.2f}x, handshakes {g[1] / n[1]:.2f}x")
PY

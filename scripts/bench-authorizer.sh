#!/usr/bin/env bash
# Handshakes per second with a connect-time authorizer (BENCHMARKS.md, "Authorizers"): one
# release node whose $default echoes, with a `jwt` authorizer over ES256 or RS256 (keys made by
# openssl, the token signed by Node.js's crypto), with a `request` authorizer whose decisions
# are cached (a small Python server answers Allow; every connection presents the same identity,
# so all but the first are cache hits), and without one for scale. 10 000 connections
# at up to 50 000/s from 127.0.12.x, held 1 s, every one carrying the token in ?token=.
# RUNS (default 3) per setting; prints every run and the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p gangway -p gangway-loadtest
RUNS=${RUNS:-3}
OUT=$(mktemp -d -t gangway-authz.XXXXXX)
PID=""
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; fi; sleep 1; }
trap 'stop; rm -rf "$OUT"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$OUT/es.key" 2>/dev/null
openssl pkey -in "$OUT/es.key" -pubout -out "$OUT/es.pub"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$OUT/rs.key" 2>/dev/null
openssl pkey -in "$OUT/rs.key" -pubout -out "$OUT/rs.pub"
token() { # alg keyfile
  node -e '
    const c = require("crypto"), fs = require("fs");
    const [alg, file] = process.argv.slice(1);
    const b = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const input = b({alg, typ: "JWT"}) + "." + b({sub: "bench", exp: Math.floor(Date.now() / 1000) + 3600});
    const key = fs.readFileSync(file);
    const sig = alg === "ES256"
      ? c.sign("sha256", Buffer.from(input), {key, dsaEncoding: "ieee-p1363"})
      : c.sign("sha256", Buffer.from(input), key);
    console.log(input + "." + sig.toString("base64url"));' "$1" "$2"
}
# The request authorizer's backend: Allow for everyone.
AUTHZ=$(free_port)
python3 - "$AUTHZ" <<'PY' &
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
ANSWER = json.dumps({"principalId": "bench", "policyDocument": {"Version": "2012-10-17",
    "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"}]}}).encode()
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Length", str(len(ANSWER))); self.end_headers()
        self.wfile.write(ANSWER)
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
AUTHZ_PID=$!
trap 'stop; kill $AUTHZ_PID 2>/dev/null; rm -rf "$OUT"' EXIT
declare -A TOKENS=([ES256]=$(token ES256 "$OUT/es.key") [RS256]=$(token RS256 "$OUT/rs.key"))
SRC=0
for round in $(seq 1 "$RUNS"); do
  for alg in none ES256 RS256 request; do
    WS=$(free_port); CTL=$(free_port)
    printf '[routes."$default"]\nintegration = "mock"\n[log]\nlevel = "warn"\n' >"$OUT/node.toml"
    q=""
    if [ "$alg" = request ]; then
      printf '[api]\nwebhook_secret = "bench-authorizer-secret"\n[authorizer]\ntype = "request"\nurl = "http://127.0.0.1:%s/authorize"\nidentity_sources = ["route.request.querystring.token"]\nttl_secs = 300\n' \
        "$AUTHZ" >>"$OUT/node.toml"
      q="?token=same-for-everyone"
    elif [ "$alg" != none ]; then
      prefix=${alg:0:2}; pub="$OUT/${prefix,,}.pub"
      printf '[authorizer]\ntype = "jwt"\ntoken_source = "query:token"\nalgorithms = ["%s"]\npublic_keys = ["""%s"""]\n' \
        "$alg" "$(cat "$pub")" >>"$OUT/node.toml"
      q="?token=${TOKENS[$alg]}"
    fi
    target/release/gangway --config "$OUT/node.toml" --websocket-listen 127.0.0.1:$WS --control-listen 127.0.0.1:$CTL &
    PID=$!; sleep 1
    SRC=$((SRC + 1))
    target/release/gangway-loadtest connect --quiet --json --url "ws://127.0.0.1:$WS/$q" \
      --connections 10000 --connect-rate 50000 --hold-secs 1 \
      --source-ips "127.0.12.$SRC,127.0.13.$SRC" >"$OUT/$alg-$round.json"
    stop
  done
done
python3 - "$OUT" "$RUNS" <<'PY'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
print("| Authorizer | handshakes/s (median; runs) | established |")
print("|---|---|---|")
for alg, label in [("ES256", "jwt, ES256"), ("RS256", "jwt, RS256"), ("request", "request, cached"), ("none", "none")]:
    r = [json.load(open(f"{out}/{alg}-{k}.json")) for k in range(1, runs + 1)]
    v = [j["connects_per_sec"] for j in r]
    print(f"| {label} | {statistics.median(v):,.0f} ({', '.join(f'{x:,.0f}' for x in v)}) | "
          f"{min(j['connections_established'] for j in r)} of {r[0]['connections_requested']} |")
PY

#!/usr/bin/env bash
# Runs deploy/compose.yaml's topology natively, without Docker, and checks the monitoring half:
#   a redis-server, three Gangway nodes in cluster mode (control API on loopback, with tokens),
#   and Prometheus scraping the three nodes every second with deploy/prometheus/alerts.yaml,
# all on free loopback ports, from a temporary directory. Then, through Prometheus's HTTP API:
#   - every node's target is up (polled for up to 30 s);
#   - every group and alert of alerts.yaml is loaded, and evaluates without error;
#   - every query of deploy/grafana/gangway.json (its variables filled in) is valid PromQL;
#   - with gangway-3 killed and Redis stopped, GangwayNodeDown (gangway-3) and
#     GangwayRedisUnreachable (the two others) go active, and no other alert;
# and stops everything (processes and the temporary directory) however it exits.
#
#   scripts/deploy-topology.sh            GANGWAY_BIN=target/release/gangway scripts/deploy-topology.sh
#
# GANGWAY_BIN: the gangway binary (default target/debug/gangway). Prometheus is Debian's
# /usr/bin/prometheus and redis-server Debian's, installed with apt when missing (sudo when not
# root; on a machine with systemd, Debian's prometheus package also starts its own service).
# Takes about 10 s.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

BIN=${GANGWAY_BIN:-target/debug/gangway}
# Gangway refuses GANGWAY_ variables it does not know (GANGWAY_BIN included): the nodes get
# their whole configuration from the files written below.
for v in ${!GANGWAY_@}; do unset "$v"; done
[[ $BIN == /* ]] || BIN="$ROOT/$BIN"
if [[ ! -x $BIN ]]; then
  echo "deploy-topology: $BIN not found: cargo build -p gangway, or set GANGWAY_BIN" >&2
  exit 1
fi

need=()
[[ -x /usr/bin/prometheus ]] || need+=(prometheus)
command -v redis-server >/dev/null || need+=(redis-server)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  SUDO=()
  ((EUID == 0)) || SUDO=(sudo)
  echo "deploy-topology: installing ${need[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gangway-topology.XXXXXX")
PIDS=()
cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if ((status != 0)); then
    for log in "$TMP"/*.log; do
      [[ -s $log ]] || continue
      echo "---- last lines of $(basename "$log")" >&2
      tail -n 20 "$log" >&2
    done
  fi
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Eight free loopback ports: redis, 3 x (websocket, control), prometheus.
read -r REDIS_PORT WS1 CTL1 WS2 CTL2 WS3 CTL3 PROM_PORT < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(8):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)
WS=("$WS1" "$WS2" "$WS3")
CTL=("$CTL1" "$CTL2" "$CTL3")
TOKEN="topology-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
  --dir "$TMP" --logfile "$TMP/redis.log" &
PIDS+=($!)
for _ in $(seq 50); do
  [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && break
  sleep 0.1
done
[[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] || { echo "FAIL redis-server did not start" >&2; exit 1; }
echo "ok   redis-server on 127.0.0.1:$REDIS_PORT"

for i in 0 1 2; do
  n=$((i + 1))
  cat >"$TMP/gangway-$n.toml" <<EOF
# deploy-topology.sh: node $n of 3 (deploy/compose.yaml's gangway-$n).
[listen]
websocket = "127.0.0.1:${WS[i]}"
control = "127.0.0.1:${CTL[i]}"

[api]
stage = "prod"

[routes."\$default"]
integration = "mock"

[control]
tokens = ["$TOKEN"]

[cluster]
redis_url = "redis://127.0.0.1:$REDIS_PORT"
node_id = "gangway-$n"
control_url = "http://127.0.0.1:${CTL[i]}"

[log]
level = "warn"
EOF
  "$BIN" --check --config "$TMP/gangway-$n.toml" >/dev/null
  "$BIN" --config "$TMP/gangway-$n.toml" >"$TMP/gangway-$n.log" 2>&1 &
  PIDS+=($!)
done

for i in 0 1 2; do
  n=$((i + 1))
  ready=
  for _ in $(seq 100); do
    if curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:${CTL[i]}/readyz" 2>/dev/null; then
      ready=1
      break
    fi
    sleep 0.1
  done
  [[ -n $ready ]] || { echo "FAIL gangway-$n is not ready on 127.0.0.1:${CTL[i]}" >&2; exit 1; }
  echo "ok   gangway-$n ready (websocket 127.0.0.1:${WS[i]}, control 127.0.0.1:${CTL[i]})"
done

cp deploy/prometheus/alerts.yaml "$TMP/alerts.yaml"
cat >"$TMP/prometheus.yml" <<EOF
# deploy-topology.sh: deploy/prometheus/prometheus.yml with this run's ports.
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - alerts.yaml
scrape_configs:
  - job_name: gangway
    static_configs:
      - targets: ["127.0.0.1:$CTL1", "127.0.0.1:$CTL2", "127.0.0.1:$CTL3"]
EOF
/usr/bin/prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prometheus-data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
echo "ok   prometheus $(/usr/bin/prometheus --version 2>&1 | head -n1 | awk '{print $3}') on 127.0.0.1:$PROM_PORT"

PROM="http://127.0.0.1:$PROM_PORT" python3 - "$CTL1" "$CTL2" "$CTL3" <<'EOF'
# Every node's target is up.
import json, os, sys, time, urllib.request
prom = os.environ["PROM"]
want = {f"127.0.0.1:{p}" for p in sys.argv[1:]}
deadline = time.monotonic() + 30
health = {}
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(f"{prom}/api/v1/targets?state=active", timeout=2) as r:
            data = json.load(r)["data"]["activeTargets"]
        health = {t["labels"]["instance"]: (t["health"], t.get("lastError", ""))
                  for t in data if t["labels"].get("job") == "gangway"}
        if all(health.get(i, ("",))[0] == "up" for i in want):
            break
    except OSError:
        pass
    time.sleep(0.5)
failed = 0
for i in sorted(want):
    h, err = health.get(i, ("absent", ""))
    ok = h == "up"
    failed += not ok
    print(f"{'ok  ' if ok else 'FAIL'} target {i} (job gangway): {h}" + (f" {err}" if err else ""))
sys.exit(1 if failed else 0)
EOF

PROM="http://127.0.0.1:$PROM_PORT" python3 - deploy/prometheus/alerts.yaml <<'EOF'
# Every group and alert of alerts.yaml is loaded and has been evaluated without error.
import json, os, re, sys, time, urllib.request
prom = os.environ["PROM"]
text = open(sys.argv[1]).read()
try:
    import yaml
    doc = yaml.safe_load(text)
    want = {g["name"]: [r.get("alert") or r.get("record") for r in g["rules"]] for g in doc["groups"]}
except ImportError:  # no PyYAML: alerts.yaml's own layout
    want, group = {}, None
    for line in text.splitlines():
        m = re.match(r"\s*- name:\s*(\S+)", line)
        if m:
            group = m.group(1)
            want[group] = []
        m = re.match(r"\s*- (?:alert|record):\s*(\S+)", line)
        if m:
            want[group].append(m.group(1))
deadline = time.monotonic() + 15
while True:
    with urllib.request.urlopen(f"{prom}/api/v1/rules", timeout=2) as r:
        groups = {g["name"]: g for g in json.load(r)["data"]["groups"]}
    rules = {(g, rule["name"]): rule for g, gr in groups.items() for rule in gr["rules"]}
    pending = [k for k in rules if rules[k].get("health") == "unknown"]
    if (not pending and all(g in groups for g in want)) or time.monotonic() > deadline:
        break
    time.sleep(0.5)
failed = 0
for g, names in want.items():
    ok = g in groups
    failed += not ok
    print(f"{'ok  ' if ok else 'FAIL'} rule group {g} loaded")
    for name in names:
        rule = rules.get((g, name))
        ok = rule is not None and rule.get("health") == "ok"
        failed += not ok
        state = "absent" if rule is None else f"health {rule.get('health')}, state {rule.get('state', '-')}"
        err = rule.get("lastError") if rule else ""
        print(f"{'ok  ' if ok else 'FAIL'}   {name}: {state}" + (f": {err}" if err else ""))
extra = set(groups) - set(want)
if extra:
    print(f"FAIL unexpected rule groups: {sorted(extra)}")
    failed += 1
sys.exit(1 if failed else 0)
EOF

PROM="http://127.0.0.1:$PROM_PORT" python3 - deploy/grafana/gangway.json <<'EOF'
# Every query of the dashboard, its variables filled in, is valid PromQL for this Prometheus.
import json, os, re, sys, urllib.error, urllib.parse, urllib.request
prom = os.environ["PROM"]
dash = json.load(open(sys.argv[1]))
values = {"job": "gangway", "instance": ".+", "datasource": "prometheus",
          "__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
def fill(expr):
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), expr)
queries = []
def walk(panels):
    for p in panels:
        for t in p.get("targets") or []:
            if t.get("expr"):
                queries.append((p.get("title"), t["expr"]))
        walk(p.get("panels") or [])
walk(dash.get("panels") or [])
for v in (dash.get("templating") or {}).get("list") or []:
    q = v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", q or "")
    if m:  # Grafana's label_values(selector, label): the selector must be valid PromQL
        queries.append((f"variable {v['name']}", m.group(1)))
failed = 0
for title, expr in queries:
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": fill(expr)})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            ok, err = json.load(r)["status"] == "success", ""
    except urllib.error.HTTPError as e:
        ok, err = False, json.load(e).get("error", str(e))
    failed += not ok
    if not ok:
        print(f"FAIL dashboard query ({title}): {expr}: {err}")
print(f"{'ok  ' if not failed else 'FAIL'} dashboard: {len(queries) - failed} of {len(queries)} queries valid PromQL")
sys.exit(1 if failed else 0)
EOF

# The alerts against real nodes: SIGKILL gangway-3 and stop Redis; GangwayNodeDown must go
# pending for gangway-3 and GangwayRedisUnreachable for the two others (both wait their `for`
# before firing), and nothing else may be active.
{ kill -KILL "${PIDS[3]}" && wait "${PIDS[3]}"; } 2>/dev/null || true
kill "${PIDS[0]}"
PROM="http://127.0.0.1:$PROM_PORT" python3 - "$CTL1" "$CTL2" "$CTL3" <<'EOF'
import json, os, sys, time, urllib.request
prom = os.environ["PROM"]
i1, i2, i3 = (f"127.0.0.1:{p}" for p in sys.argv[1:])
want = {("GangwayNodeDown", i3), ("GangwayRedisUnreachable", i1), ("GangwayRedisUnreachable", i2)}
deadline = time.monotonic() + 20
while True:
    with urllib.request.urlopen(f"{prom}/api/v1/alerts", timeout=2) as r:
        alerts = json.load(r)["data"]["alerts"]
    active = {(a["labels"]["alertname"], a["labels"].get("instance")): a["state"] for a in alerts}
    if set(active) >= want or time.monotonic() > deadline:
        break
    time.sleep(0.5)
failed = 0
for key in sorted(want):
    ok = key in active
    failed += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {key[0]} active for {key[1]}: {active.get(key, 'inactive')}")
for key in sorted(set(active) - want):
    failed += 1
    print(f"FAIL {key[0]} active for {key[1]} ({active[key]}): not expected")
sys.exit(1 if failed else 0)
EOF

echo "deploy-topology: all checks passed"

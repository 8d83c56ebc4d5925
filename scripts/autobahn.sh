#!/usr/bin/env bash
# Runs the Autobahn WebSocket conformance cases (via kosoku, a Python 3 runner of the Autobahn
# case files) against a gangway node whose $default route is a mock echo. Fails on any case that
# is not OK, NON-STRICT or INFORMATIONAL. 9.* (performance), and 12.*/13.* (permessage-deflate,
# which Gangway does not negotiate) are left out.
#
# Usage: scripts/autobahn.sh [path/to/gangway]   (default: target/debug/gangway)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/gangway}
VENV=${AUTOBAHN_VENV:-.venv}
OUT=${AUTOBAHN_OUT:-target/autobahn}

if [ ! -x "$VENV/bin/kosoku" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check kosoku
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WS_PORT=$(free_port)
CTL_PORT=$(free_port)

"$BIN" --config examples/autobahn.toml \
  --websocket-listen "127.0.0.1:$WS_PORT" --control-listen "127.0.0.1:$CTL_PORT" \
  --log-level warn >"$OUT.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$WS_PORT") 2>/dev/null; then break; fi
  sleep 0.1
done

rm -rf "$OUT"
set +e
"$VENV/bin/kosoku" -m fuzzingclient -p 2 -o "$OUT" -x '9.*' -x '12.*' -x '13.*' "127.0.0.1:$WS_PORT" >"$OUT.kosoku.log" 2>&1
STATUS=$?
set -e
python3 - "$OUT" <<'PY'
import json, sys, glob, collections
paths = glob.glob(sys.argv[1] + "/**/index.json", recursive=True)
if not paths:
    sys.exit("autobahn: no index.json report found")
index = json.load(open(paths[0]))
counts = collections.Counter()
bad = []
for agent, cases in index.items():
    for case, r in cases.items():
        counts[r["behavior"]] += 1
        ok = r["behavior"] in ("OK", "NON-STRICT", "INFORMATIONAL") and \
             r.get("behaviorClose", "OK") in ("OK", "INFORMATIONAL", "NON-STRICT")
        if not ok:
            bad.append((case, r["behavior"], r.get("behaviorClose")))
print("autobahn:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), f"({sum(counts.values())} cases)")
for case, b, c in sorted(bad)[:30]:
    print(f"autobahn: FAILED case {case}: behavior={b} close={c}")
if len(bad) > 30:
    print(f"autobahn: ... and {len(bad) - 30} more failed cases")
sys.exit(1 if bad else 0)
PY
REPORT=$?
if [ "$STATUS" -ne 0 ] && [ "$REPORT" -eq 0 ]; then
  echo "autobahn: kosoku exited $STATUS (see $OUT.kosoku.log)"; exit "$STATUS"
fi
exit "$REPORT"

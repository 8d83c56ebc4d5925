#!/usr/bin/env bash
# The whole Gangway test suite, runnable on a fresh Debian machine with a Rust toolchain:
#   1. installs what the tests need and the machine lacks: redis-server, openssl, Node.js/npm
#      and python3 venv support (apt); in .venv the AWS clients (boto3, awscli) and the
#      Autobahn runner (kosoku) from PyPI; in tests/js the AWS SDK for JavaScript v3 (npm);
#      cargo-fuzz (crates.io);
#   2. runs every Rust test (unit and integration: real nodes, clients and backends on
#      127.0.0.1:0, redis-server processes, boto3/the AWS CLI/the JS SDK against a node);
#   3. runs the Autobahn WebSocket conformance cases against a real node (scripts/autobahn.sh);
#   4. runs a one-minute chaos run (scripts/chaos.sh; CHAOS_MINUTES) and every fuzz target for
#      a few seconds (scripts/fuzz.sh);
#   5. checks that the broker's modules import each other without a cycle (scripts/module-graph.py);
#   6. checks deploy/ with the real tools: hadolint, gangway --check on every config, kubectl
#      kustomize + kubernetes-validate, systemd-analyze verify (scripts/check-deploy.sh); the
#      compose file (scripts/check-compose.py); promtool check/test on the alerting rules; the
#      compose topology run natively with Prometheus scraping it (scripts/deploy-topology.sh);
#   7. runs the chat example in headless Chromium (tests/js/chat_browser.mjs, playwright-core).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v python3 >/dev/null || need_apt+=(python3)
# The cluster tests start their own redis-server processes on free ports.
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
# The Redis TLS test makes a throwaway CA.
command -v openssl >/dev/null || need_apt+=(openssl)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
# The chat example's browser test; promtool and Prometheus for the alerting rules and the
# monitored topology; kubectl and systemd-analyze check deploy/ (kubectl is not in Debian 12:
# scripts/check-deploy.sh says so when it is missing).
command -v chromium >/dev/null || need_apt+=(chromium)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if ! .venv/bin/python -c 'import boto3, awscli, kosoku, websockets' 2>/dev/null; then
  echo "test.sh: installing boto3, awscli, kosoku and websockets into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check boto3 awscli kosoku websockets
fi
if [ ! -d tests/js/node_modules/@aws-sdk/client-apigatewaymanagementapi ] || [ ! -d tests/js/node_modules/playwright-core ]; then
  echo "test.sh: installing the AWS SDK for JavaScript v3 and playwright-core into tests/js"
  npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
fi

# The broker's imports run one way (ARCHITECTURE.md, "broker modules").
python3 scripts/module-graph.py
cargo build --workspace --bins
cargo test --workspace
scripts/autobahn.sh target/debug/gangway
# A one-minute chaos run: the $disconnect contract under node kills, partitions, Redis restarts
# and pauses (RELIABILITY.md has the 15-minute one).
scripts/chaos.sh --minutes "${CHAOS_MINUTES:-1}" --clients 300
scripts/fuzz.sh "${FUZZ_SECONDS:-5}"
# deploy/: the image, Kubernetes, systemd, compose, the alerting rules and the dashboard.
GANGWAY_BIN=target/debug/gangway scripts/check-deploy.sh
GANGWAY_BIN=target/debug/gangway python3 scripts/check-compose.py
promtool check rules deploy/prometheus/alerts.yaml
promtool test rules deploy/prometheus/alerts.test.yaml
GANGWAY_BIN=target/debug/gangway scripts/deploy-topology.sh
# The chat example, in a real browser.
node tests/js/chat_browser.mjs target/debug/gangway

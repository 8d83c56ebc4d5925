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
#   5. checks that the broker's modules import each other without a cycle (scripts/module-graph.py).
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
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if ! .venv/bin/python -c 'import boto3, awscli, kosoku' 2>/dev/null; then
  echo "test.sh: installing boto3, awscli and kosoku into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check boto3 awscli kosoku
fi
if [ ! -d tests/js/node_modules/@aws-sdk/client-apigatewaymanagementapi ]; then
  echo "test.sh: installing the AWS SDK for JavaScript v3 into tests/js"
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

#!/usr/bin/env bash
# The chaos run (ARCHITECTURE.md, "The $disconnect contract"): Redis and three gangway nodes on
# loopback, clients connecting, receiving pushes and publishes and leaving, and one fault at a
# time — a node SIGKILLed and restarted, a node cut off from Redis, Redis restarted with its
# data, a node paused — then the contract checked for every connection ever opened. Prints a
# summary and fails on any violation.
#
# Usage: scripts/chaos.sh [--minutes N] [--clients N] [--release] [more gangway-loadtest chaos options]
#   --release  build and run release binaries (the 15-minute run in RELIABILITY.md uses it);
#              default: the debug build scripts/test.sh already made.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug
args=()
for a in "$@"; do
  if [ "$a" = "--release" ]; then profile=release; else args+=("$a"); fi
done
if [ "$profile" = release ]; then
  cargo build --release -q -p gangway -p gangway-loadtest
else
  cargo build -q -p gangway -p gangway-loadtest
fi
command -v redis-server >/dev/null || { echo "chaos.sh: redis-server is needed (scripts/test.sh installs it)"; exit 2; }
# A --dir given by the caller is kept; the default temporary one only when the run fails.
for a in "${args[@]}"; do
  if [ "$a" = "--dir" ] || [[ "$a" == --dir=* ]]; then
    exec "target/$profile/gangway-loadtest" chaos --gangway "target/$profile/gangway" "${args[@]}"
  fi
done
dir=$(mktemp -d -t gangway-chaos.XXXXXX)
status=0
target/$profile/gangway-loadtest chaos --gangway "target/$profile/gangway" --dir "$dir" "${args[@]}" || status=$?
if [ $status -eq 0 ]; then rm -rf "$dir"; else echo "chaos.sh: logs kept in $dir"; fi
exit $status

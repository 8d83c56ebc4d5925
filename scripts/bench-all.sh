#!/usr/bin/env bash
# Every benchmark behind BENCHMARKS.md, in one run (about 6 minutes on 2 cores), printed to the
# terminal and to target/bench-all.txt: idle memory (10 000 and 19 000 connections, and five
# nodes holding 95 000), fan-out and pushes, the cluster, the side-by-side comparison with nchan
# and the raw reference, and the criterion benches.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
{
  echo "# $(date -u +%FT%TZ) $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(rustc --version)"
  echo "## idle memory, 10 000"; scripts/bench-idle-memory.sh 10000
  echo "## idle memory, 19 000"; scripts/bench-idle-memory.sh 19000
  echo "## five nodes, 95 000"; scripts/bench-95k.sh 95000
  echo "## fan-out and pushes, one node"; scripts/bench-fanout.sh
  echo "## cluster"; scripts/bench-cluster.sh
  echo "## side by side: gangway, raw reference, nchan"; scripts/bench-compare.sh
  echo "## criterion"; cargo bench -q -p gangway-benches --bench hot_paths 2>&1 | grep -E "time:|thrpt:|^[a-z_]+/" || true
} 2>&1 | tee target/bench-all.txt

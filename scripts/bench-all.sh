#!/usr/bin/env bash
# Every benchmark behind BENCHMARKS.md, in one run (about 35 minutes on 2 cores), and then
# BENCHMARKS.md itself, rewritten from the results:
#   1. runs echo round trips and handshakes on one node, idle memory (10 000 and 19 000
#      connections, and five nodes holding 95 000), fan-out and pushes, the cluster, the
#      side-by-side comparison with nchan and the raw reference, and the criterion benches;
#   2. each script saves its results as JSON in $BENCH_OUT (default target/bench; the *.json
#      files there are removed first, so one rendering never mixes two runs), and this script
#      adds machine.json (date, CPU, RAM, kernel, OS, rustc, tool versions);
#   3. scripts/render-benchmarks.py renders BENCHMARKS.md from those files (and criterion's
#      target/criterion/*/new/estimates.json).
# The console output is also written to target/bench-all.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_OUT=${BENCH_OUT:-target/bench}
mkdir -p target "$BENCH_OUT"
rm -f "$BENCH_OUT"/*.json
STARTED=$(date +%s)
{
  echo "# $(date -u +%FT%TZ) $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(rustc --version)"
  echo "## echo and handshakes, one node"; scripts/bench-node.sh
  echo "## idle memory, 10 000"; scripts/bench-idle-memory.sh 10000
  echo "## idle memory, 19 000"; scripts/bench-idle-memory.sh 19000
  echo "## five nodes, 95 000"; scripts/bench-95k.sh 95000
  echo "## fan-out and pushes, one node"; scripts/bench-fanout.sh
  echo "## cluster"; scripts/bench-cluster.sh
  echo "## side by side: gangway (io_uring and sendmsg), raw reference, nchan"
  SERVERS="gangway gangway-sendmsg reference nchan-1 nchan-2" scripts/bench-compare.sh
  echo "## criterion"; cargo bench -q -p gangway-benches --bench hot_paths 2>&1 | grep -E "time:|thrpt:|^[a-z_]+/" || true
  python3 scripts/render-benchmarks.py --machine --started "$STARTED" >"$BENCH_OUT/machine.json"
  echo "## BENCHMARKS.md"
  # Render to a temporary file first: a failed rendering leaves BENCHMARKS.md as it was.
  python3 scripts/render-benchmarks.py "$BENCH_OUT" --criterion "${CARGO_TARGET_DIR:-target}/criterion" >target/BENCHMARKS.md.new
  mv target/BENCHMARKS.md.new BENCHMARKS.md
  echo "BENCHMARKS.md rewritten from $BENCH_OUT"
} 2>&1 | tee target/bench-all.txt

#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/ for SECONDS each (default 60), starting from the committed
# seeds in fuzz/seeds/<target>. New inputs and any crash go under target/fuzz/, never into the
# repository; a crash fails the run and prints how to reproduce it.
#
# Usage: scripts/fuzz.sh [SECONDS]
# Needs cargo-fuzz (installed here when missing). The toolchain is stable, so the sanitizer
# flags cargo-fuzz passes are allowed with RUSTC_BOOTSTRAP=1 (no nightly toolchain needed).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
OUT=target/fuzz
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
TARGETS=$(cd fuzz && cargo fuzz list)
cargo fuzz build -O --fuzz-dir fuzz --target-dir "$OUT/build"

status=0
for t in $TARGETS; do
  corpus="$OUT/corpus/$t"
  artifacts="$OUT/artifacts/$t/"
  mkdir -p "$corpus" "$artifacts"
  echo "fuzz.sh: $t for ${SECONDS_EACH}s"
  if ! cargo fuzz run -O --fuzz-dir fuzz --target-dir "$OUT/build" "$t" "$corpus" "fuzz/seeds/$t" -- \
      -max_total_time="$SECONDS_EACH" -artifact_prefix="$artifacts" -print_final_stats=1 \
      >"$OUT/$t.log" 2>&1; then
    echo "fuzz.sh: $t FAILED; see $OUT/$t.log; reproduce with:"
    echo "  RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz $t $artifacts<crash file>"
    status=1
  else
    grep -E '^stat::number_of_executed_units' "$OUT/$t.log" | sed "s/^/fuzz.sh: $t /" || true
  fi
done
exit $status

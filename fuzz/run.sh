#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 60), starting from the
# committed seed corpus (corpus/<target>/, read only; new inputs go to work/<target>/).
# Prints one JSON line per target and fails if any target found a crash (kept under
# artifacts/<target>/). Needs a nightly toolchain and cargo-fuzz (installed if missing).
#
#   fuzz/run.sh 300                      # every target, 5 minutes each
#   FUZZ_TARGETS="index_entry" fuzz/run.sh 30
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: no nightly toolchain; skipping" >&2
  exit 0
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list | grep -v '^seed_corpus$')}"
for t in $targets; do
  cargo +nightly fuzz build "$t" 2>&1 | grep -E '^error' -A 10 && exit 1
done
failed=()
for t in $targets; do
  mkdir -p "work/$t" "corpus/$t"
  log="work/$t.log"
  if cargo +nightly fuzz run "$t" "work/$t" "corpus/$t" -- \
       -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 \
       >"$log" 2>&1; then
    status=ok
  else
    status=crash
    failed+=("$t")
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | grep -o '[0-9]*$')
  printf '{"target":"%s","seconds":%s,"execs":%s,"coverage_edges":%s,"status":"%s"}\n' \
    "$t" "$secs" "${execs:-0}" "${cov:-0}" "$status"
  if [ "$status" != ok ]; then
    grep -E 'panicked|ERROR|SUMMARY|artifact' "$log" | head -n 20 >&2 || true
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz/run.sh: crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz/run.sh: every target ran ${secs}s with 0 crashes"

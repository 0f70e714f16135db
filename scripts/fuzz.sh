#!/usr/bin/env bash
# Runs every cargo-fuzz (libFuzzer) target of fuzz/ for SECONDS each (default 60), starting from the committed
# seeds (fuzz/seeds/<target>, made by scripts/fuzz_seeds.py from the wire transcripts) and the working corpus
# fuzz/corpus/<target> (kept between runs, not committed). Installs the nightly toolchain and cargo-fuzz when
# missing. Prints one line per target with its executions; a crash stops the script with libFuzzer's report and
# the input under fuzz/artifacts/<target>/ (reproduce with `cargo +nightly fuzz run -a -s none <target> <file>`).
#
# Targets are built with debug assertions (overflow checks included) and without a sanitizer (the decoders are
# safe Rust; FUZZ_SANITIZER=address turns AddressSanitizer on, at about half the speed).
#
# FUZZ_RUNS=N stops each target after N executions (within SECONDS); FUZZ_MAX_LEN caps input length (default
# 65536). The long run in docs/fuzzing.md: `FUZZ_RUNS=10000000 FUZZ_MAX_LEN=4096 scripts/fuzz.sh 3600`.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
shift || true

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
build=(--debug-assertions --sanitizer "${FUZZ_SANITIZER:-none}")
cargo +nightly fuzz build "${build[@]}"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  if ! cargo +nightly fuzz run "${build[@]}" "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" ${FUZZ_RUNS:+-runs="$FUZZ_RUNS"} -timeout=10 -rss_limit_mb=2048 \
      -max_len="${FUZZ_MAX_LEN:-65536}" -print_final_stats=1 >"$logs/$target" 2>&1; then
    tail -n 60 "$logs/$target"
    echo "fuzz: $target FAILED (input saved under fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$logs/$target")
  printf 'fuzz: %-22s %12s executions (at most %s s), 0 crashes\n' "$target" "$execs" "$seconds"
done

#!/usr/bin/env bash
# CPU per delivered message of gatewayd and of gatewayctl (the bench client) in one `gatewayctl bench` run, the
# figure the A/B tables of docs/benchmarks.md compare: a fresh gatewayd (the example config on loopback) runs the
# given bench; once deliveries flow and WARMUP (1) more seconds passed, both processes' CPU time (user + system,
# from /proc/<pid>/stat) and gatewayd's `gatewayd_messages_out_total` are sampled over WINDOW (3) seconds, so
# connection set-up (10,000 subscribers in a fan-out run) is left out. Prints one line: ns per delivery and cores
# of each process, the delivery rate in the window, and the bench's own rate and loss. Not part of the test suite.
#
#   [WARMUP=1] [WINDOW=3] scripts/bench_cpu.sh BENCH ARGS...
#
# e.g. scripts/bench_cpu.sh --protocol messageloop --ml-json --size 16 --duration 6
#      scripts/bench_cpu.sh --protocol goomerang -m 10000 --rate 20 --size 100 --duration 12   (ulimit -n 20000)
#
# The run must last past WARMUP + WINDOW after its first delivery. Needs release binaries (`cargo build --release
# -p gateway --bins`, or BENCH_BIN_DIR=<dir with both>), curl and python3. Everything listens on 127.0.0.1 only
# and is stopped on exit.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${BENCH_BIN_DIR:-$root/target/release}"
admin_port=29393
# shellcheck source=scripts/bench_common.sh
source "$root/scripts/bench_common.sh"
out="$(mktemp -d)"
trap 'cleanup; rm -rf "$out"' EXIT
config="$out/gatewayd.toml"
bench_config "$config"
start_gatewayd
"$bin/gatewayctl" --admin "http://127.0.0.1:$admin_port" bench "$@" --json > "$out/bench.json" &
ctl=$!
pids+=("$ctl")

# ticks PID: the CPU time (user + system, in clock ticks) of process PID so far, all its threads.
ticks() {
  # The fields after the command name, whose parentheses end at the last ") ".
  awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
# sample: gatewayd's and gatewayctl's CPU ticks, the deliveries so far and the time in seconds.
sample() {
  echo "$(ticks "$gatewayd_pid") $(ticks "$ctl") $(delivered) $(date +%s.%N)"
}

# Deliveries flow once two polls in a row see the count rise.
last=$(delivered)
rising=0
while [ "$rising" -lt 2 ]; do
  kill -0 "$ctl" 2> /dev/null || { echo "the bench ended before deliveries flowed" >&2; exit 1; }
  sleep 0.5
  now=$(delivered)
  if [ "$now" -gt "$last" ]; then rising=$((rising + 1)); else rising=0; fi
  last=$now
done
sleep "${WARMUP:-1}"
start=$(sample)
sleep "${WINDOW:-3}"
end=$(sample)
wait "$ctl"

python3 - "$start" "$end" "$(getconf CLK_TCK)" "$out/bench.json" <<'PY'
import json, sys
start, end = (list(map(float, sample.split())) for sample in sys.argv[1:3])
tick, bench = float(sys.argv[3]), json.load(open(sys.argv[4]))["gatewayd"]
n, seconds = end[2] - start[2], end[3] - start[3]
if n <= 0:
    sys.exit("no deliveries in the window: lengthen the run (--duration)")
def per(i):
    cpu = (end[i] - start[i]) / tick
    return f"{1e9 * cpu / n:,.0f} ns ({cpu / seconds:.2f} cores)"
print(f"gatewayd {per(0)}  gatewayctl {per(1)}  per delivery; {n / seconds / 1e3:,.0f}k deliveries/s in the window; "
      f"the bench: {bench['msgs_per_sec_in'] / 1e3:,.0f}k msg/s in, {bench['lost']} lost")
PY

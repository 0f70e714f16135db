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
work="$(mktemp -d)"
trap 'cleanup; rm -rf "$work"' EXIT
bench_config "$work/gatewayd.toml"

"$bin/gatewayd" --config "$work/gatewayd.toml" > "$work/gatewayd.log" 2>&1 &
gatewayd=$!
pids+=("$gatewayd")
wait_ready
"$bin/gatewayctl" --admin "http://127.0.0.1:$admin_port" bench "$@" --json > "$work/bench.json" &
ctl=$!
pids+=("$ctl")

python3 - "$gatewayd" "$ctl" "$admin_port" "${WARMUP:-1}" "${WINDOW:-3}" > "$work/cpu.txt" <<'PY'
import os, re, sys, time, urllib.request
gatewayd, ctl, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
warmup, window = float(sys.argv[4]), float(sys.argv[5])
tick = os.sysconf("SC_CLK_TCK")

def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick

def delivered():
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(v) for v in re.findall(r"^gatewayd_messages_out_total\{[^}]*\} (\S+)", text, re.M))

# Deliveries flow once two polls in a row see the count rise.
last, rising = delivered(), 0
while rising < 2:
    time.sleep(0.5)
    now = delivered()
    rising = rising + 1 if now > last else 0
    last = now
time.sleep(warmup)
start = (cpu(gatewayd), cpu(ctl), delivered(), time.monotonic())
time.sleep(window)
end = (cpu(gatewayd), cpu(ctl), delivered(), time.monotonic())
n, seconds = end[2] - start[2], end[3] - start[3]
if n <= 0:
    sys.exit("no deliveries in the window: lengthen the run (--duration)")
per = lambda i: f"{1e9 * (end[i] - start[i]) / n:,.0f} ns ({(end[i] - start[i]) / seconds:.2f} cores)"
print(f"gatewayd {per(0)}  gatewayctl {per(1)}  per delivery; {n / seconds / 1e3:,.0f}k deliveries/s in the window")
PY
wait "$ctl"
python3 - "$work/cpu.txt" "$work/bench.json" <<'PY'
import json, sys
bench = json.load(open(sys.argv[2]))["gatewayd"]
print(f"{open(sys.argv[1]).read().strip()}; the bench: {bench['msgs_per_sec_in'] / 1e3:,.0f}k msg/s in, "
      f"{bench['lost']} lost")
PY

#!/usr/bin/env bash
# Issue 17's stuck-subscriber benchmark: 1 STOMP publisher at RATE (10k) msg/s for DURATION (40) s to 99 reading STOMP subscribers,
# once alone and once next to a 100th subscriber that never reads. Each run gets a fresh gatewayd (the example
# config on loopback); latency is taken over the messages due SETTLE (20) s or more after sending starts (by then
# the stuck subscriber has filled its socket buffer and queue, held the publisher for `bus.max_publisher_stall_ms`,
# been cut, and the messages that stall held back have been worked off), and RSS after each run. The seconds from
# the start of sending to the cut are printed too. Prints a Markdown table for docs/benchmarks.md. About 3 minutes;
# not part of the test suite.
#
#   [RATE=10000] [DURATION=40] [SETTLE=20] scripts/bench_stuck.sh [OUT_DIR]
#
# Needs release binaries (`cargo build --release -p gateway --bins`, or BENCH_BIN_DIR=<dir with both>), curl and
# python3. Everything listens on 127.0.0.1 only and is stopped on exit.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${BENCH_BIN_DIR:-$root/target/release}"
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
admin_port=29392
rate="${RATE:-10000}"
duration="${DURATION:-40}"
settle="${SETTLE:-20}"
# shellcheck source=scripts/bench_common.sh
source "$root/scripts/bench_common.sh"
config="$out/stuck.toml"
bench_config "$config"
admin="http://127.0.0.1:$admin_port"
ctl=("$bin/gatewayctl" --admin "$admin")

# A STOMP subscriber that connects, subscribes to /topic/$1 and never reads again (4 KiB receive buffer).
stuck_subscriber() {
  python3 - "$1" "$2" <<'PY' &
import socket, sys, time
host, port = sys.argv[2].rsplit(":", 1)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect((host, int(port)))
s.sendall(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0")
s.recv(4096)
s.sendall(b"SUBSCRIBE\nid:0\ndestination:/topic/" + sys.argv[1].encode() + b"\nack:auto\n\n\0")
time.sleep(3600)
PY
  pids+=("$!")
}

subscriptions() {
  curl -sf "$admin/metrics" | awk '/^gatewayd_subscriptions /{print $2}'
}

one_run() {
  local name=$1 with_stuck=$2 topic="stuck.$1"
  "$bin/gatewayd" --config "$config" > "$out/$name.log" 2>&1 &
  local gatewayd_pid=$!
  pids+=("$gatewayd_pid")
  wait_ready
  if [ "$with_stuck" = yes ]; then
    local address
    address=$(curl -sf "$admin/api/listeners" |
      python3 -c 'import json,sys; print(next(l["address"] for l in json.load(sys.stdin) if l["name"] == "stomp.tcp"))')
    stuck_subscriber "$topic" "$address"
    for _ in $(seq 100); do [ "$(subscriptions)" = 1 ] && break; sleep 0.1; done
  fi
  # When the stuck subscriber is cut, in seconds from here (the bench's probes take well under a second).
  (
    started=$(date +%s.%N)
    while sleep 0.2; do
      if curl -sf "$admin/metrics" | grep -q '^gatewayd_drops_total{reason="slow_consumer_disconnect"'; then
        awk -v now="$(date +%s.%N)" -v started="$started" 'BEGIN { print now - started }' > "$out/$name.cut"
        break
      fi
    done
  ) &
  local watcher=$!
  pids+=("$watcher")
  "${ctl[@]}" bench --protocol stomp -m 99 --rate "$rate" --duration "$duration" --latency-after "$settle" \
    --topic "$topic" --json > "$out/$name.json"
  kill "$watcher" 2>/dev/null || true
  awk '/^VmRSS/{print $2 * 1024}' "/proc/$gatewayd_pid/status" > "$out/$name.rss"
  curl -sf "$admin/metrics" | grep -E '^gatewayd_(publisher_stall|drops_total)' > "$out/$name.metrics" || true
  kill "$gatewayd_pid"
  wait "$gatewayd_pid" 2>/dev/null || true
}

one_run alone no
one_run stuck yes

python3 - "$out" "$settle" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
print(f"| run | delivered to the 99 | lost | p50 / p99 / p99.9 after {sys.argv[2]} s (ms) | RSS after the run |")
print("|---|---|---|---|---|")
p99 = {}
for name, label in (("alone", "without the stuck subscriber"), ("stuck", "with it")):
    g = json.loads((out / f"{name}.json").read_text())["gatewayd"]
    lat = g["latency_us"]
    p99[name] = lat["p99"]
    rss = int((out / f"{name}.rss").read_text()) / (1 << 20)
    print(f"| {label} | {g['received']:,} of {g['expected']:,} | {g['lost']} "
          f"| {lat['p50'] / 1000:.2f} / {lat['p99'] / 1000:.2f} / {lat['p99_9'] / 1000:.2f} | {rss:.0f} MiB |")
print()
print(f"p99 with / without the stuck subscriber, after the cut: {p99['stuck'] / p99['alone']:.2f}x")
cut = out / "stuck.cut"
if cut.exists():
    print(f"the stuck subscriber was cut {float(cut.read_text()):.1f} s after sending started")
for name in ("alone", "stuck"):
    print(f"{name}: " + " ".join((out / f"{name}.metrics").read_text().split("\n")))
PY
echo "results: $out" >&2

#!/usr/bin/env bash
# Runs every end-to-end benchmark docs/benchmarks.md reports, each next to nats-server measured in the same run
# (the MQTT rows also next to mosquitto), and prints the tables as Markdown, then issue 18's goals against this run.
# Long (about 30 minutes); not part of the test suite.
#
#   [BENCH_ROWS=all|mqtt] [FANOUT_SWEEP=1] [BENCH_WORKERS=N] scripts/bench.sh [OUT_DIR]
#
# JSON results are kept in OUT_DIR (default: a temporary directory). BENCH_ROWS=mqtt runs the MQTT rows only.
# FANOUT_SWEEP=1 adds the MessageLoop and Goomerang fan-out at 2,500, 5,000 and 7,500 subscribers (the latency
# against the load, about 5 more minutes). BENCH_WORKERS=N runs gatewayd with N runtime worker threads and
# nats-server with GOMAXPROCS=N (by default each takes one per CPU): on a machine whose cores the bench client
# shares, each server sized to the cores left to it.
#
# Needs release binaries (`cargo build --release -p gateway --bins`, or BENCH_BIN_DIR=<dir with both>),
# nats-server, mosquitto (the Debian package; its own instance is started here, not the system service) and
# python3 on PATH; the system call rows need perf (Debian's linux-perf) allowed to read tracepoints.
# Every server listens on 127.0.0.1 only; everything started here is stopped on exit.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${BENCH_BIN_DIR:-$root/target/release}"
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
# 10,000 idle connections need as many descriptors on each side.
ulimit -n "$(ulimit -Hn)"
rows="${BENCH_ROWS:-all}"
admin_port=29391
nats_port=24322
mosquitto_port=21884
# shellcheck source=scripts/bench_common.sh
source "$root/scripts/bench_common.sh"
config="$out/bench.toml"
bench_config "$config"

nats_env=()
if [ -n "${BENCH_WORKERS:-}" ]; then nats_env=(env "GOMAXPROCS=$BENCH_WORKERS"); fi
"${nats_env[@]}" nats-server -a 127.0.0.1 -p "$nats_port" > "$out/nats.log" 2>&1 &
pids+=("$!")
# mosquitto as the MQTT peer: loopback, anonymous, in memory. Its defaults would drop QoS 1 messages past 1,000
# queued per subscriber (max_queued_messages), so the queue is unbounded in count and bytes; its in-flight window
# per client (max_inflight_messages, its CONNACK Receive Maximum) is 64, gatewayd's mqtt.receive_maximum.
printf '%s\n' "listener $mosquitto_port 127.0.0.1" "allow_anonymous true" "persistence false" \
  "max_inflight_messages 64" "max_queued_messages 0" "max_queued_bytes 0" > "$out/mosquitto.conf"
mosquitto -c "$out/mosquitto.conf" > "$out/mosquitto.log" 2>&1 &
pids+=("$!")
start_gatewayd
ctl=("$bin/gatewayctl" --admin "http://127.0.0.1:$admin_port")

# MQTT → MQTT next to nats-server and mosquitto, MQTT → MessageLoop next to nats-server; QoS 0 and 1.
for pair in "mqtt mqtt" "mqtt messageloop"; do
  read -r p s <<< "$pair"
  peer=()
  [ "$s" = mqtt ] && peer=(--compare-mqtt "127.0.0.1:$mosquitto_port")
  for qos in 0 1; do
    for size in 16 1024; do
      "${ctl[@]}" bench --pub-protocol "$p" --sub-protocol "$s" --qos "$qos" --size "$size" --duration 5 --json \
        --compare-nats "nats://127.0.0.1:$nats_port" "${peer[@]}" > "$out/mqtt-$p-$s-qos$qos-$size.json"
    done
  done
done

if [ "$rows" = all ]; then
# allout P S: P → S all-out at 16 B and 1 KiB.
allout() {
  for size in 16 1024; do
    "${ctl[@]}" bench --pub-protocol "$1" --sub-protocol "$2" --size "$size" --duration 5 --json \
      --compare-nats "nats://127.0.0.1:$nats_port" > "$out/allout-$1-$2-$size.json"
  done
}
pairs=("stomp stomp" "messageloop messageloop" "goomerang goomerang" "loom loom" "chanserv chanserv"
  "stomp messageloop" "loom goomerang")
for pair in "${pairs[@]}"; do
  read -r p s <<< "$pair"
  allout "$p" "$s"
  "${ctl[@]}" bench --pub-protocol "$p" --sub-protocol "$s" --rate 10000 --duration 10 --json \
    --compare-nats "nats://127.0.0.1:$nats_port" > "$out/rate-$p-$s.json"
done
# MessageLoop in JSON (subprotocol messageloop+json, issue 18) and over gRPC beside its protobuf rows: all-out only.
for size in 16 1024; do
  "${ctl[@]}" bench --protocol messageloop --ml-json --size "$size" --duration 5 --json \
    --compare-nats "nats://127.0.0.1:$nats_port" > "$out/allout-messageloop-json-messageloop-json-$size.json"
  # And over gRPC (one G2 stream per side, listener messageloop.grpc).
  "${ctl[@]}" bench --protocol messageloop --ml-grpc --size "$size" --duration 5 --json \
    --compare-nats "nats://127.0.0.1:$nats_port" > "$out/allout-messageloop-grpc-messageloop-grpc-$size.json"
done
# The other cross-protocol pairs among STOMP, MessageLoop WS and Goomerang (issue 18's goal covers all six; STOMP →
# MessageLoop is in the pairs above): all-out only.
for pair in "messageloop stomp" "messageloop goomerang" "stomp goomerang" "goomerang stomp" "goomerang messageloop"; do
  read -r p s <<< "$pair"
  allout "$p" "$s"
done
# Publisher stalls during the runs above (flow control), for the notes under the tables.
curl -sf "http://127.0.0.1:$admin_port/metrics" | grep -E '^gatewayd_(publisher_stall|drops_total)' \
  > "$out/flow-metrics.txt" || true
# Fan-out (issue 18): one publisher, 10,000 WebSocket subscribers on the same machine, 100 B at 20 msg/s, so
# 200,000 deliveries/s, and the same shape over nats-server (gatewayctl closes gatewayd's 10,000 sockets first).
for kind in "messageloop" "messageloop --ml-json" "goomerang"; do
  # shellcheck disable=SC2086
  "${ctl[@]}" bench --protocol $kind -m 10000 --rate 20 --size 100 --duration 10 --json \
    --compare-nats "nats://127.0.0.1:$nats_port" > "$out/fanout-${kind// --ml-/-}.json"
done
if [ "${FANOUT_SWEEP:-0}" = 1 ]; then
  for kind in messageloop goomerang; do
    for count in 2500 5000 7500; do
      "${ctl[@]}" bench --protocol "$kind" -m "$count" --rate 20 --size 100 --duration 10 --json \
        --compare-nats "nats://127.0.0.1:$nats_port" > "$out/fanout-$kind-$count.json"
    done
  done
fi
# System calls per delivery (issue 18's cost per message): perf stat on gatewayd's syscall tracepoints for 3 s in
# the middle of an 8 s all-out run, divided by the deliveries counted over the same 3 s (tracepoints, not strace,
# whose ptrace would change how much each write batches). Each file ends with the deliveries and the seconds
# counted. Skipped when perf cannot read the tracepoints.
window=3
events=syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendmsg
events+=,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex
if perf stat -e syscalls:sys_enter_sendto -- true > /dev/null 2>&1; then
  shapes=("stomp-16|--protocol stomp --size 16" "stomp-1024|--protocol stomp --size 1024"
    "messageloop-16|--protocol messageloop --size 16" "messageloop-1024|--protocol messageloop --size 1024"
    "messageloop-grpc-16|--protocol messageloop --ml-grpc --size 16"
    "messageloop-grpc-1024|--protocol messageloop --ml-grpc --size 1024"
    "goomerang-16|--protocol goomerang --size 16"
    "stomp-messageloop-16|--pub-protocol stomp --sub-protocol messageloop --size 16")
  for shape in "${shapes[@]}"; do
    name=${shape%%|*}
    # shellcheck disable=SC2086
    "${ctl[@]}" bench ${shape#*|} --duration 8 --json > /dev/null &
    bench_pid=$!
    sleep 3
    before=$(delivered)
    perf stat -x, -e "$events" -o "$out/syscalls-$name.csv" -p "$gatewayd_pid" -- sleep "$window"
    printf '%s\n' "$(($(delivered) - before)),deliveries" "$window,seconds" >> "$out/syscalls-$name.csv"
    wait "$bench_pid"
  done
else
  echo "perf cannot read the syscall tracepoints: no system call rows" >&2
fi
fi
stop_gatewayd

# Idle connections: a fresh gatewayd per row.
kinds=("stomp" "stomp --ws" "stomp --tls" "messageloop" "messageloop --tls" "messageloop --grpc" "goomerang"
  "goomerang --tls" "loom" "chanserv" "mqtt" "mqtt --tls")
[ "$rows" = mqtt ] && kinds=("mqtt" "mqtt --tls")
# The example config leaves mqtt.tls off; the TLS row needs it.
export GATEWAYD_MQTT__TLS__ENABLED=true
for kind in "${kinds[@]}"; do
  # MessageLoop and Goomerang have one WebSocket listener each: their TLS rows turn its TLS on (self-signed).
  unset GATEWAYD_MESSAGELOOP__WS__TLS__SELF_SIGNED GATEWAYD_GOOMERANG__TLS__SELF_SIGNED
  case "$kind" in
    "messageloop --tls") export GATEWAYD_MESSAGELOOP__WS__TLS__SELF_SIGNED=true ;;
    "goomerang --tls") export GATEWAYD_GOOMERANG__TLS__SELF_SIGNED=true ;;
  esac
  for count in 1000 10000; do
    start_gatewayd
    name="conns-${kind// --/-}-$count"
    # shellcheck disable=SC2086
    "${ctl[@]}" bench conns --protocol $kind --count "$count" --pid "$gatewayd_pid" --json > "$out/$name.json"
    stop_gatewayd
  done
done

python3 "$root/scripts/bench_tables.py" "$out"
echo "results: $out" >&2

# Sourced by the benchmark scripts (not run on its own): the processes to stop on exit, gatewayd's example config
# moved to loopback, starting and stopping gatewayd and waiting for it to be ready, and its count of deliveries.
# Needs `root` (the repository) and `admin_port` set; starting gatewayd also `bin`, `config` and `out`.

# Everything started is added here and stopped on exit.
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# bench_config FILE: the example config as it is (flow control and slow_consumer defaults), on loopback, with the
# admin listener on $admin_port, logging warnings only.
bench_config() {
  sed -e "s/127.0.0.1:9091/127.0.0.1:$admin_port/; s/0\.0\.0\.0:/127.0.0.1:/; s/^level = \"info\"/level = \"warn\"/" \
    "$root/config/gatewayd.toml" > "$1"
}

# wait_ready: polls /readyz on $admin_port for up to 20 s.
wait_ready() {
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$admin_port/readyz" > /dev/null && return 0
    sleep 0.1
  done
  echo "gatewayd did not become ready" >&2
  return 1
}

# start_gatewayd: gatewayd from $bin with $config (its log in $out), its pid in $gatewayd_pid, once it is ready;
# with BENCH_WORKERS set, that many runtime worker threads.
start_gatewayd() {
  local workers=()
  if [ -n "${BENCH_WORKERS:-}" ]; then workers=(env "GATEWAYD_RUNTIME__WORKER_THREADS=$BENCH_WORKERS"); fi
  "${workers[@]}" "$bin/gatewayd" --config "$config" > "$out/gatewayd.log" 2>&1 &
  gatewayd_pid=$!
  pids+=("$gatewayd_pid")
  wait_ready
}

stop_gatewayd() {
  kill "$gatewayd_pid"
  wait "$gatewayd_pid" 2>/dev/null || true
}

# delivered: the messages gatewayd has delivered so far (`gatewayd_messages_out_total`, every series summed).
delivered() {
  curl -sf "http://127.0.0.1:$admin_port/metrics" | awk '/^gatewayd_messages_out_total/ {s += $2} END {print s + 0}'
}

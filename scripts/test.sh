#!/usr/bin/env bash
# The test command: installs the programs the tests start when they are missing (Debian, apt-get), then runs the
# whole suite. The Python venv and the Node packages of the interop tests are built by the tests themselves, in
# the target dir. Arguments go to `cargo test` (e.g. `scripts/test.sh -p protocols`).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
# need <Debian package> <check...>: the package is installed when the check fails. One line per program a test
# (or the build) starts; add a line when a test starts a new one.
need() {
  local package=$1
  shift
  "$@" >/dev/null 2>&1 || missing+=("$package")
}
# Not started by a test: the build runs it for jemalloc, gatewayd's allocator (tikv-jemalloc-sys).
need make command -v make
need nats-server command -v nats-server
need redis-server command -v redis-server
need procps command -v kill
need python3 command -v python3
need python3-venv python3 -c 'import ensurepip, venv'
need nodejs command -v node
need npm command -v npm
need chromium command -v chromium
need mosquitto-clients command -v mosquitto_sub

if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

echo "== cargo test --workspace"
cargo test --workspace "$@"

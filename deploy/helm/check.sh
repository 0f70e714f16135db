#!/usr/bin/env bash
# Lints and renders the Helm chart with default, full and Redis-cluster values, checks that a split bus and two
# auth sources are refused and that only the full values give the `helm test` pod credentials, validates the
# rendered manifests against the Kubernetes schemas and, with GATEWAYD=<binary>, checks the generated
# gatewayd.toml, alone, with the full values' auth Secret and with the Redis values' environment, with
# `gatewayd check-config`. Needs `helm` and the `kubernetes-validate` Python
# package (.ci/run installs both).
set -euo pipefail
chart="$(cd "$(dirname "$0")/gatewayd" && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

helm lint "$chart"
helm lint "$chart" -f "$chart/ci/full-values.yaml"
helm template test "$chart" > "$out/default.yaml"
helm template test "$chart" -f "$chart/ci/full-values.yaml" > "$out/full.yaml"

if helm template test "$chart" --set replicaCount=2 > /dev/null 2>&1; then
  echo "chart rendered 2 replicas without cluster.backend=nats or redis" >&2
  exit 1
fi
if helm template test "$chart" --set cluster.backend=redis > /dev/null 2>&1; then
  echo "chart rendered cluster.backend=redis without cluster.redis.urls" >&2
  exit 1
fi
# Three pods sharing a Redis, its password from a Secret.
redis_values=(--set replicaCount=3 --set cluster.backend=redis --set 'cluster.redis.urls={redis://redis-master:6379}'
  --set cluster.redis.username=gatewayd --set cluster.redis.passwordSecret=redis-password
  --set cluster.redis.history=streams --set cluster.redis.messageloopLayout=ml2)
helm template test "$chart" "${redis_values[@]}" > "$out/redis.yaml"
for expected in 'backend = "redis"' 'history = "streams"' 'messageloop_layout = "ml2"' 'name: GATEWAYD_CLUSTER__URLS' 'value: "[\"redis://redis-master:6379\"]"' \
  'name: GATEWAYD_CLUSTER__PASSWORD_FILE' 'mountPath: /etc/gatewayd/redis' 'secretName: redis-password'; do
  grep -qF -- "$expected" "$out/redis.yaml" || { echo "redis values: no $expected" >&2; exit 1; }
done
if helm template test "$chart" --set auth.existingSecret=mine --set auth.config=x > /dev/null 2>&1; then
  echo "chart rendered with both auth.existingSecret and auth.config" >&2
  exit 1
fi
grep -q -- '- /etc/gatewayd/auth/auth.toml' "$out/full.yaml" || { echo "full values: no auth --config" >&2; exit 1; }
grep -q 'name: GATEWAYCTL_TOKEN' "$out/full.yaml" || { echo "full values: helm test pod without credentials" >&2; exit 1; }
grep -q 'name: GATEWAYCTL_ADMIN_TOKEN' "$out/default.yaml" || { echo "default values: helm test pod without the admin token" >&2; exit 1; }
grep -q 'token_file = "/etc/gatewayd/admin/token"' "$out/default.yaml" || { echo "default values: admin listener without its token" >&2; exit 1; }
if helm template test "$chart" --set admin.existingSecret=mine --set admin.token=x > /dev/null 2>&1; then
  echo "chart rendered with both admin.existingSecret and admin.token" >&2
  exit 1
fi
if helm template test "$chart" --set admin.existingSecret=mine --show-only templates/admin-secret.yaml > /dev/null 2>&1; then
  echo "chart made its own admin Secret next to admin.existingSecret" >&2
  exit 1
fi
if grep -q 'name: GATEWAYCTL_TOKEN' "$out/default.yaml"; then
  echo "default values: helm test pod reads a credentials Secret" >&2
  exit 1
fi

grep -q 'kind: PodMonitor' "$out/full.yaml" || { echo "full values: no PodMonitor" >&2; exit 1; }
# The dashboard ConfigMap carries the whole dashboard, the same JSON as deploy/grafana/gatewayd.json.
helm template test "$chart" -f "$chart/ci/full-values.yaml" --show-only templates/grafana-dashboard.yaml |
  python3 -c '
import json, sys, yaml
doc = yaml.safe_load(sys.stdin)
assert doc["metadata"]["labels"]["grafana_dashboard"] == "1", doc["metadata"]
shipped = json.load(open(sys.argv[1]))
assert json.loads(doc["data"]["gatewayd.json"]) == shipped, "dashboard ConfigMap differs from deploy/grafana/gatewayd.json"
' "$chart/../../grafana/gatewayd.json"
if helm template test "$chart" --show-only templates/grafana-dashboard.yaml > /dev/null 2>&1; then
  echo "default values: dashboard ConfigMap rendered though not enabled" >&2
  exit 1
fi

# ServiceMonitor and PodMonitor are CRDs: kubernetes-validate knows only built-in kinds, so validate the rest.
kubernetes-validate --strict --kubernetes-version 1.30 --quiet "$out/default.yaml"
kubernetes-validate --strict --kubernetes-version 1.30 --quiet "$out/redis.yaml"
python3 - "$out/full.yaml" "$out/full-builtin.yaml" <<'PY'
import sys
docs = open(sys.argv[1]).read().split("\n---")
keep = [d for d in docs if "kind: ServiceMonitor" not in d and "kind: PodMonitor" not in d]
open(sys.argv[2], "w").write("\n---".join(keep))
PY
kubernetes-validate --strict --kubernetes-version 1.30 --quiet "$out/full-builtin.yaml"
# The gatewayd.toml the chart generates must be accepted by gatewayd itself (when a binary is given).
if [ -n "${GATEWAYD:-}" ]; then
  helm template test "$chart" | sed -n '/gatewayd.toml: |/,/^---/p' | sed '1d;$d' | sed 's/^    //' > "$out/gatewayd.toml"
  # The admin token as the pod mounts it from the admin Secret.
  printf 'check-token' > "$out/admin-token"
  sed -i "s#/etc/gatewayd/admin/token#$out/admin-token#" "$out/gatewayd.toml"
  "$GATEWAYD" check-config "$out/gatewayd.toml"
  # The Redis values' config with the environment their Deployment sets.
  helm template test "$chart" "${redis_values[@]}" | sed -n '/gatewayd.toml: |/,/^---/p' | sed '1d;$d' |
    sed 's/^    //' > "$out/redis.toml"
  sed -i "s#/etc/gatewayd/admin/token#$out/admin-token#" "$out/redis.toml"
  printf 'secret' > "$out/redis-password"
  GATEWAYD_CLUSTER__URLS='["redis://redis-master:6379"]' GATEWAYD_CLUSTER__KEY_PREFIX='gatewayd:' \
    GATEWAYD_CLUSTER__USERNAME=gatewayd GATEWAYD_CLUSTER__PASSWORD_FILE="$out/redis-password" \
    "$GATEWAYD" check-config "$out/redis.toml"
  # The full values' auth Secret laid out as the pod mounts it (each key a file in /etc/gatewayd/auth, here
  # $out/auth), merged over the generated config as the Deployment's second --config.
  mkdir "$out/auth"
  helm template test "$chart" -f "$chart/ci/full-values.yaml" --show-only templates/auth-secret.yaml |
    sed -n '/^data:/,$s/^  \([A-Za-z0-9._-]*\): \(.*\)$/\1 \2/p' |
    while read -r key value; do printf '%s' "$value" | base64 -d > "$out/auth/$key"; done
  sed -i "s#/etc/gatewayd/auth/#$out/auth/#g" "$out/auth/auth.toml"
  "$GATEWAYD" check-config "$out/gatewayd.toml" "$out/auth/auth.toml"
fi
echo "helm chart: lint, render, refusal and schema checks passed"

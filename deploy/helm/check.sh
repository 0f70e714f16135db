#!/usr/bin/env bash
# Lints and renders the Helm chart with default and full values, checks that a split bus is refused, validates
# the rendered manifests against the Kubernetes schemas and, with GATEWAYD=<binary>, checks the generated
# gatewayd.toml with `gatewayd check-config`. Needs `helm` and the `kubernetes-validate` Python package
# (.ci/run installs both).
set -euo pipefail
chart="$(cd "$(dirname "$0")/gatewayd" && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

helm lint "$chart"
helm lint "$chart" -f "$chart/ci/full-values.yaml"
helm template test "$chart" > "$out/default.yaml"
helm template test "$chart" -f "$chart/ci/full-values.yaml" > "$out/full.yaml"

if helm template test "$chart" --set replicaCount=2 > /dev/null 2>&1; then
  echo "chart rendered 2 replicas without cluster.backend=nats" >&2
  exit 1
fi

# ServiceMonitor is a CRD: kubernetes-validate knows only built-in kinds, so validate the rest.
kubernetes-validate --strict --kubernetes-version 1.30 --quiet "$out/default.yaml"
python3 - "$out/full.yaml" "$out/full-builtin.yaml" <<'PY'
import sys
docs = open(sys.argv[1]).read().split("\n---")
keep = [d for d in docs if "kind: ServiceMonitor" not in d]
open(sys.argv[2], "w").write("\n---".join(keep))
PY
kubernetes-validate --strict --kubernetes-version 1.30 --quiet "$out/full-builtin.yaml"
# The gatewayd.toml the chart generates must be accepted by gatewayd itself (when a binary is given).
if [ -n "${GATEWAYD:-}" ]; then
  helm template test "$chart" | sed -n '/gatewayd.toml: |/,/^---/p' | sed '1d;$d' | sed 's/^    //' > "$out/gatewayd.toml"
  "$GATEWAYD" check-config "$out/gatewayd.toml"
fi
echo "helm chart: lint, render, refusal and schema checks passed"

#!/usr/bin/env bash
# `make validate-deploy`: every deployment file checked offline, with the tools deploy/validate/tools.sh installed.
#   compose: the compose specification (schema, references, undefined services and variables)
#   Helm chart: helm lint --strict; helm template | kubeconform with the Kubernetes and KEDA schemas (several value sets)
#   alerts: promtool check rules and promtool test rules; the compose Prometheus config: promtool check config
#   dashboard: rebuilt with grafana-foundation-sdk and compared with the committed JSON
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$root/.tools/bin"
python="${PYTHON:-$root/.venv/bin/python}"
chart="$root/deploy/helm/footfall"
kubernetes_version=1.34.0
cd "$root"

step() { echo "== $*"; }

step "compose: deploy/compose/compose.yaml"
"$bin/composecheck" -env deploy/compose/.env.example deploy/compose/compose.yaml

kubeconform=("$bin/kubeconform" -strict -summary -kubernetes-version "$kubernetes_version"
  -schema-location "$root/.tools/schemas/kubernetes/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"
  -schema-location "$root/.tools/schemas/keda/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json")

render_and_validate() {  # name, then helm arguments
  local name=$1; shift
  step "helm lint --strict ($name)"
  "$bin/helm" lint --strict "$chart" -f "$chart/ci/test-values.yaml" "$@"
  step "helm template | kubeconform ($name)"
  "$bin/helm" template footfall "$chart" -f "$chart/ci/test-values.yaml" --kube-version "$kubernetes_version" "$@" \
    | "${kubeconform[@]}" -
}
render_and_validate "KEDA and HPA on"
render_and_validate "fixed replicas, no api" --set collector.autoscaling.enabled=false \
  --set processor.autoscaling.enabled=false --set projector.autoscaling.enabled=false --set api.enabled=false

step "helm template refuses maxReplicaCount above the partition count"
if out="$("$bin/helm" template footfall "$chart" -f "$chart/ci/test-values.yaml" --kube-version "$kubernetes_version" \
    --set kafka.partitions=4 2>&1)"; then
  echo "expected a failure: processor.autoscaling.maxReplicaCount 12 > kafka.partitions 4" >&2; exit 1
fi
grep -q "must not exceed kafka.partitions" <<<"$out" || { echo "$out" >&2; exit 1; }

step "promtool: alert rules, their unit tests, the compose Prometheus config"
"$bin/promtool" check rules "$chart/files/alerts.yml"
"$bin/promtool" test rules deploy/monitoring/alerts.test.yml
"$bin/promtool" check config --syntax-only deploy/compose/prometheus.yml

step "Grafana dashboard (grafana-foundation-sdk)"
"$python" deploy/monitoring/dashboard.py --check

echo "validate-deploy: all checks passed"

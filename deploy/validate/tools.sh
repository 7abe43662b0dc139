#!/usr/bin/env bash
# Installs what `make validate-deploy` runs into .tools/ (ignored), once per version; later runs take seconds.
#   helm, kubeconform, promtool: `go install` through the Go module proxy
#   composecheck: deploy/validate/composecheck (compose-go, the library `docker compose` loads files with)
#   KEDA's CRD schemas: from the KEDA Go module (config/crd/bases), converted by crd_schemas.py
#   Kubernetes schemas: from the kubernetes-validate package (PyPI, in uv.lock), made standalone by k8s_schemas.py
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="$root/.tools"
bin="$tools/bin"
python="${PYTHON:-$root/.venv/bin/python}"

HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.8.0
PROMETHEUS_VERSION=v0.316.0   # promtool of Prometheus 3.x (the Go module's version scheme)
KEDA_VERSION=v2.18.0
KUBERNETES_VERSION=1.34.0     # the schemas the chart is validated against (kubernetes-validate ships them)

log() { echo "[validate-deploy tools] $*" >&2; }
command -v go >/dev/null || { log "Go is needed to build helm, kubeconform, promtool and composecheck"; exit 1; }
mkdir -p "$bin"

go_install() {  # name package version [go build flags]
  local name=$1 package=$2 version=$3
  shift 3
  if [ -x "$bin/$name" ] && [ -f "$bin/.$name-$version" ]; then return 0; fi
  log "go install ${*:+$* }$package@$version (once)"
  GOBIN="$bin" go install "$@" "$package@$version"
  rm -f "$bin/.$name-"*
  touch "$bin/.$name-$version"
}

go_install kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
# remove_all_sd: without the cloud service discoveries (AWS, Azure, GCE, ...), which promtool's checks here never
# use; it builds in a fraction of the time.
go_install promtool github.com/prometheus/prometheus/cmd/promtool "$PROMETHEUS_VERSION" -tags remove_all_sd

composecheck_src="$root/deploy/validate/composecheck"
if [ ! -x "$bin/composecheck" ] || [ -n "$(find "$composecheck_src" -newer "$bin/composecheck" -type f)" ]; then
  log "building composecheck"
  (cd "$composecheck_src" && go build -o "$bin/composecheck" .)
fi

keda_schemas="$tools/schemas/keda-$KEDA_VERSION"
if [ ! -f "$keda_schemas/.complete" ]; then
  log "KEDA $KEDA_VERSION CRD schemas (go mod download)"
  keda_dir="$(go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" | "$python" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
  rm -rf "$keda_schemas"
  "$python" "$root/deploy/validate/crd_schemas.py" "$keda_schemas" "$keda_dir"/config/crd/bases/keda.sh_*.yaml >/dev/null
  touch "$keda_schemas/.complete"
fi
ln -sfn "keda-$KEDA_VERSION" "$tools/schemas/keda"

k8s_schemas="$tools/schemas/kubernetes"
if [ ! -f "$k8s_schemas/.complete-$KUBERNETES_VERSION" ] || [ "$root/uv.lock" -nt "$k8s_schemas/.complete-$KUBERNETES_VERSION" ]; then
  log "Kubernetes $KUBERNETES_VERSION schemas (kubernetes-validate)"
  rm -rf "$k8s_schemas"
  "$python" "$root/deploy/validate/k8s_schemas.py" "$k8s_schemas" "$KUBERNETES_VERSION" >/dev/null
  touch "$k8s_schemas/.complete-$KUBERNETES_VERSION"
fi

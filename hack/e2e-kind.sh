#!/usr/bin/env bash
# e2e tier on a kind cluster: build both images, load them into kind, helm install the chart,
# helm test it, run `pytest -m e2e` with that cluster's KUBECONFIG, then helm uninstall it and
# check nothing is left behind.
#
# Usage: hack/e2e-kind.sh            (make e2e-kind; .github/workflows/e2e-kind.yml runs it too)
# Needs docker, kind, helm and kubectl on PATH and the project's .venv (make setup).
# Environment (defaults): KIND_CLUSTER=pirate-e2e NAMESPACE=pirate-workers RELEASE=pirate-workers
#   IMAGE_TAG=e2e KEEP_CLUSTER=1 (0 deletes a cluster this script created) PYTEST_ARGS=
set -euo pipefail

KIND_CLUSTER=${KIND_CLUSTER:-pirate-e2e}
NAMESPACE=${NAMESPACE:-pirate-workers}
RELEASE=${RELEASE:-pirate-workers}
IMAGE_TAG=${IMAGE_TAG:-e2e}
OPERATOR_IMAGE=${OPERATOR_IMAGE:-pirate-operator}
WORKER_IMAGE=${WORKER_IMAGE:-pirate-worker}
KEEP_CLUSTER=${KEEP_CLUSTER:-1}
REVISION=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTEST=${PYTEST:-$ROOT/.venv/bin/pytest}

log() { printf '[e2e-kind %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[e2e-kind] ERROR: %s\n' "$*" >&2; exit 1; }

for tool in docker kind helm kubectl; do
  command -v "$tool" >/dev/null || die "$tool not found on PATH"
done
[[ -x $PYTEST ]] || die "$PYTEST missing: run make setup"
cd "$ROOT"

created=0
if ! kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  log "creating kind cluster $KIND_CLUSTER"
  kind create cluster --name "$KIND_CLUSTER" --wait 120s
  created=1
fi
cleanup() {
  if [[ $created == 1 && $KEEP_CLUSTER == 0 ]]; then
    kind delete cluster --name "$KIND_CLUSTER" || true
  fi
}
trap cleanup EXIT

KUBECONFIG_FILE="$(mktemp -t pirate-kind-kubeconfig.XXXXXX)"
kind get kubeconfig --name "$KIND_CLUSTER" >"$KUBECONFIG_FILE"
export KUBECONFIG="$KUBECONFIG_FILE"

log "building $OPERATOR_IMAGE:$IMAGE_TAG and $WORKER_IMAGE:$IMAGE_TAG"
DOCKER_BUILDKIT=1 docker build -f Dockerfile.operator -t "$OPERATOR_IMAGE:$IMAGE_TAG" --build-arg REVISION="$REVISION" .
DOCKER_BUILDKIT=1 docker build -f Dockerfile.worker -t "$WORKER_IMAGE:$IMAGE_TAG" --build-arg REVISION="$REVISION" .

log "loading the images into kind"
kind load docker-image "$OPERATOR_IMAGE:$IMAGE_TAG" "$WORKER_IMAGE:$IMAGE_TAG" --name "$KIND_CLUSTER"

log "helm install $RELEASE into $NAMESPACE"
helm upgrade --install "$RELEASE" charts/pirate-workers \
  --namespace "$NAMESPACE" --create-namespace \
  --set operator.image.repository="$OPERATOR_IMAGE" \
  --set operator.image.tag="$IMAGE_TAG" \
  --set operator.image.pullPolicy=Never \
  --set pool.image.repository="$WORKER_IMAGE" \
  --set pool.image.tag="$IMAGE_TAG" \
  --wait --timeout 5m

log "helm test (the operator's /healthz answers)"
helm test "$RELEASE" --namespace "$NAMESPACE" --logs --timeout 3m

log "pytest -m e2e against $KIND_CLUSTER"
export PIRATE_E2E_NAMESPACE="$NAMESPACE"
export PIRATE_E2E_OPERATOR_IMAGE="$OPERATOR_IMAGE:$IMAGE_TAG"
export PIRATE_E2E_WORKER_IMAGE="$WORKER_IMAGE:$IMAGE_TAG"
# shellcheck disable=SC2086 # PYTEST_ARGS is a list of options
"$PYTEST" -m e2e -ra ${PYTEST_ARGS:-}

# The operator holds a finalizer on its pools; the chart's pre-delete hook must delete the
# default pool while the operator still runs, or the pool would hang in Terminating.
log "helm uninstall (pre-delete hook releases the default pool)"
helm uninstall "$RELEASE" --namespace "$NAMESPACE" --wait --timeout 5m
left="$(kubectl --namespace "$NAMESPACE" get pirateworkerpools,deployments -o name)"
[[ -z $left ]] || die "left behind after helm uninstall: $left"
log "uninstalled cleanly"

#!/usr/bin/env bash
# make demo: a single-node cluster, tokenkeeper installed with its Helm chart, demo issuers for
# the five seed APIs and OAuth2 (tokens living 3 minutes), one Credential each, and an app pod
# that calls every issuer with the tokens from its mounted Secrets. Shows credentials and the
# app's log as tokens rotate. Ctrl-C or `make demo-down` stops everything.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state=bin/demo
# The demo gets its own cluster, wiped at every start, so that it begins from a clean state.
export CLUSTER_DIR=$root/$state/cluster
export KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig
helm=${HELM:-bin/helm-v3.22.0}
node_ip=$(hack/local-cluster.sh node-ip)
log() { echo "demo: $*" >&2; }

down() {
  if [ -f "$state/issuer.pid" ]; then kill "$(cat "$state/issuer.pid")" 2>/dev/null || true; rm -f "$state/issuer.pid"; fi
  hack/local-cluster.sh down
}

up() {
  hack/local-cluster.sh down >/dev/null 2>&1 || true
  rm -rf "$state" && mkdir -p "$state"
  hack/local-cluster.sh up
  log "building and importing images"
  IMAGES_DIR=$state hack/demo-images.sh
  log "installing tokenkeeper with its Helm chart"
  make -s "$helm" >/dev/null
  "$helm" upgrade --install tokenkeeper charts/tokenkeeper -n tokenkeeper-system --create-namespace \
    --set image.pullPolicy=Never --wait --timeout 5m >/dev/null
  log "starting the demo issuers on $node_ip"
  go build -o "$state/demo-issuer" ./hack/demo-issuer
  rm -f "$state/issuers.yaml"
  nohup "$state/demo-issuer" -ip "$node_ip" -lifetime "${TOKEN_LIFETIME:-3m}" -manifests "$state/issuers.yaml" >"$state/issuer.log" 2>&1 &
  echo $! >"$state/issuer.pid"
  for _ in $(seq 30); do [ -s "$state/issuers.yaml" ] && break; sleep 1; done
  kubectl apply -f "$state/issuers.yaml" >/dev/null
  kubectl -n demo wait --for=condition=Ready credentials --all --timeout=120s >/dev/null
  kubectl -n demo wait --for=condition=Ready pod/app --timeout=120s >/dev/null
  cat <<MSG

tokenkeeper is running. Explore with:
  export KUBECONFIG=$KUBECONFIG
  kubectl get credentials -n demo
  kubectl describe credential -n demo seed001
  kubectl logs -n demo app -f
Stop with Ctrl-C here, or: make demo-down

MSG
}

watch() {
  trap 'echo; down; exit 0' INT TERM
  local until=$((SECONDS + ${DEMO_SECONDS:-31536000}))
  while [ $SECONDS -lt $until ]; do
    kubectl get credentials -n demo
    kubectl logs -n demo app --since=30s | tail -n 6
    echo
    sleep 30
  done
}

case ${1:-up} in
  up) up; watch ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac

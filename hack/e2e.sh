#!/usr/bin/env bash
# make e2e: the end-to-end suite (test/e2e) on a fresh local single-node cluster. Installs the
# node's Debian packages when missing (as root), builds the cluster binaries and the images, runs
# the suite, and stops the cluster whatever happens. On failure it prints what the cluster saw.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state=$root/bin/e2e
export CLUSTER_DIR=$state/cluster
export KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig
helm=${HELM:-$root/bin/helm-v3.22.0}
node_ip=$(hack/local-cluster.sh node-ip)
log() { echo "e2e: $*" >&2; }

diagnose() {
  log "cluster state after the failure:"
  kubectl get nodes,pods -A -o wide || true
  kubectl get credentials,issuers,tokenvalidators -A || true
  kubectl get events -A --sort-by=.lastTimestamp | tail -n 40 || true
  for p in $(kubectl -n tokenkeeper-system get pods -o name 2>/dev/null); do
    echo "--- $p"; kubectl -n tokenkeeper-system logs "$p" --tail=60 || true
  done
  echo "--- kubelet"; tail -n 30 "$CLUSTER_DIR/kubelet.log" || true
}

hack/local-cluster.sh down >/dev/null 2>&1 || true
rm -rf "$state" && mkdir -p "$state"
trap 'hack/local-cluster.sh down >/dev/null 2>&1 || true' EXIT
start=$SECONDS
hack/local-cluster.sh up
IMAGES_DIR=$state/images hack/demo-images.sh
make -s "$helm" >/dev/null
log "cluster and images ready in $((SECONDS - start))s"
if ! HELM=$helm E2E_NODE_IP=$node_ip E2E_CONTAINERD_SOCK=$CLUSTER_DIR/containerd.sock \
  E2E_IMAGE_TAR=$root/bin/tokenkeeper-image.tar go test -tags e2e -count=1 -v -timeout 20m ./test/e2e; then
  diagnose
  exit 1
fi
log "passed in $((SECONDS - start))s"

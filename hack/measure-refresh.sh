#!/usr/bin/env bash
# make measure-refresh: how long a Secret update takes to reach a running container's mounted
# files, without and with the pod refresh (controllers/podrefresh), on the local single-node
# cluster with the kubelet's default syncFrequency (1m; KUBELET_SYNC_FREQUENCY overrides).
# Brings the cluster up in bin/measure-refresh/cluster, runs hack/measure-refresh
# (MEASURE_ROTATIONS updates per mode, default 5) and brings it down whatever happens, checking
# that none of its processes is left. Needs root (it reads the container's files through /proc).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state=$root/bin/measure-refresh
export CLUSTER_DIR=$state/cluster
export KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig
export KUBELET_SYNC_FREQUENCY=${KUBELET_SYNC_FREQUENCY:-1m}
log() { echo "measure-refresh: $*" >&2; }

down() {
  hack/local-cluster.sh down >/dev/null 2>&1 || true
  local left="" f
  for f in "$CLUSTER_DIR"/*.pid; do
    [ -f "$f" ] || continue
    local pid; pid=$(<"$f")
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$CLUSTER_DIR/"; then left="$left $pid"; fi
  done
  if [ -n "$left" ]; then log "left running after down:$left"; exit 1; fi
}

hack/local-cluster.sh down >/dev/null 2>&1 || true
rm -rf "$state" && mkdir -p "$state"
trap down EXIT
hack/local-cluster.sh up
go run ./hack/measure-refresh -containerd-sock "$CLUSTER_DIR/containerd.sock" -rotations "${MEASURE_ROTATIONS:-5}" | tee "$state/result.md"
log "result in $state/result.md"

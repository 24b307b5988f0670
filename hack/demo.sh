#!/usr/bin/env bash
# make demo: a single-node cluster, tokenkeeper installed with its Helm chart, demo issuers for
# the five seed APIs and OAuth2 (tokens living 3 minutes), one Credential each, and an app pod
# that calls every issuer with the tokens from its mounted Secrets. Shows credentials and the
# app's log as tokens rotate. Ctrl-C or `make demo-down` stops everything.
#   hack/demo.sh up      # bring up, then watch until Ctrl-C or DEMO_SECONDS; stops everything then
#   hack/demo.sh start   # bring up and return, leaving it running (make demo-smoke)
#   hack/demo.sh down    # stop everything up/start started
# A failed bring-up stops what it started. HELM is the helm binary (make demo passes the one it
# built); without it the Makefile's pinned helm is built at its absolute path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state=$root/bin/demo
# The demo gets its own cluster, wiped at every start, so that it begins from a clean state.
export CLUSTER_DIR=$state/cluster
export KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig
log() { echo "demo: $*" >&2; }

# ours PID: alive and still the demo issuer this script started (not a reused PID).
ours() { [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF -- "$state/demo-issuer"; }

down() {
  if [ -f "$state/issuer.pid" ]; then
    local pid; pid=$(cat "$state/issuer.pid")
    if ours "$pid"; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 20); do ours "$pid" || break; sleep 0.25; done
      if ours "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$state/issuer.pid"
  fi
  hack/local-cluster.sh down
}

helm_binary() {
  if [ -n "${HELM:-}" ]; then echo "$HELM"; return; fi
  local version; version=$(sed -n 's/^HELM_VERSION ?= *//p' Makefile)
  # The Makefile's rule is $(CURDIR)/bin/helm-VERSION: ask for that absolute path.
  make -s --no-print-directory "$root/bin/helm-$version" >&2
  echo "$root/bin/helm-$version"
}

bring_up_failed() {
  local rc=$?
  trap - EXIT INT TERM
  log "bring-up failed (exit $rc): stopping what it started"
  down >&2 || true
  exit "$rc"
}

# bring_up: everything up to the app's pod Ready. Any failure (or Ctrl-C) on the way stops what
# it started.
bring_up() {
  trap bring_up_failed EXIT
  trap 'exit 130' INT TERM
  local helm node_ip
  helm=$(helm_binary)
  node_ip=$(hack/local-cluster.sh node-ip)
  hack/local-cluster.sh down >/dev/null 2>&1 || true
  # Never delete through a mount that is still there (a pod's hostPath would be the host's files).
  if awk -v d="$state/" 'index($2, d) == 1 {found = 1} END {exit !found}' /proc/mounts; then
    log "$state still has mounts after hack/local-cluster.sh down; not deleting it"; exit 1
  fi
  rm -rf "$state" && mkdir -p "$state"
  go build -o "$state/demo-issuer" ./hack/demo-issuer
  hack/local-cluster.sh up
  log "building and importing images"
  IMAGES_DIR=$state hack/demo-images.sh
  log "installing tokenkeeper with its Helm chart"
  "$helm" upgrade --install tokenkeeper charts/tokenkeeper -n tokenkeeper-system --create-namespace \
    --set image.pullPolicy=Never --wait --timeout 5m >/dev/null
  log "starting the demo issuers on $node_ip"
  rm -f "$state/issuers.yaml"
  nohup setsid "$state/demo-issuer" -ip "$node_ip" -lifetime "${TOKEN_LIFETIME:-3m}" -manifests "$state/issuers.yaml" >"$state/issuer.log" 2>&1 &
  echo $! >"$state/issuer.pid"
  for _ in $(seq 30); do [ -s "$state/issuers.yaml" ] && break; sleep 1; done
  kubectl apply -f "$state/issuers.yaml" >/dev/null
  log "waiting for every Credential Ready and the app's pod"
  kubectl -n demo wait --for=condition=Ready credentials --all --timeout=120s >/dev/null
  kubectl -n demo wait --for=condition=Ready pod/app --timeout=120s >/dev/null
  trap - EXIT INT TERM
}

up() {
  bring_up
  cat <<MSG

tokenkeeper is running. Explore with:
  export KUBECONFIG=$KUBECONFIG
  kubectl get credentials -n demo
  kubectl describe credential -n demo seed001
  kubectl logs -n demo app -f
Stop with Ctrl-C here, or: make demo-down

MSG
}

# watch shows the Credentials and the app's log every 30 s until Ctrl-C or DEMO_SECONDS, then
# stops everything.
watch() {
  trap 'trap - EXIT INT TERM; echo; down; exit 0' INT TERM
  trap 'trap - EXIT INT TERM; down' EXIT
  local until=$((SECONDS + ${DEMO_SECONDS:-31536000}))
  while [ $SECONDS -lt $until ]; do
    kubectl get credentials -n demo || true
    kubectl logs -n demo app --since=30s | tail -n 6 || true
    echo
    sleep $((until - SECONDS < 30 ? until - SECONDS : 30))
  done
}

case ${1:-up} in
  up) up; watch ;;
  start) up ;;
  down) down ;;
  *) echo "usage: $0 up|start|down" >&2; exit 2 ;;
esac

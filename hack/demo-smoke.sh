#!/usr/bin/env bash
# make demo-smoke (CI): `make demo`, bounded. Brings the demo up (hack/demo.sh start), checks that
# every demo Credential is Ready and waits for the app's first 200 from every issuer, stops it
# (hack/demo.sh down) and fails when anything it started is left behind: a process, a mount under
# bin/demo, a network namespace or interface, an iptables chain or rule.
# DEMO_SMOKE_SECONDS bounds the wait for the app's calls (default 120).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state=$root/bin/demo
work=$root/bin/demo-smoke
export CLUSTER_DIR=$state/cluster
export KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig
log() { echo "demo-smoke: $*" >&2; }
indent() { sed 's/^/  /' >&2; }

# snapshot DIR: what the host has that a cluster could add to and leave behind.
snapshot() {
  mkdir -p "$1"
  local cmd
  for cmd in iptables ip6tables; do
    command -v "$cmd-save" >/dev/null || continue
    # User-defined chains and every rule (built-in chains of an empty table are no leftover).
    "$cmd-save" 2>/dev/null | awk -v cmd="$cmd" '/^\*/ {t = substr($0, 2)} (/^:/ && $2 == "-") || /^-A / {print cmd, t, $1 ($2 == "-" ? "" : " " substr($0, index($0, $2)))}'
  done | sort >"$1/iptables"
  ip netns list 2>/dev/null | awk '{print $1}' | sort >"$1/netns"
  ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | sort >"$1/links"
}

# started: the PIDs of everything the demo runs, from their PID files (the cluster's processes,
# the demo issuer, containerd's shims and the containers' first processes).
started() {
  local f
  for f in "$CLUSTER_DIR"/*.pid "$state/issuer.pid" "$CLUSTER_DIR"/containerd/state/io.containerd.runtime.v2.task/*/*/{shim,init}.pid; do
    if [ -f "$f" ]; then echo "$(<"$f")"; fi # containerd's files end without a newline
  done | sort -un
}

diagnose() {
  log "state of the demo:"
  kubectl get nodes,pods -A -o wide || true
  kubectl get credentials,issuers -A || true
  kubectl get events -A --sort-by=.lastTimestamp | tail -n 30 || true
  echo "--- app"; kubectl -n demo logs app --tail=30 || true
  for p in $(kubectl -n tokenkeeper-system get pods -o name 2>/dev/null); do
    echo "--- $p"; kubectl -n tokenkeeper-system logs "$p" --tail=40 || true
  done
  echo "--- demo issuer"; tail -n 20 "$state/issuer.log" || true
}

# first_200s: the issuers of the app's TARGETS (name=url=dir) it has not yet had a 200 from.
missing_200s() {
  local targets logs name
  targets=$(kubectl -n demo get pod app -o jsonpath='{.spec.containers[0].env[?(@.name=="TARGETS")].value}')
  logs=$(kubectl -n demo logs app 2>/dev/null || true)
  [ -n "$targets" ] || { echo "(no TARGETS)"; return; }
  for t in $targets; do
    name=${t%%=*}
    awk -v n="$name" '$2 == n && $3 == 200 {found = 1} END {exit !found}' <<<"$logs" || echo "$name"
  done
}

rm -rf "$work" && mkdir -p "$work"
snapshot "$work/before"
failed=
start=$SECONDS
# Whatever happens below, the demo is stopped (hack/demo.sh stops a failed bring-up itself).
trap 'hack/demo.sh down >/dev/null 2>&1 || true' EXIT
if ! hack/demo.sh start >"$work/demo.log" 2>&1; then
  cat "$work/demo.log"; log "FAIL: bring-up failed after $((SECONDS - start))s"; failed=1
fi
up_s=$((SECONDS - start))
started >"$work/pids"
if [ -z "$failed" ]; then
  log "up in ${up_s}s"
  creds=$(kubectl -n demo get credentials -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')
  indent <<<"$creds"
  n_targets=$(kubectl -n demo get pod app -o jsonpath='{.spec.containers[0].env[?(@.name=="TARGETS")].value}' | wc -w)
  if [ "$(grep -c '=True$' <<<"$creds")" -ne "$(grep -c . <<<"$creds")" ] || [ "$(grep -c . <<<"$creds")" -lt "$n_targets" ]; then
    log "FAIL: not every demo Credential is Ready (the app calls $n_targets issuers)"; failed=1
  fi
fi
if [ -z "$failed" ]; then
  until=$((SECONDS + ${DEMO_SMOKE_SECONDS:-120}))
  while missing=$(missing_200s) && [ -n "$missing" ] && [ $SECONDS -lt $until ]; do sleep 2; done
  if [ -n "$missing" ]; then
    log "FAIL: no 200 within ${DEMO_SMOKE_SECONDS:-120}s from: $(echo "$missing" | tr '\n' ' ')"; failed=1
  else
    log "the app had a 200 from every issuer $((SECONDS - start))s after the start:"
    { kubectl -n demo logs app || true; } | awk '$3 == 200 && !seen[$2]++' | indent
  fi
fi
calls_s=$((SECONDS - start))
[ -z "$failed" ] || diagnose

down_start=$SECONDS
hack/demo.sh down || { log "FAIL: hack/demo.sh down failed"; failed=1; }
trap - EXIT
down_s=$((SECONDS - down_start))

# Nothing may be left behind.
snapshot "$work/after"
left=
while read -r pid; do
  if [ -e "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
    left+="process $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"$'\n'
  fi
done <"$work/pids"
# And no process at all whose command line names the demo's directory.
for f in /proc/[0-9]*/cmdline; do
  cmd=$(tr '\0' ' ' <"$f" 2>/dev/null || true)
  if [[ $cmd == *"$state/"* ]]; then left+="process ${f//[^0-9]/}: $cmd"$'\n'; fi
done
left+=$(awk -v d="$state/" 'index($2, d) == 1 {print "mount " $2}' /proc/mounts)$'\n'
left+=$(comm -13 "$work/before/netns" "$work/after/netns" | sed 's/^/network namespace /')$'\n'
left+=$(comm -13 "$work/before/links" "$work/after/links" | sed 's/^/network interface /')$'\n'
left+=$(comm -13 "$work/before/iptables" "$work/after/iptables" | sed 's/^/iptables /')$'\n'
left+=$(grep ' :KUBE-' "$work/after/iptables" | sed 's/^/iptables /' || true)$'\n'
left=$(sort -u <<<"$left" | sed '/^$/d')
if [ -n "$left" ]; then
  log "FAIL: left behind after hack/demo.sh down:"; indent <<<"$left"; failed=1
else
  log "nothing left behind: $(wc -l <"$work/pids") started processes gone, no mounts under $state, no new network namespaces, interfaces or iptables chains"
fi
log "timings: up ${up_s}s, first 200s from every issuer at ${calls_s}s, down ${down_s}s, total $((SECONDS - start))s"
[ -z "$failed" ] || exit 1
log "passed"

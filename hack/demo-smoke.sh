#!/usr/bin/env bash
# make demo-smoke (CI): `make demo`, bounded. Runs hack/demo.sh up as make demo does, checks that
# every demo Credential is Ready, waits for the app's first 200 from every issuer, presses Ctrl-C
# (SIGINT to the demo's process group) and fails when anything it started is left behind: a
# process, a mount under bin/demo, a network namespace or interface, an iptables chain or rule.
# DEMO_SMOKE_SECONDS bounds the wait for the app's calls (default 120), DEMO_SMOKE_UP_SECONDS the
# bring-up (default 1800: alone on a cold machine it builds the node binaries first; in CI after
# make e2e it takes about 30 s).
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

# started: the PIDs of everything the demo runs, from what recorded them: the PID files of the
# cluster's processes and the demo issuer, containerd's task bundles (containers, shims).
started() {
  local f bundles=$CLUSTER_DIR/containerd/state/io.containerd.runtime.v2.task
  for f in "$CLUSTER_DIR"/*.pid "$state/issuer.pid" "$bundles"/*/*/init.pid; do
    if [ -f "$f" ]; then echo "$(<"$f")"; fi # containerd's files end without a newline
  done
  # The shims: listening on the socket each bundle's address file names.
  for f in "$bundles"/*/*/address; do
    if [ -f "$f" ]; then ss -Hxlp src "$(sed 's#^unix://##' "$f")" | grep -o 'pid=[0-9]*' | cut -d= -f2 || true; fi
  done
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

# missing_200s: the issuers of the app's TARGETS (name=url=dir) it has not yet had a 200 from.
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
# `make demo` as a user runs it: hack/demo.sh up in a process group of its own, as in a terminal,
# so that Ctrl-C can be pressed below. DEMO_SECONDS ends it should this script be killed.
set -m
DEMO_SECONDS=600 hack/demo.sh up >"$work/demo.log" 2>&1 &
demo=$!
set +m
# Whatever happens below, the demo is stopped (hack/demo.sh stops a failed bring-up itself).
trap 'kill -INT -- -$demo 2>/dev/null || true; wait $demo 2>/dev/null || true; hack/demo.sh down >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT TERM
until grep -q '^tokenkeeper is running' "$work/demo.log" || ! kill -0 "$demo" 2>/dev/null ||
  [ $((SECONDS - start)) -ge "${DEMO_SMOKE_UP_SECONDS:-1800}" ]; do sleep 1; done
up_s=$((SECONDS - start))
if ! grep -q '^tokenkeeper is running' "$work/demo.log"; then
  indent <"$work/demo.log"; log "FAIL: bring-up failed after ${up_s}s"; failed=1
fi
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
started | sort -un >"$work/pids"
[ -z "$failed" ] || diagnose

# Ctrl-C: the demo's trap stops everything it started.
down_start=$SECONDS
if kill -INT -- -"$demo" 2>/dev/null; then
  for _ in $(seq 120); do kill -0 "$demo" 2>/dev/null || break; sleep 1; done
  if kill -0 "$demo" 2>/dev/null; then log "FAIL: hack/demo.sh up still runs 120 s after Ctrl-C"; failed=1; fi
fi
rc=0; wait "$demo" || rc=$?
[ "$rc" = 0 ] || [ -n "$failed" ] || { log "FAIL: hack/demo.sh up exited with $rc"; failed=1; }
trap - EXIT
down_s=$((SECONDS - down_start))
sed -n '/^local-cluster: stopped/,$p' "$work/demo.log" | indent

# Nothing may be left behind.
snapshot "$work/after"
left=
while read -r pid; do
  if [ -e "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
    left+="process $pid: $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")"$'\n'
  fi
done <"$work/pids"
# And no process at all whose command line names the demo's directory.
for f in /proc/[0-9]*/cmdline; do
  cmd=$(tr '\0' ' ' 2>/dev/null <"$f" || true)
  if [[ $cmd == *"$state/"* ]]; then left+="process ${f//[^0-9]/}: $cmd"$'\n'; fi
done
left+=$(awk -v d="$state/" 'index($2, d) == 1 {print "mount " $2}' /proc/mounts)$'\n'
left+=$(comm -13 "$work/before/netns" "$work/after/netns" | sed 's/^/network namespace /')$'\n'
left+=$(comm -13 "$work/before/links" "$work/after/links" | sed 's/^/network interface /')$'\n'
left+=$(comm -13 "$work/before/iptables" "$work/after/iptables" | sed 's/^/iptables /')$'\n'
left+=$(grep ' :KUBE-' "$work/after/iptables" | sed 's/^/iptables /' || true)$'\n'
left=$(sort -u <<<"$left" | sed '/^$/d')
if [ -n "$left" ]; then
  log "FAIL: left behind after Ctrl-C:"; indent <<<"$left"; failed=1
else
  log "nothing left behind: $(wc -l <"$work/pids") started processes gone, no mounts under $state, no new network namespaces, interfaces or iptables chains"
fi
log "timings: up ${up_s}s, first 200s from every issuer at ${calls_s}s, stopped ${down_s}s after Ctrl-C, total $((SECONDS - start))s"
[ -z "$failed" ] || exit 1
log "passed"

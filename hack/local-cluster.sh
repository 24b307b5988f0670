#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, without Docker (see shared LOCAL-CLUSTER.md):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd + runc, kubelet, a
# bridge CNI and kube-proxy (iptables) so that pods reach the `kubernetes` Service.
#   hack/local-cluster.sh up     # build what is missing, start everything, wait for the node
#   hack/local-cluster.sh down   # stop what it started (by PID file), unmount, remove its netns,
#                                #   bridge, pod addresses and the iptables chains the node added
#   hack/local-cluster.sh import IMAGE.tar   # load an OCI image tar into containerd
#   hack/local-cluster.sh node-ip   # the address pods reach this machine at (NODE_IP overrides)
#   hack/local-cluster.sh deps   # install the Debian packages it needs (as root), if missing
# KUBECONFIG for kubectl: bin/cluster/admin.kubeconfig. KUBELET_SYNC_FREQUENCY sets the kubelet's
# syncFrequency (default 10s, for tests; the kubelet's own default is 1m).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state=${CLUSTER_DIR:-$root/bin/cluster}
bin=$root/bin/k8s
node=${NODE_NAME:-tokenkeeper-node}
node_ip=${NODE_IP:-$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')}
node_ip=${node_ip:-$(hostname -I | awk '{print $1}')}
service_cidr=10.96.0.0/16
pod_cidr=10.244.0.0/24
# The pod bridge gets a name of its own so that `down` deletes nobody else's (cni0 is flannel's).
bridge=tkcni0
cni_net=tokenkeeper
sock=$state/containerd.sock
log() { echo "local-cluster: $*" >&2; }

pki() {
  local d=$state/pki
  [ -f "$d/ca.crt" ] && return
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=tokenkeeper-local-ca -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  # name CN O SANs
  cert() {
    local name=$1 cn=$2 org=$3 sans=${4:-}
    local subj="/CN=$cn"; [ -n "$org" ] && subj="/O=$org/CN=$cn"
    openssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$d/$name.key" -out "$d/$name.csr" 2>/dev/null
    local ext; ext=$(mktemp)
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$ext"
    [ -n "$sans" ] && echo "subjectAltName=$sans" >>"$ext"
    openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 3650 -extfile "$ext" -out "$d/$name.crt" 2>/dev/null
    rm -f "$ext" "$d/$name.csr"
  }
  cert apiserver kube-apiserver "" "IP:127.0.0.1,IP:$node_ip,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin admin system:masters
  cert kubelet "system:node:$node" system:nodes "IP:$node_ip,IP:127.0.0.1,DNS:$node"
  cert controller-manager system:kube-controller-manager ""
  cert scheduler system:kube-scheduler ""
  cert proxy system:kube-proxy ""
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
}

kubeconfig() { # name cert
  local f=$state/$1.kubeconfig
  cat >"$f" <<KC
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://$node_ip:6443", certificate-authority: "$state/pki/ca.crt"}}]
users: [{name: $1, user: {client-certificate: "$state/pki/$2.crt", client-key: "$state/pki/$2.key"}}]
contexts: [{name: local, context: {cluster: local, user: $1}}]
current-context: local
KC
}

# ours PID: the process is alive and one this cluster started (every command line names $state;
# a stale PID file whose number was reused by an unrelated process is not ours).
ours() {
  [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF -- "$state/"
}

start() { # name command...
  local name=$1; shift
  if [ -f "$state/$name.pid" ] && ours "$(cat "$state/$name.pid")"; then return; fi
  # In a session of its own: a Ctrl-C on whoever started the cluster (make demo) reaches that
  # script, whose trap stops everything in order, and not these processes all at once.
  nohup setsid "$@" >"$state/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
}

wait_for() { # what seconds command...
  local what=$1 secs=$2; shift 2
  for _ in $(seq "$secs"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  log "timed out waiting for $what"; return 1
}

images() {
  local d=$state/images; mkdir -p "$d"
  if [ ! -f "$d/pause.tar" ]; then
    CGO_ENABLED=0 go build -C "$root" -trimpath -o "$d/pause" ./hack/pause
    go run -C "$root" ./hack/ociimage -ref docker.io/local/pause:1 -entrypoint /pause -user 65535:65535 -out "$d/pause.tar" "$d/pause:/pause"
    go run -C "$root" ./hack/ociimage -ref docker.io/local/busybox:1 -entrypoint /bin/busybox -user 0:0 -out "$d/busybox.tar" /usr/bin/busybox:/bin/busybox
  fi
  for t in "$d/pause.tar" "$d/busybox.tar"; do ctr -a "$sock" -n k8s.io image import "$t" >/dev/null; done
}

# The node's packages: containerd and runc run pods, the CNI plugins wire them, busybox-static is
# a tiny image for debugging, iptables and conntrack serve kube-proxy, openssl makes the PKI.
packages=(containerd runc busybox-static containernetworking-plugins iptables conntrack openssl)
deps() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/bin/busybox ] || missing+=(busybox-static)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v openssl >/dev/null || missing+=(openssl)
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "missing ${missing[*]}: run as root: apt-get install ${packages[*]}"; exit 1
  fi
  log "installing ${missing[*]} with apt-get"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

up() {
  [ -n "$node_ip" ] || { log "cannot find the node IP; set NODE_IP"; exit 1; }
  deps
  "$root/hack/cluster-assets.sh" >/dev/null
  if ! ours "$(cat "$state/kube-apiserver.pid" 2>/dev/null)" && ss -Htln 'sport = :6443' | grep -q .; then
    log "port 6443 is taken: another cluster runs (stop it with its own down, e.g. make demo-down)"; exit 1
  fi
  mkdir -p "$state"
  # The chains that exist before the kubelet and kube-proxy start: down removes the others.
  [ -f "$state/iptables.before" ] || chains >"$state/iptables.before"
  pki
  for k in admin:admin kubelet:kubelet controller-manager:controller-manager scheduler:scheduler proxy:proxy; do kubeconfig "${k%%:*}" "${k##*:}"; done
  local p=$state/pki
  start etcd "$bin/etcd" --data-dir "$state/etcd" --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster default=http://127.0.0.1:2380
  start kube-apiserver "$bin/kube-apiserver" --etcd-servers http://127.0.0.1:2379 --bind-address 0.0.0.0 --secure-port 6443 \
    --advertise-address "$node_ip" --service-cluster-ip-range "$service_cidr" --allow-privileged=true \
    --client-ca-file "$p/ca.crt" --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --kubelet-client-certificate "$p/admin.crt" --kubelet-client-key "$p/admin.key" --kubelet-certificate-authority "$p/ca.crt" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local --authorization-mode Node,RBAC
  wait_for kube-apiserver 60 kubectl --kubeconfig "$state/admin.kubeconfig" get --raw /readyz
  start kube-controller-manager "$bin/kube-controller-manager" --kubeconfig "$state/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$state/controller-manager.kubeconfig" --authorization-kubeconfig "$state/controller-manager.kubeconfig" \
    --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" --use-service-account-credentials \
    --cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" --leader-elect=false --bind-address 127.0.0.1
  start kube-scheduler "$bin/kube-scheduler" --kubeconfig "$state/scheduler.kubeconfig" \
    --authentication-kubeconfig "$state/scheduler.kubeconfig" --authorization-kubeconfig "$state/scheduler.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1

  mkdir -p "$state/cni" "$state/containerd"
  cat >"$state/cni/10-bridge.conflist" <<CNI
{"cniVersion": "1.0.0", "name": "$cni_net", "plugins": [
  {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$pod_cidr"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "loopback"}]}
CNI
  cat >"$state/containerd.toml" <<TOML
version = 2
root = "$state/containerd/root"
state = "$state/containerd/state"
[grpc]
  address = "$sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/local/pause:1"
  restrict_oom_score_adj = true
  # Pod network namespaces are mounted in this directory (not /run/netns), so that down finds them.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$state/cni"
TOML
  start containerd containerd --config "$state/containerd.toml"
  wait_for containerd 30 ctr -a "$sock" version
  images

  cat >"$state/kubelet.yaml" <<KCFG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$sock
syncFrequency: ${KUBELET_SYNC_FREQUENCY:-10s}
authentication:
  anonymous: {enabled: false}
  x509: {clientCAFile: "$p/ca.crt"}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
tlsCertFile: "$p/kubelet.crt"
tlsPrivateKeyFile: "$p/kubelet.key"
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
resolvConf: /etc/resolv.conf
podLogsDir: "$state/pod-logs"
KCFG
  start kubelet "$bin/kubelet" --config "$state/kubelet.yaml" --kubeconfig "$state/kubelet.kubeconfig" \
    --hostname-override "$node" --node-ip "$node_ip" --root-dir "$state/kubelet"
  cat >"$state/proxy.yaml" <<PCFG
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$state/proxy.kubeconfig"}
mode: iptables
clusterCIDR: 10.244.0.0/16
hostnameOverride: $node
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
PCFG
  start kube-proxy "$bin/kube-proxy" --config "$state/proxy.yaml"
  wait_for "node $node Ready" 120 sh -c "kubectl --kubeconfig '$state/admin.kubeconfig' get node '$node' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -q True"
  log "node $node is Ready; export KUBECONFIG=$state/admin.kubeconfig"
}

# chains: the user-defined iptables chains of every table, one "command table chain" a line.
chains() {
  local cmd
  for cmd in iptables ip6tables; do
    command -v "$cmd-save" >/dev/null || continue
    "$cmd-save" 2>/dev/null | awk -v cmd="$cmd" '/^\*/ {t = substr($0, 2)} /^:/ && $2 == "-" {print cmd, t, substr($1, 2)}'
  done
}

# unchain removes the chains the node added: the kubelet's and kube-proxy's KUBE-* (KUBE-SERVICES,
# KUBE-KUBELET-CANARY, …) and any other chain missing from iptables.before, with the rules in other
# chains that jump to them; one iptables-restore transaction per table.
unchain() {
  local cmd t script have_before=0
  [ -f "$state/iptables.before" ] && have_before=1
  for cmd in iptables ip6tables; do
    command -v "$cmd-save" >/dev/null || continue
    for t in $("$cmd-save" 2>/dev/null | sed -n 's/^\*//p'); do
      script=$("$cmd-save" -t "$t" | awk -v cmd="$cmd" -v t="$t" -v before="$state/iptables.before" -v have_before="$have_before" '
        BEGIN { if (have_before) while ((getline l < before) > 0) seen[l] = 1 }
        /^:/ && $2 == "-" {
          c = substr($1, 2)
          if (c ~ /^KUBE-/ || (have_before && !((cmd " " t " " c) in seen))) { doomed[c] = 1; order[n++] = c }
          next
        }
        /^-A / { rules[m++] = $0 }
        END {
          if (n == 0) exit
          print "*" t
          for (i = 0; i < m; i++) {
            k = split(rules[i], f, " ")
            if (f[2] in doomed) continue
            for (j = 3; j < k; j++) if ((f[j] == "-j" || f[j] == "-g") && (f[j + 1] in doomed)) {
              r = rules[i]; sub(/^-A /, "-D ", r); print r; break
            }
          }
          for (i = 0; i < n; i++) print "-F " order[i]
          for (i = 0; i < n; i++) print "-X " order[i]
          print "COMMIT"
        }')
      [ -z "$script" ] || "$cmd-restore" --noflush <<<"$script" || log "could not remove the $cmd $t chains"
    done
  done
}

# alive PID: running (a zombie waiting for whoever adopted it to reap it is not).
alive() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

# kill_pid PID: SIGTERM, up to 10 s to exit (its ports must be free for the next `up`), then SIGKILL.
kill_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do alive "$pid" || return 0; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 10); do alive "$pid" || return 0; sleep 0.2; done
}

stop() { # name
  local name=$1
  [ -f "$state/$name.pid" ] || return 0
  local pid; pid=$(cat "$state/$name.pid")
  # Only the process this PID file names, and only while it is still ours (not a reused PID).
  if ours "$pid"; then kill_pid "$pid"; fi
  rm -f "$state/$name.pid"
}

# What containerd started, from what it records in each task's bundle: the containers' first
# processes (init.pid) and the runc shims serving them (containerd 1.6 writes no shim.pid: the
# process listening on the socket the bundle's address file names).
bundles=$state/containerd/state/io.containerd.runtime.v2.task
init_pids() {
  local f
  for f in "$bundles"/*/*/init.pid; do
    if [ -f "$f" ]; then echo "$(<"$f")"; fi # no newline at the end of the file
  done | sort -u
}
shim_pids() {
  local f
  for f in "$bundles"/*/*/address; do
    if [ -f "$f" ]; then ss -Hxlp src "$(sed 's#^unix://##' "$f")" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 || true; fi
  done | sort -u
}

down() {
  [ -d "$state" ] || { log "no cluster in $state"; return 0; }
  stop kube-proxy
  stop kubelet
  local shims inits pid ppid
  shims=$(for pid in $(shim_pids); do ours "$pid" && echo "$pid"; done || true)
  # A container's first process, while its parent is one of our shims (else its PID was reused).
  inits=$(for pid in $(init_pids); do
    ppid=$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null || true)
    [ -n "$ppid" ] && grep -qx "$ppid" <<<"$shims" && echo "$pid"
  done || true)
  # Containers outlive containerd and their shims: kill them while containerd still knows them,
  # then any it did not (containerd already gone), and wait until they are gone.
  local ids; ids=$(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null || true)
  for id in $ids; do ctr -a "$sock" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
  [ -z "$ids" ] || sleep 1
  for pid in $inits; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in $inits; do for _ in $(seq 25); do alive "$pid" || break; sleep 0.2; done; done
  stop containerd
  # The control plane together (the API server alone takes seconds to shut down), then etcd.
  for name in kube-scheduler kube-controller-manager kube-apiserver; do stop "$name" & done
  wait
  stop etcd
  # The shims outlive containerd too.
  for pid in $shims; do if ours "$pid"; then kill_pid "$pid"; fi; done
  # Pod volumes, container filesystems and the pods' network namespaces (netns_mounts_under_state_dir)
  # stay mounted after their owners are gone: unmount them, deepest first, or the next start cannot
  # delete this directory.
  awk -v d="$state/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"
  done
  # The node's network, only when this directory's node ran (another directory's may be running).
  [ -f "$state/containerd.toml" ] || { log "stopped"; return 0; }
  local ipam=/var/lib/cni/networks/$cni_net
  if [ -d "$ipam" ]; then
    # Clusters started before netns_mounts_under_state_dir left their pods' namespaces in /run/netns:
    # those whose address this network handed out are ours.
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
      local addr; addr=$(ip netns exec "$ns" ip -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}' | cut -d/ -f1)
      if [ -n "$addr" ] && [ -f "$ipam/$addr" ]; then ip netns delete "$ns" 2>/dev/null || true; fi
    done
    rm -rf "$ipam"
  fi
  # The CNI plugins' cached results of our pods (the CRI keeps a directory per sandbox here).
  local b
  for b in "$state"/containerd/state/io.containerd.grpc.v1.cri/sandboxes/*; do
    if [ -d "$b" ]; then rm -f /var/lib/cni/results/{"$cni_net",cni-loopback}-"${b##*/}"-*; fi
  done
  # The kubelet's /var/log/containers links into pod-logs here.
  for b in /var/log/containers/*.log; do
    if [[ $(readlink "$b" 2>/dev/null) == "$state/"* ]]; then rm -f "$b"; fi
  done
  if ip link show "$bridge" >/dev/null 2>&1; then ip link delete "$bridge" || log "cannot delete the bridge $bridge"; fi
  # The kubelet's pod cgroups, now empty (rmdir removes no cgroup that still has a process).
  find /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods -depth -type d -exec rmdir {} + 2>/dev/null || true
  [ ! -f "$state/iptables.before" ] || { unchain; rm -f "$state/iptables.before"; }
  log "stopped"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  deps) deps ;;
  import) ctr -a "$sock" -n k8s.io image import "$2" ;;
  node-ip) echo "$node_ip" ;;
  *) echo "usage: $0 up|down|deps|node-ip|import IMAGE.tar" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Builds the node and control-plane binaries a local single-node cluster needs (kubelet,
# kube-controller-manager, kube-scheduler, kube-proxy) from Go modules into bin/k8s, beside the
# kube-apiserver and etcd that hack/envtest-assets.sh builds. Prints the directory.
set -euo pipefail
KUBE_VERSION=${KUBE_VERSION:-1.37.1}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${ASSETS_DIR:-$root/bin/k8s}
mod=$root/bin/.build/kube-cluster
"$root/hack/envtest-assets.sh" >/dev/null
exec 9>"$root/bin/.build/.cluster-assets.lock"
flock 9
cmds=(kubelet kube-controller-manager kube-scheduler kube-proxy)
missing=()
for c in "${cmds[@]}"; do
  if [ ! -x "$out/$c" ] || [ "$(cat "$out/.$c.version" 2>/dev/null)" != "$KUBE_VERSION" ]; then missing+=("$c"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "cluster-assets: building ${missing[*]} v$KUBE_VERSION from Go modules" >&2
  rm -rf "$mod" && mkdir -p "$mod"
  # Same module shape as the kube-apiserver build: staging modules from their published copies.
  cp "$root/bin/.build/kube-apiserver/go.mod" "$mod/go.mod"
  sed -i 's#^module .*#module local/kube-cluster#' "$mod/go.mod"
  {
    echo '//go:build tools'
    echo
    echo 'package tools'
    echo
    echo 'import ('
    for c in "${cmds[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$c\""; done
    echo ')'
  } >"$mod/tools.go"
  (cd "$mod" && go mod tidy -e >/dev/null 2>&1 || true)
  for c in "${missing[@]}"; do
    (cd "$mod" && go build -trimpath -o "$out/$c" \
      -ldflags "-X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${KUBE_VERSION#1.}" \
      "k8s.io/kubernetes/cmd/$c")
    echo "$KUBE_VERSION" >"$out/.$c.version"
  done
fi
echo "$out"

#!/usr/bin/env bash
# Builds kube-apiserver and etcd from Go modules into bin/k8s/ (once) for envtest.
# No binary is downloaded: both come from the Go module proxy as source and are compiled here.
# Prints the directory to use as KUBEBUILDER_ASSETS.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.37.1}     # k8s.io/kubernetes; staging modules are v0.${KUBE_VERSION#1.}
ETCD_VERSION=${ETCD_VERSION:-3.6.6}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${ASSETS_DIR:-$root/bin/k8s}
work=$root/bin/.build
mkdir -p "$out" "$work"
# One build at a time (CI builds the cluster binaries in the background while make test waits for
# these); a waiting caller finds the binaries built when it gets the lock.
exec 9>"$work/.envtest-assets.lock"
flock 9

stamp() { cat "$out/.$1.version" 2>/dev/null || true; }
log() { echo "envtest-assets: $*" >&2; }

build_apiserver() {
  local staging="v0.${KUBE_VERSION#1.}" mod="$work/kube-apiserver" gomod
  if [ -x "$out/kube-apiserver" ] && [ "$(stamp kube-apiserver)" = "$KUBE_VERSION" ]; then return; fi
  log "building kube-apiserver v$KUBE_VERSION from Go modules (about 5 minutes the first time)"
  rm -rf "$mod" && mkdir -p "$mod"
  gomod=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  {
    echo "module local/kube-apiserver"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes v$KUBE_VERSION"
    echo
    # k8s.io/kubernetes replaces its staging modules with ./staging paths; point them at the
    # published copies instead.
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#replace \1 => \1 '"$staging"'#p' "$gomod"
  } >"$mod/go.mod"
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
  (cd "$mod" && go mod tidy -e >/dev/null 2>&1 || true)
  (cd "$mod" && go build -trimpath -o "$out/kube-apiserver" \
    -ldflags "-X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${KUBE_VERSION#1.}" \
    k8s.io/kubernetes/cmd/kube-apiserver)
  echo "$KUBE_VERSION" >"$out/.kube-apiserver.version"
}

build_etcd() {
  local mod="$work/etcd"
  if [ -x "$out/etcd" ] && [ "$(stamp etcd)" = "$ETCD_VERSION" ]; then return; fi
  log "building etcd v$ETCD_VERSION from Go modules"
  rm -rf "$mod" && mkdir -p "$mod"
  cat >"$mod/go.mod" <<GOMOD
module local/etcd

go 1.26

require go.etcd.io/etcd/server/v3 v$ETCD_VERSION
GOMOD
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  (cd "$mod" && go mod tidy -e >/dev/null 2>&1 || true)
  (cd "$mod" && go build -trimpath -o "$out/etcd" go.etcd.io/etcd/server/v3)
  echo "$ETCD_VERSION" >"$out/.etcd.version"
}

build_etcd
build_apiserver
# envtest also looks for kubectl beside the servers; use the machine's when present.
if [ ! -e "$out/kubectl" ] && command -v kubectl >/dev/null 2>&1; then ln -sf "$(command -v kubectl)" "$out/kubectl"; fi
echo "$out"

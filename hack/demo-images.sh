#!/usr/bin/env bash
# Builds the manager image (make image) and the demo application's image (hack/demo-app) as OCI
# layout tars and imports both into the local cluster's containerd (CLUSTER_DIR).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${IMAGES_DIR:-bin/images}
mkdir -p "$out"
# Only this machine's platform: the local cluster runs nothing else (a release builds every one).
make -s image PLATFORMS="linux/$(go env GOARCH)" >/dev/null
hack/local-cluster.sh import bin/tokenkeeper-image.tar >/dev/null
CGO_ENABLED=0 go build -trimpath -o "$out/demo-app" ./hack/demo-app
go run ./hack/ociimage -ref docker.io/local/demo-app:1 -entrypoint /demo-app -out "$out/demo-app.tar" "$out/demo-app:/demo-app"
hack/local-cluster.sh import "$out/demo-app.tar" >/dev/null

#!/usr/bin/env bash
# Builds kubectl-tokenkeeper archives for each platform into bin/krew/ and writes the krew
# manifest for them (hack/krew/tokenkeeper.yaml with versions, URLs and sha256 filled in).
set -euo pipefail
VERSION=${VERSION:?}
BASE_URL=${BASE_URL:-https://github.com/tokenkeeper/tokenkeeper/releases/download/${VERSION}}
out=bin/krew
rm -rf "$out" && mkdir -p "$out"
platforms=""
for p in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64; do
  os=${p%/*} arch=${p#*/} exe=kubectl-tokenkeeper
  [ "$os" = windows ] && exe=kubectl-tokenkeeper.exe
  dir=$(mktemp -d)
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -ldflags "-s -w -X github.com/tokenkeeper/tokenkeeper/internal/version.Version=${VERSION}" \
    -o "$dir/$exe" ./cmd/kubectl-tokenkeeper
  cp LICENSE "$dir/" 2>/dev/null || true
  archive="kubectl-tokenkeeper_${VERSION}_${os}_${arch}.tar.gz"
  tar -C "$dir" -czf "$out/$archive" .
  rm -rf "$dir"
  sha=$(sha256sum "$out/$archive" | cut -d' ' -f1)
  platforms+="  - selector:
      matchLabels: {os: ${os}, arch: ${arch}}
    uri: ${BASE_URL}/${archive}
    sha256: ${sha}
    bin: ${exe}
"
done
manifest=$(<hack/krew/tokenkeeper.yaml)
manifest=${manifest//'${VERSION}'/$VERSION}
manifest=${manifest//'${PLATFORMS}'/${platforms%$'\n'}}
printf '%s\n' "$manifest" > "$out/tokenkeeper.yaml"
echo "wrote $out/tokenkeeper.yaml and $(ls "$out"/*.tar.gz | wc -l) archives"

#!/usr/bin/env bash
# Builds test/peers/opaextauthz (Open Policy Agent's Rego engine behind Envoy's ext_authz gRPC
# Check, the peer of `make bench-grpc`) against a pinned OPA release, in a throw-away module under
# bin/.build so OPA never enters tokenkeeper's go.mod. go-control-plane and grpc-go: the versions
# OPA's own module graph selects.
# Usage: hack/build-opa-ext-authz.sh OPA_VERSION OUTPUT
set -euo pipefail
opa=$1 output=$2
root=$(cd "$(dirname "$0")/.." && pwd)
work=$root/bin/.build/$(basename "$output")
rm -rf "$work" && mkdir -p "$work"
sed '/^\/\/go:build ignore$/d' "$root/test/peers/opaextauthz/main.go" >"$work/main.go"
cd "$work"
printf 'module local/%s\n\ngo 1.26\n' "$(basename "$output")" >go.mod
echo "build-opa-ext-authz: github.com/open-policy-agent/opa@$opa (a few minutes the first time)" >&2
go get "github.com/open-policy-agent/opa@$opa"
go mod tidy
go build -o "$output" .

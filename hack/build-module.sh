#!/usr/bin/env bash
# Builds a main package of a Go module at a pinned version into OUTPUT, from a throw-away module
# under bin/.build (so the module's own replace directives, which `go install module@version`
# refuses, do not matter). Used for the validation peers `make bench-peers` compares against.
# Usage: hack/build-module.sh MODULE VERSION PACKAGE OUTPUT
set -euo pipefail
module=$1 version=$2 package=$3 output=$4
root=$(cd "$(dirname "$0")/.." && pwd)
work=$root/bin/.build/$(basename "$output")
rm -rf "$work" && mkdir -p "$work"
cd "$work"
printf 'module local/%s\n\ngo 1.26\n' "$(basename "$output")" >go.mod
echo "build-module: $module@$version (a few minutes the first time)" >&2
go get "$module@$version"
go build -o "$output" "$package"

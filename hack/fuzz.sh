#!/usr/bin/env bash
# Runs Go fuzz targets for a bounded time each. `make test` fuzzes the issuer engine's parsers
# briefly (5s each); `make fuzz` runs every target longer. Seed corpora live in testdata/fuzz/
# and also run as ordinary tests in `go test ./...`.
# Usage: hack/fuzz.sh FUZZTIME [PACKAGE...]   (packages default to every package with targets)
set -euo pipefail
fuzztime=${1:-5s}
shift || true
cd "$(dirname "$0")/.."
found=0
while IFS=: read -r file name; do
  pkg=$(dirname "$file")
  if [ $# -gt 0 ] && [[ " $* " != *" $pkg "* ]]; then continue; fi
  echo "fuzz: $pkg $name ($fuzztime)"
  go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg"
  found=$((found + 1))
done < <(grep -rhoE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' --with-filename . | sed 's/func //' | sort)
echo "fuzz: $found targets ran for $fuzztime each"

#!/usr/bin/env bash
# Runs every Go fuzz target in the repository for a bounded time each (default 5s).
# `make test` runs it briefly; `make fuzz` runs it longer. Seed corpora live in testdata/fuzz/.
set -euo pipefail
fuzztime=${1:-5s}
cd "$(dirname "$0")/.."
found=0
while IFS=: read -r file name; do
  pkg=$(dirname "$file")
  echo "fuzz: $pkg $name ($fuzztime)"
  go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg"
  found=$((found + 1))
done < <(grep -rhoE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' --with-filename . | sed 's/func //' | sort)
echo "fuzz: $found targets ran for $fuzztime each"

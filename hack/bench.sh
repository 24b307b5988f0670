#!/usr/bin/env bash
# make bench: Go benchmarks of token validation in process and over HTTP on loopback, each run
# COUNT times; prints the medians and the two target ratios from the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-5}
benchtime=${BENCHTIME:-2s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test -run='^$' -bench='BenchmarkValidate|BenchmarkHTTP' -benchtime="$benchtime" -count="$count" ./internal/validation/ | tee "$out"
echo
awk '
function median(name, metric,   n, i, j, t, a) {
  n = split(vals[name, metric], a, " ")
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
  return a[int((n + 1) / 2)]
}
/^Benchmark/ {
  name = $1; sub(/-[0-9]+$/, "", name); names[name] = 1
  for (i = 3; i < NF; i += 2) vals[name, $(i + 1)] = vals[name, $(i + 1)] " " $i
}
END {
  printf "%-40s %12s %10s %10s\n", "benchmark (median of runs)", "ops/s", "p50 µs", "p99 µs"
  for (n in names) {
    sorted = sorted n "\n"
  }
  m = split(sorted, list, "\n")
  for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (list[j] < list[i]) { t = list[i]; list[i] = list[j]; list[j] = t }
  for (k = 1; k <= m; k++) {
    n = list[k]; if (n == "") continue
    nsop = median(n, "ns/op"); rps = (vals[n, "req/s"] != "") ? median(n, "req/s") : 1e9 / nsop
    p50 = (vals[n, "p50-µs"] != "") ? median(n, "p50-µs") : "-"; p99 = (vals[n, "p99-µs"] != "") ? median(n, "p99-µs") : "-"
    printf "%-40s %12.0f %10s %10s\n", n, rps, p50, p99
    ops[n] = rps
  }
  bare = ops["BenchmarkHTTP/bare"]; cached = ops["BenchmarkHTTP/RS256-cached"]
  uncached = ops["BenchmarkHTTP/RS256-uncached"]; inproc = ops["BenchmarkValidate/RS256/uncached"]
  printf "\ncached RS256 over HTTP / bare handler:            %5.1f%% (target >= 80%%)\n", 100 * cached / bare
  printf "uncached RS256 over HTTP / in-process RS256 verify: %5.1f%% (target >= 50%%)\n", 100 * uncached / inproc
  distinct = ops["BenchmarkValidateDistinct"]
  printf "distinct RS256 tokens / no cache at all (in process): %5.1f%% (target >= 90%%)\n", 100 * distinct / inproc
}' "$out"

#!/usr/bin/env bash
# The memory target of docs/performance.md: a fresh `herald dev` under an
# open-ended herald bench for DURATION, its resident set sampled every
# STEP seconds from /proc, beside what Go's heap holds then (from
# /metrics). Prints one line per sample, then the high-water mark and the
# run's completed orders/s.
#
#   scripts/bench-memory.sh [DURATION] [STEP]    (default 60s 5)
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-60s}"
step="${2:-5}"
out="${OUT:-$(mktemp -d)}"
bin="$out/herald"
go build -o "$bin" ./cmd/herald
. scripts/dev-start.sh
start_dev "$bin" "$out"
mib() { awk -v k="$1:" '$1 == k { printf "%d", $2 / 1024 }' "/proc/$dev_pid/status"; }
heap() { curl -fsS http://127.0.0.1:28502/metrics | awk '$1 == "go_memstats_heap_inuse_bytes" { printf "%d", $2 / 1048576 }'; }
echo "idle: resident $(mib VmRSS) MiB, Go heap in use $(heap) MiB"
"$bin" bench --target=127.0.0.1:28500 --duration="$duration" --concurrency=16 --json >"$out/bench.json" 2>/dev/null &
bench=$!
start=$(date +%s)
while kill -0 $bench 2>/dev/null; do
  sleep "$step"
  kill -0 $bench 2>/dev/null || break
  echo "+$(($(date +%s) - start))s: resident $(mib VmRSS) MiB (anonymous $(mib RssAnon)), Go heap in use $(heap) MiB"
done
wait $bench || echo "bench reported a failure" >&2
echo "high-water mark $(mib VmHWM) MiB; $(jq -r '"\(.completed_per_s) completed orders/s"' "$out/bench.json")"
echo "logs and the bench's JSON in $out" >&2

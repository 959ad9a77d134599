#!/usr/bin/env bash
# The end-to-end figures of docs/performance.md, in one run on one machine:
# a fresh `herald dev` (embedded Kafka, registry, SQLite), then herald bench
# with a trivial gRPC method (grpc.health.v1.Health/Check) for the ceiling
# of the tool and gRPC here, then orders open-ended, at 1,000/s and at 50/s.
#
#   scripts/bench-dev.sh [DURATION] [CONCURRENCY]    (default 20s 16)
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-20s}"
concurrency="${2:-16}"
out="${OUT:-$(mktemp -d)}"
bin="$out/herald"
go build -o "$bin" ./cmd/herald
. scripts/dev-start.sh
start_dev "$bin" "$out"
run() {
  local name="$1"; shift
  "$bin" bench --target=127.0.0.1:28500 --duration="$duration" --concurrency="$concurrency" \
    --follow-timeout=2m --json "$@" >"$out/$name.json" 2>/dev/null || echo "$name: bench reported a failure" >&2
  jq -r --arg n "$name" '"\($n)\taccepted \(.accepted_per_s)/s\tcompleted \(.completed_per_s)/s\taccept p50/p99 \(.accept_latency.p50_ms)/\(.accept_latency.p99_ms) ms\taccept→final p50/p99/max \(.final_latency.p50_ms)/\(.final_latency.p99_ms)/\(.final_latency.max_ms) ms\tnot completed \(.not_completed)\tfollower read \(if .completed > 0 then (.follow_rows / .completed * 10 | round) / 10 else 0 end) orders per order"' "$out/$name.json"
}
run health --method=health
run open
run rate1000 --rate=1000
run rate50 --rate=50
jq -rn --slurpfile h "$out/health.json" --slurpfile o "$out/open.json" \
  '"completed orders/s ÷ health checks/s = \(($o[0].completed_per_s / $h[0].accepted_per_s * 1000 | round) / 1000)"'
# What an order costs the databases: statements (BEGIN, COMMIT and
# savepoints included) and shared transactions of every service, over the
# orders the three order runs completed.
orders=$(jq -s 'map(.completed) | add' "$out/open.json" "$out/rate1000.json" "$out/rate50.json")
curl -fsS http://127.0.0.1:28502/metrics >"$out/metrics.txt" || echo "metrics: not read" >&2
awk -v n="$orders" '
  /^herald_db_statements_total\{/ { s += $2; split($1, a, "\""); per[a[2]] = $2 }
  /^herald_db_transactions_total\{/ { t += $2 }
  END { if (n > 0) { printf "per completed order (%d): %.1f statements, %.2f transactions;", n, s / n, t / n
        for (k in per) printf " %s %.1f", k, per[k] / n; printf "\n" } }' "$out/metrics.txt"
echo "JSON summaries in $out" >&2

#!/usr/bin/env bash
# What a completed order costs each process in CPU on the real stack:
# orders and inventory as two `herald serve` processes on Kafka and
# PostgreSQL, a warm-up, then an open-ended herald bench with
# `top -b -d 10 -n 2` over ten seconds in its middle. Prints each
# process's share of a core and its milliseconds per completed order
# (PostgreSQL: all its backends; java: Kafka and the registry).
#
#   eval "$(scripts/infra/up.sh)"
#   scripts/bench-cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${HERALD_KAFKA_BROKERS:?run eval \"\$(scripts/infra/up.sh)\" first}" "${HERALD_SCHEMA_REGISTRY_URL:?}" "${HERALD_DATABASE_URL:?}"
out="${OUT:-$(mktemp -d)}"
bin="$out/herald"
go build -o "$bin" ./cmd/herald
export HERALD_NAMESPACE="cpu_$(date +%s)" HERALD_INSECURE_NO_AUTH=true
"$bin" schema register >/dev/null
. scripts/serve-split.sh
trap 'kill "${split_pids[@]}" 2>/dev/null; true' EXIT
serve_split "$bin" "$out"
orders=${split_pids[0]} inventory=${split_pids[1]}
bench() {
  "$bin" bench --target=127.0.0.1:28400 --inventory-target=127.0.0.1:28401 --duration="$1" --concurrency=16 --json
}
bench 10s >"$out/warm-up.json" 2>/dev/null || echo "warm-up: bench reported a failure" >&2
bench 25s >"$out/run.json" 2>/dev/null &
run=$!
sleep 8
top -b -d 10 -n 2 -w 400 >"$out/top.txt"
wait $run || echo "run: bench reported a failure" >&2
rate=$(jq '.completed_per_s' "$out/run.json")
# The second of top's two screens covers the ten seconds.
awk -v rate="$rate" -v orders="$orders" -v inventory="$inventory" '
  /^top -/ { screen++ }
  screen == 2 && $1 ~ /^[0-9]+$/ {
    if ($1 == orders) k = "herald orders"
    else if ($1 == inventory) k = "herald inventory"
    else if ($12 == "herald") k = "herald bench"
    else if ($2 == "postgres") k = "postgres"
    else if ($12 == "java") k = "java"
    else k = "other"
    cpu[k] += $9; total += $9
  }
  END {
    printf "completed %.0f orders/s; CPU (%% of a core) and ms per completed order:\n", rate
    for (k in cpu) if (cpu[k] >= 0.5) printf "  %-16s %5.1f%%  %.3f ms\n", k, cpu[k], cpu[k] * 10 / rate
    printf "  %-16s %5.1f%%  %.3f ms\n", "all", total, total * 10 / rate
  }' "$out/top.txt"
echo "JSON summaries and top in $out" >&2

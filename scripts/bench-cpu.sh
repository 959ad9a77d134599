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
#
# When the server has pg_stat_statements loaded (start the infrastructure
# with HERALD_INFRA_PG_STATEMENTS=1), it also prints what the run's
# statements cost PostgreSQL per completed order: calls and execution time,
# in all and for the ten costliest.
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
pg() { psql -X -q -At -v ON_ERROR_STOP=1 "$HERALD_DATABASE_URL" "$@"; }
snapshot=""
if pg -c 'SELECT 1 FROM pg_stat_statements LIMIT 1' >/dev/null 2>&1; then
  snapshot="herald_bench_cpu_$HERALD_NAMESPACE"
  pg -c "CREATE TABLE public.$snapshot AS SELECT queryid, toplevel, calls, total_exec_time FROM pg_stat_statements
         WHERE userid = (SELECT oid FROM pg_roles WHERE rolname = current_user)
           AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
fi
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
completed=$(jq '.completed // 0' "$out/run.json")
if [ -n "$snapshot" ] && [ "$completed" -gt 0 ]; then
  # Statements of the same text in the two services' schemas are counted
  # together; those of the warm-up still running count too.
  pg -F $'\t' -v n="$completed" >"$out/statements.txt" <<SQL
WITH d AS (
  SELECT regexp_replace(s.query, '\s+', ' ', 'g') AS query,
         sum(s.calls - coalesce(b.calls, 0)) AS calls,
         sum(s.total_exec_time - coalesce(b.total_exec_time, 0)) AS ms
  FROM pg_stat_statements s LEFT JOIN public.$snapshot b USING (queryid, toplevel)
  WHERE s.userid = (SELECT oid FROM pg_roles WHERE rolname = current_user)
    AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND s.query NOT LIKE '%$snapshot%'
  GROUP BY 1)
(SELECT round(sum(calls) / :n, 2), round((sum(ms) * 1000 / :n)::numeric), 'all statements' FROM d)
UNION ALL
(SELECT round(calls / :n, 2), round((ms * 1000 / :n)::numeric), left(query, 100) FROM d WHERE calls > 0 ORDER BY ms DESC LIMIT 10);
SQL
  echo "PostgreSQL per completed order (calls, execution µs, statement):"
  sed 's/^/  /' "$out/statements.txt"
fi
[ -z "$snapshot" ] || pg -c "DROP TABLE public.$snapshot"
echo "JSON summaries and top in $out" >&2

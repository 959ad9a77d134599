#!/usr/bin/env bash
# The ceilings of herald's parts, each measured alone on the stack that
# scripts/infra/up.sh started, to read beside scripts/bench-buses.sh's
# figures from the same sitting:
#
#   eval "$(scripts/infra/up.sh)"
#   scripts/bench-parts.sh [SECONDS] && scripts/bench-buses.sh 20s 16
#
# PostgreSQL: pgbench's simple-update mode (-N: per transaction an UPDATE
# of one account, a SELECT of it and an INSERT into the history, BEGIN and
# COMMIT) for SECONDS (default 15) at 1, 8 and 16 clients, against a
# scratch database created here as the `postgres` superuser (trusted from
# 127.0.0.1 by scripts/infra/postgres.sh) and dropped at the end.
#
# Kafka: the broker's own kafka-producer-perf-test class
# (org.apache.kafka.tools.ProducerPerformance, from the jars
# scripts/infra/kafka.sh downloaded, run through `kafka.sh tool`) on a
# scratch topic of 3 partitions, deleted at the end, records of
# $RECORD_SIZE bytes (default 300, about a herald event): a plain produce
# (acks=all, idempotent: the client's defaults), then transactional ones
# committing every 100 ms and every 10 ms. Each produces $RECORDS records
# (default 1,000,000) as fast as it can and is stopped after SECONDS+30 s
# if it has not finished; its latencies are then the producer's buffer
# filling up, not a record's trip. Last, the 10 ms transactions again at
# 1,000 records/s for SECONDS: the latency of a record when the broker is
# not saturated.
#
# Nothing shared is reset or restarted. Prints a header with the load
# average, then one Markdown table line per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-15}"
records="${RECORDS:-1000000}"
record_size="${RECORD_SIZE:-300}"
: "${HERALD_KAFKA_BROKERS:?run eval \"\$(scripts/infra/up.sh)\" first}" "${HERALD_DATABASE_URL:?}"
command -v pgbench >/dev/null || { echo "pgbench not found (Debian: postgresql-client)" >&2; exit 1; }

# Host and port of the shared PostgreSQL, from postgres://user:pass@host:port/db?...
hostport="${HERALD_DATABASE_URL#*://}"
hostport="${hostport#*@}"
hostport="${hostport%%/*}"
pghost="${hostport%:*}"
pgport="${hostport##*:}"
[ "$pgport" = "$hostport" ] && pgport=5432
pguser="${PGBENCH_USER:-postgres}"
db="herald_pgbench_$$"
topic="herald_bench_parts_$$"
kafka=(scripts/infra/kafka.sh tool)
log="$(mktemp -d)"
psql_admin() { psql -X -q -h "$pghost" -p "$pgport" -U "$pguser" -d postgres -v ON_ERROR_STOP=1 "$@"; }

cleanup() {
  psql_admin -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || echo "bench-parts: could not drop database $db" >&2
  "${kafka[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "$HERALD_KAFKA_BROKERS" \
    --delete --topic "$topic" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "# $(date -u '+%F %T') UTC, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| part | mode | clients | rate | latency |"
echo "|---|---|---|---|---|"

# PostgreSQL.
psql_admin -c "CREATE DATABASE $db" >/dev/null
pgbench -h "$pghost" -p "$pgport" -U "$pguser" -i -s 1 -q "$db" >"$log/pgbench-init.log" 2>&1 \
  || { cat "$log/pgbench-init.log" >&2; exit 1; }
for clients in 1 8 16; do
  threads=$((clients < 2 ? 1 : 2))
  pgbench -h "$pghost" -p "$pgport" -U "$pguser" -N -n -c "$clients" -j "$threads" -T "$seconds" \
    -r "$db" >"$log/pgbench-$clients.log" 2>&1 || { cat "$log/pgbench-$clients.log" >&2; exit 1; }
  tps="$(awk '/^tps = / {print $3; exit}' "$log/pgbench-$clients.log")"
  lat="$(awk '/^latency average = / {print $4; exit}' "$log/pgbench-$clients.log")"
  printf '| PostgreSQL | `pgbench -N` (simple-update), %ss | %d | %.0f tx/s | mean %s ms |\n' "$seconds" "$clients" "$tps" "$lat"
done

# Kafka.
"${kafka[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "$HERALD_KAFKA_BROKERS" \
  --create --topic "$topic" --partitions 3 --replication-factor 1 >/dev/null
produce() { # name label records throughput extra-args...
  local name="$1" label="$2" n="$3" throughput="$4"
  shift 4
  timeout "$((seconds + 30))" "${kafka[@]}" org.apache.kafka.tools.ProducerPerformance \
    --bootstrap-server "$HERALD_KAFKA_BROKERS" --topic "$topic" --num-records "$n" \
    --record-size "$record_size" --throughput "$throughput" --command-property acks=all "$@" \
    >"$log/kafka-$name.log" 2>&1 || { echo "bench-parts: kafka $name failed or timed out:" >&2; tail -n 5 "$log/kafka-$name.log" >&2; return 0; }
  # Summary line: "N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency, p50 ms 50th, p95 ms 95th, p99 ms 99th, ..."
  grep ' 50th' "$log/kafka-$name.log" | tail -n 1 | awk -F', ' -v mode="$label" -v size="$record_size" '{
    split($2, r, " "); split($5, p50, " "); split($7, p99, " ")
    printf "| Kafka | `ProducerPerformance` %s, %s B records | 1 producer | %.0f records/s | p50 / p99 %s / %s ms |\n", mode, size, r[1], p50[1], p99[1]
  }'
}
produce plain plain "$records" -1
produce txn100 "transactional, commit every 100 ms" "$records" -1 --transactional-id "$topic-100" --transaction-duration-ms 100
produce txn10 "transactional, commit every 10 ms" "$records" -1 --transactional-id "$topic-10" --transaction-duration-ms 10
produce txn10-rate "transactional, commit every 10 ms, at 1,000/s" "$((seconds * 1000))" 1000 \
  --transactional-id "$topic-10r" --transaction-duration-ms 10
echo "# logs in $log; load average $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# Quick end-to-end check of the services started by scripts/infra/up.sh:
#   Kafka metadata, topic create, produce/consume, a transactional produce,
#   SCRAM login (good and bad password), an Apicurio PROTOBUF registration
#   through the ccompat API, and a PostgreSQL query as herald.
# Prints one line per check; exits non-zero when any check fails.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVICE=smoke
# shellcheck source=lib.sh
. "$here/lib.sh"

BROKERS="${HERALD_KAFKA_BROKERS:-127.0.0.1:${HERALD_INFRA_KAFKA_PORT:-19092}}"
SASL_BROKERS="${HERALD_KAFKA_SASL_BROKERS:-127.0.0.1:${HERALD_INFRA_KAFKA_SASL_PORT:-19094}}"
REGISTRY="${HERALD_SCHEMA_REGISTRY_URL:-http://127.0.0.1:${HERALD_INFRA_APICURIO_PORT:-18081}/apis/ccompat/v7}"
DB_URL="${HERALD_DATABASE_URL:-postgres://herald:herald@127.0.0.1:${HERALD_INFRA_POSTGRES_PORT:-15432}/herald?sslmode=disable}"
SASL_CONF="$INFRA_DIR/kafka/conf/client-sasl.properties"
kt() { "$here/kafka.sh" tool "$@"; }

pass=0 fail=0
check() {
  local name="$1"
  shift
  if out="$("$@" 2>&1)"; then
    pass=$((pass + 1)); echo "ok   $name"
  else
    fail=$((fail + 1)); echo "FAIL $name"; printf '%s\n' "$out" | tail -n 5 | sed 's/^/     /'
  fi
}

topic="smoke-$(date +%s)-$$"
subject="$topic-value"
msg="hello-$RANDOM"
badconf="$(mktemp)"
trap 'rm -f "$badconf"' EXIT
sed 's/password="[^"]*"/password="wrong-password"/' "$SASL_CONF" >"$badconf"

metadata() { kcat -b "$BROKERS" -L -m 10 | grep -q 'broker 1 at'; }
produce() { echo "k:$msg" | kcat -b "$BROKERS" -P -t "$topic" -K: -m 10; }
consume() { kcat -b "$BROKERS" -C -t "$topic" -o beginning -e -q -m 10 | grep -qx "$msg"; }
transactional() {
  kt org.apache.kafka.tools.ProducerPerformance --topic "$topic" --num-records 100 --record-size 20 \
    --throughput -1 --transactional-id "$topic-tx" --transaction-duration-ms 100 --bootstrap-server "$BROKERS" >/dev/null
  local n
  n="$(kcat -b "$BROKERS" -C -t "$topic" -o beginning -e -q -X isolation.level=read_committed | wc -l)"
  [ "$n" -eq 101 ] || { echo "read_committed saw $n records, want 101"; return 1; }
}
sasl_ok() { kt org.apache.kafka.tools.TopicCommand --bootstrap-server "$SASL_BROKERS" --command-config "$SASL_CONF" --list; }
sasl_bad() { ! timeout 60 "$here/kafka.sh" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$SASL_BROKERS" --command-config "$badconf" --list; }
register() {
  local body='{"schemaType":"PROTOBUF","schema":"syntax = \"proto3\";\npackage smoke;\nmessage M { string a = 1; }\n"}'
  curl -sf -X POST -H 'Content-Type: application/vnd.schemaregistry.v1+json' --data "$body" \
    "$REGISTRY/subjects/$subject/versions" | grep '"id":'
}
sql() { [ "$(psql -X -At "$DB_URL" -c 'select 1')" = 1 ]; }

check "kafka metadata (kcat -L on $BROKERS)" metadata
check "create topic $topic" \
  kt org.apache.kafka.tools.TopicCommand --bootstrap-server "$BROKERS" --create --topic "$topic" --partitions 3 --replication-factor 1
check "produce with kcat" produce
check "consume with kcat" consume
check "transactional produce (100 records, read_committed)" transactional
check "SCRAM-SHA-256 login on $SASL_BROKERS (Java client)" sasl_ok
check "SCRAM-SHA-256 login with a wrong password is refused" sasl_bad
check "delete topic $topic" kt org.apache.kafka.tools.TopicCommand --bootstrap-server "$BROKERS" --delete --topic "$topic"
check "apicurio: register a PROTOBUF schema under $subject" register
check "apicurio: delete subject $subject" curl -sf -X DELETE "$REGISTRY/subjects/$subject"
check "postgres: select 1 as herald" sql

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]

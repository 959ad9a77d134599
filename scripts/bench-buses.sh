#!/usr/bin/env bash
# herald bench on each bus, one after the other, same machine, same run:
# orders and inventory run as one `herald serve` process (two with SPLIT=1) on Kafka, NATS
# JetStream and RabbitMQ in turn, with PostgreSQL and the registry from
# scripts/infra/up.sh, and `herald bench` drives CreateOrder against each.
#
#   eval "$(scripts/infra/up.sh)"
#   scripts/bench-buses.sh [DURATION] [CONCURRENCY]    (default 20s 16)
#   BUSES="kafka" scripts/bench-buses.sh                 (one bus only)
#   SPLIT=1 scripts/bench-buses.sh                       (orders and inventory as two processes)
#   SPLIT=1 INSTANCES=2 scripts/bench-buses.sh           (two processes of each, one database;
#                                                         the bench talks to the first of each)
#
# Per bus: 10 s at 50 orders/s (latency below saturation), 10 s at 1,000
# orders/s, then DURATION open-ended (throughput). Prints three lines per
# bus (the fixed rates with the saga's own latency from the server's
# timestamps beside accept→final) and leaves each bench's JSON in $OUT
# (default a temporary directory, printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-20s}"
concurrency="${2:-16}"
: "${HERALD_KAFKA_BROKERS:?run eval \"\$(scripts/infra/up.sh)\" first}" "${HERALD_NATS_URL:?}" "${HERALD_RABBITMQ_URL:?}"
: "${HERALD_SCHEMA_REGISTRY_URL:?}" "${HERALD_DATABASE_URL:?}"
out="${OUT:-$(mktemp -d)}"
bin="$out/herald"
go build -o "$bin" ./cmd/herald
grpc=127.0.0.1:28400
inventory_grpc=127.0.0.1:28401
pids=()
trap '[ "${#pids[@]}" -gt 0 ] && kill "${pids[@]}" 2>/dev/null; true' EXIT

instances="${INSTANCES:-1}"
if [ "$instances" != 1 ] && [ "${SPLIT:-0}" != 1 ]; then
  echo "INSTANCES needs SPLIT=1" >&2
  exit 2
fi

# serve NAME SERVICES ADDR starts one herald serve in the background; NAME
# is its instance id too.
serve() {
  HERALD_NAMESPACE="$ns" HERALD_INSECURE_NO_AUTH=true "$bin" serve --bus="$bus" --services="$2" \
    --grpc-addr="$3" --http-addr= --log-level=warn --instance-id="$1" 2>"$out/$bus-$1.log" &
  pids+=($!)
}

for bus in ${BUSES:-kafka nats rabbitmq}; do
  ns="bench_${bus}_$(date +%s)"
  HERALD_NAMESPACE="$ns" "$bin" schema register >/dev/null
  targets=(--target="$grpc")
  addrs=("$grpc")
  if [ "${SPLIT:-0}" = 1 ]; then
    serve orders orders "$grpc"
    serve inventory inventory "$inventory_grpc"
    targets+=(--inventory-target="$inventory_grpc")
    addrs+=("$inventory_grpc")
    for i in $(seq 2 "$instances"); do
      serve "orders-$i" orders "127.0.0.1:$((28400 + 2 * i))"
      serve "inventory-$i" inventory "127.0.0.1:$((28401 + 2 * i))"
      addrs+=("127.0.0.1:$((28400 + 2 * i))" "127.0.0.1:$((28401 + 2 * i))")
    done
  else
    serve orders-inventory orders,inventory "$grpc"
  fi
  for addr in "${addrs[@]}"; do
    for _ in $(seq 100); do
      grpcurl -plaintext "$addr" grpc.health.v1.Health/Check >/dev/null 2>&1 && break
      sleep 0.2
    done
  done
  # At 50 orders/s first (latency below saturation), at 1,000/s, then
  # open-ended.
  "$bin" bench "${targets[@]}" --duration=10s --rate=50 --concurrency="$concurrency" \
    --follow-timeout=2m --json >"$out/$bus-rate50.json" 2>/dev/null || echo "$bus: bench reported a failure (see $out/$bus-rate50.json)" >&2
  "$bin" bench "${targets[@]}" --duration=10s --rate=1000 --concurrency="$concurrency" \
    --follow-timeout=2m --json >"$out/$bus-rate1000.json" 2>/dev/null || echo "$bus: bench reported a failure (see $out/$bus-rate1000.json)" >&2
  "$bin" bench "${targets[@]}" --duration="$duration" --concurrency="$concurrency" \
    --follow-timeout=2m --json >"$out/$bus.json" 2>/dev/null || echo "$bus: bench reported a failure (see $out/$bus.json)" >&2
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true; pids=()
  for rate in 50 1000; do
    jq -r --arg bus "$bus" --arg rate "$rate" '"\($bus)\t\($rate)/s: accepted \(.accepted_per_s)/s\taccept→final p50/p99 \(.final_latency.p50_ms)/\(.final_latency.p99_ms) ms\tsaga p50/p99 \(.saga_latency.p50_ms)/\(.saga_latency.p99_ms) ms"' "$out/$bus-rate$rate.json"
  done
  jq -r --arg bus "$bus" '"\($bus)\topen-ended: accepted \(.accepted_per_s)/s\tcompleted \(.completed_per_s)/s\taccept p50/p99 \(.accept_latency.p50_ms)/\(.accept_latency.p99_ms) ms\taccept→final p50/p99 \(.final_latency.p50_ms)/\(.final_latency.p99_ms) ms\tnot completed \(.not_completed)"' "$out/$bus.json"
done
echo "JSON summaries and process logs in $out" >&2

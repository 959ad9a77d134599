#!/usr/bin/env bash
# Measures how herald rides out a Kafka restart (docs/reliability.md,
# "Broker restart").
#
#   scripts/broker-restart.sh restart   # kill -9 the broker under load, start it again
#   scripts/broker-restart.sh cold      # start the processes while Kafka is down, then Kafka
#
# It kills and starts the broker run by scripts/infra/kafka.sh with the
# HERALD_INFRA_* variables of the caller, so it refuses to run unless
# HERALD_INFRA_DIR and HERALD_INFRA_KAFKA_PORT are set: point them at a broker
# of your own, never at a shared one. PostgreSQL and the registry come from
# HERALD_DATABASE_URL and HERALD_SCHEMA_REGISTRY_URL; the run uses a fresh
# namespace in both.
#
# restart: orders and inventory run as two `herald serve` processes (with
# distinct --instance-id); `herald bench --rate RATE` places orders for
# ISSUE seconds; the broker is killed at KILL_AT and started DOWN seconds
# later. "broker back" is the first moment its port accepts a connection;
# "all final" is when bench saw the last accepted order reach a final state.
#
# With CRASH_FIRST=1, inventory is killed -9 and started again (same
# instance id) CRASH_LEAD seconds (default 2) before the broker is killed.
#
# cold: Kafka is killed, the two processes are started, Kafka is started
# COLD_DOWN seconds later, and one order is placed as soon as the broker's
# port answers (bench retries it while the process is not ready); the time
# reported is from "broker back" to that order being final. A process that
# exited while Kafka was down (a herald serve that does not wait for its
# dependencies) is started again when the broker is back.
#
# Variables: HERALD_BIN (default /tmp/herald-kr), SERVE_ARGS (more flags of
# serve, e.g. --log-level=debug), RATE (50), ISSUE (14),
# KILL_AT (10), DOWN (5), COLD_DOWN (10), OUT (a new directory under /tmp).
set -euo pipefail

mode="${1:-restart}"
: "${HERALD_INFRA_DIR:?set HERALD_INFRA_DIR (and HERALD_INFRA_KAFKA_*) to a broker of your own}"
: "${HERALD_INFRA_KAFKA_PORT:?set HERALD_INFRA_KAFKA_PORT to the port of your own broker}"
: "${HERALD_DATABASE_URL:?}" "${HERALD_SCHEMA_REGISTRY_URL:?}"
BIN="${HERALD_BIN:-/tmp/herald-kr}"
CRASH_LEAD="${CRASH_LEAD:-2}" RATE="${RATE:-50}" ISSUE="${ISSUE:-14}" KILL_AT="${KILL_AT:-10}" DOWN="${DOWN:-5}" COLD_DOWN="${COLD_DOWN:-10}"
OUT="${OUT:-$(mktemp -d /tmp/broker-restart.XXXXXX)}"
mkdir -p "$OUT"
KAFKA="$(dirname "${BASH_SOURCE[0]}")/infra/kafka.sh"
BROKER="127.0.0.1:$HERALD_INFRA_KAFKA_PORT"
NS="br$(date +%s)"
ORDERS_GRPC=127.0.0.1:28180 INVENTORY_GRPC=127.0.0.1:28181

now() { date +%s.%N; }
log() { echo "[$(date +%T.%3N)] $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/${BROKER%:*}/${BROKER#*:}") 2>/dev/null; }
wait_port() { until port_open; do sleep 0.05; done; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# A binary from before --instance-id existed runs without it (for the
# before/after comparison).
instance() { "$BIN" serve --help 2>&1 | grep -q -- -instance-id && echo "--instance-id=$1-1"; }

serve() { # name services grpc http
  HERALD_INSECURE_NO_AUTH=true "$BIN" serve --services="$2" $(instance "$1") --namespace="$NS" --kafka-brokers="$BROKER" \
    --grpc-addr="$3" --http-addr="$4" ${SERVE_ARGS:-} >"$OUT/$1.log" 2>&1 &
  pids+=("$!")
  log "started $1 (pid $!)"
}

"$KAFKA" status >/dev/null 2>&1 || "$KAFKA" start >/dev/null
wait_port
"$BIN" schema register --namespace="$NS" >/dev/null

case "$mode" in
restart)
  serve orders orders "$ORDERS_GRPC" 127.0.0.1:28182
  serve inventory inventory "$INVENTORY_GRPC" 127.0.0.1:28183
  inventory_pid=$!
  sleep 3
  "$BIN" bench --target="$ORDERS_GRPC" --inventory-target="$INVENTORY_GRPC" --rate="$RATE" \
    --duration="${ISSUE}s" --follow-timeout=180s --json >"$OUT/bench.json" 2>"$OUT/bench.err" &
  bench=$!
  if [ -n "${CRASH_FIRST:-}" ]; then
    # The case that once stalled stable transactional ids: a process
    # killed -9 and restarted, then the broker killed soon after.
    sleep "$((KILL_AT - CRASH_LEAD))"
    kill -9 "$inventory_pid"; log "inventory killed -9"
    mv "$OUT/inventory.log" "$OUT/inventory.1.log"
    serve inventory inventory "$INVENTORY_GRPC" 127.0.0.1:28183
    sleep "$CRASH_LEAD"
  else
    sleep "$KILL_AT"
  fi
  "$KAFKA" kill >/dev/null 2>&1
  killed=$(now); log "broker killed"
  sleep "$DOWN"
  "$KAFKA" start >/dev/null 2>"$OUT/kafka-start.err" &
  starter=$!
  wait_port
  back=$(now); log "broker back after $(awk "BEGIN{print $back - $killed}") s"
  wait "$bench" || true
  wait "$starter" || true
  ;;
cold)
  "$KAFKA" kill >/dev/null 2>&1
  serve orders orders "$ORDERS_GRPC" 127.0.0.1:28182
  orders_pid=$!
  serve inventory inventory "$INVENTORY_GRPC" 127.0.0.1:28183
  inventory_pid=$!
  sleep "$COLD_DOWN"
  exited=()
  for name in orders inventory; do
    pid_var="${name}_pid"
    if ! kill -0 "${!pid_var}" 2>/dev/null; then
      log "$name exited while Kafka was down: $(tail -n 1 "$OUT/$name.log")"
      exited+=("$name")
    fi
  done
  "$KAFKA" start >/dev/null 2>"$OUT/kafka-start.err" &
  starter=$!
  wait_port
  back=$(now); log "broker back"
  # A binary that does not wait for Kafka at start exited: start it again
  # now, the time to do so counted in the result.
  for name in "${exited[@]}"; do
    mv "$OUT/$name.log" "$OUT/$name.1.log"
    if [ "$name" = orders ]; then serve orders orders "$ORDERS_GRPC" 127.0.0.1:28182
    else serve inventory inventory "$INVENTORY_GRPC" 127.0.0.1:28183; fi
  done
  "$BIN" bench --target="$ORDERS_GRPC" --inventory-target="$INVENTORY_GRPC" --orders=1 --concurrency=1 \
    --retry-for=120s --follow-timeout=120s --json >"$OUT/bench.json" 2>"$OUT/bench.err" || true
  wait "$starter" || true
  ;;
*) echo "usage: $0 restart|cold" >&2; exit 2 ;;
esac

python3 - "$OUT/bench.json" "$back" <<'EOF'
import json, re, sys, datetime
s = json.load(open(sys.argv[1]))
back = float(sys.argv[2])
started = re.sub(r"(\.\d{6})\d+", r"\1", s["started"]).replace("Z", "+00:00")
start = datetime.datetime.fromisoformat(started).timestamp()
last_final = start + s.get("following_s", 0)
print(json.dumps({
    "accepted": s["accepted"], "not_accepted": s["not_accepted"], "completed": s["completed"],
    "not_completed": s["not_completed"], "by_status": s.get("by_status"),
    "broker_back_to_all_final_s": round(last_final - back, 2) if s["completed"] else None,
    "final_latency_p50_ms": s["final_latency"]["p50_ms"], "final_latency_max_ms": s["final_latency"]["max_ms"],
}))
EOF
log "logs in $OUT"

#!/usr/bin/env bash
# Runs the README's walkthrough blocks against a fresh `herald dev` on the
# default ports and checks what they print. Needs grpcurl, jq and curl.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in grpcurl jq curl; do
  command -v "$tool" >/dev/null || { echo "walkthrough: $tool is required" >&2; exit 1; }
done

work=$(mktemp -d)
go build -o "$work/herald" ./cmd/herald
"$work/herald" dev --data-dir "$work/data" >"$work/herald.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  if grpcurl -plaintext 127.0.0.1:8080 grpc.health.v1.Health/Check 2>/dev/null | grep -q SERVING; then break; fi
  kill -0 "$pid" 2>/dev/null || { cat "$work/herald.log"; echo "walkthrough: herald dev exited" >&2; exit 1; }
  sleep 0.2
done

# The fenced sh blocks between the walkthrough markers, in order.
awk '/<!-- walkthrough:start -->/{on=1} /<!-- walkthrough:end -->/{on=0}
     on && /^```sh$/{code=1; next} on && /^```$/{code=0; next} code' README.md >"$work/walkthrough.sh"
echo "--- running $(grep -c . "$work/walkthrough.sh") lines from README.md"
bash -euo pipefail "$work/walkthrough.sh" | tee "$work/out.txt"

fail=0
expect() {
  if ! grep -qE "$1" "$work/out.txt"; then echo "walkthrough: expected output matching: $1" >&2; fail=1; fi
}
expect '^order [0-9a-f-]{36}$'
expect '^ORDER_STATUS_CONFIRMED$'
expect '^APPLE stock 7$'
expect '^ORDER_STATUS_REJECTED INSUFFICIENT_STOCK: sku PEAR: requested 5, available 2$'
expect '^ORDER_STATUS_CANCELLED$'
expect '^APPLE stock 10$'
expect 'InvalidArgument'
expect 'items\[0\]\.quantity'
expect 'herald.orders.v1-value'
if command -v kcat >/dev/null; then
  expect 'topic "herald.orders.v1"'
  expect 'ce_type=herald.orders.v1.OrderCreated'
fi

kill -TERM "$pid"
if ! wait "$pid"; then echo "walkthrough: herald dev did not exit cleanly on SIGTERM" >&2; fail=1; fi
trap - EXIT
if [ "$fail" -ne 0 ]; then cat "$work/herald.log"; exit 1; fi
echo "walkthrough: all steps printed what the README promises"

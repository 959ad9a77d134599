#!/usr/bin/env bash
# Runs Confluent's own PROTOBUF compatibility cases against herald's embedded
# registry and fails unless every case agrees. The cases and their runner are
# Confluent's test data and live outside the project, in
# ../shared/conformance/confluent-protobuf/; without them the step is skipped.
#
#   scripts/registry-conformance.sh             # verdicts only
#   scripts/registry-conformance.sh --probes    # also print the REST-behaviour probes (not gated)
#
# HERALD_CONFORMANCE_RUNNER overrides the runner's path.
set -euo pipefail
cd "$(dirname "$0")/.."
runner=${HERALD_CONFORMANCE_RUNNER:-../shared/conformance/confluent-protobuf/run_conformance.py}
if [ ! -f "$runner" ]; then
  echo "registry conformance: $runner not found; skipped"
  exit 0
fi

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/herald" ./cmd/herald
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
"$work/herald" registry --registry-addr "127.0.0.1:$port" --log-level warn &
pid=$!
for _ in $(seq 1 100); do curl -sf "$url/subjects" >/dev/null && break; sleep 0.1; done

python3 "$runner" --url "$url" "$@" | tee "$work/out.txt"
last=$(grep -E '^AGREE [0-9]+ / [0-9]+$' "$work/out.txt" | tail -n 1 || true)
read -r _ agree _ total <<<"${last:-AGREE ? / ?}"
if [ -z "$last" ] || [ "$agree" != "$total" ]; then
  echo "registry conformance: ${last:-no AGREE line}; every case must agree with Confluent" >&2
  exit 1
fi
echo "registry conformance: all $total cases agree"

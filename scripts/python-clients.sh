#!/usr/bin/env bash
# Third-party clients against herald: confluent-kafka-python's protobuf
# serializer, deserializer and SchemaRegistryClient (tests/python), first
# against a fresh `herald dev` on ports of its own, then, when
# HERALD_SCHEMA_REGISTRY_URL names the real stack's Apicurio, the same
# registry-client checks there (fresh subjects; the registry is never reset).
# Installs the pinned packages from PyPI into .herald/python-venv. Extra
# arguments go to pytest (e.g. -k apicurio).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.herald/python-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/python/requirements.txt

# The contracts import buf/validate/validate.proto (docs/contracts.md).
go run ./tools/protodeps -out .herald/protodeps

work=$(mktemp -d)
go build -o "$work/herald" ./cmd/herald
grpc=127.0.0.1:18180 registry=127.0.0.1:18181 http=127.0.0.1:18182 kafka=127.0.0.1:18183
"$work/herald" dev --data-dir "$work/data" --grpc-addr "$grpc" --registry-addr "$registry" \
  --http-addr "$http" --kafka-addr "$kafka" >"$work/herald.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for _ in $(seq 1 150); do
  if curl -sf "http://$registry/subjects" | grep -q 'herald.orders.v1-value' && curl -sf "http://$http/healthz" >/dev/null; then break; fi
  kill -0 "$pid" 2>/dev/null || { cat "$work/herald.log"; echo "python-clients: herald dev exited" >&2; exit 1; }
  sleep 0.2
done

status=0
HERALD_TEST_REGISTRY_URL="http://$registry" HERALD_TEST_KAFKA="$kafka" HERALD_TEST_GRPC="$grpc" \
  "$venv/bin/python" -m pytest -p no:cacheprovider -v tests/python "$@" || status=$?
if [ "$status" -ne 0 ]; then tail -50 "$work/herald.log"; fi
exit "$status"

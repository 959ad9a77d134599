#!/usr/bin/env bash
# The registry gate of CI: seeds a schema registry with the event schemas of
# the previous commit (registered by that commit's own herald binary), then
# runs this tree's `herald schema check` against it.
#
#   scripts/schema-gate.sh              # against a fresh embedded registry
#   scripts/schema-gate.sh URL          # against the Confluent-API registry at URL
#
# HERALD_GATE_LEVEL sets the level (default BACKWARD): Apicurio defaults to
# NONE, so the level is always given explicitly.
set -euo pipefail
cd "$(dirname "$0")/.."
url=${1:-}
level=${HERALD_GATE_LEVEL:-BACKWARD}

ref=$(scripts/breaking-base.sh)
if [ -z "$ref" ]; then
  echo "schema gate: no previous commit to seed the registry from; skipped"
  exit 0
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  git worktree remove --force "$work/prev" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

git worktree add --detach --quiet "$work/prev" "$ref"
(cd "$work/prev" && go build -o "$work/herald-prev" ./cmd/herald)
go build -o "$work/herald" ./cmd/herald
if ! "$work/herald-prev" help 2>/dev/null | grep -q "schema register"; then
  echo "schema gate: $ref has no 'herald schema register'; skipped"
  exit 0
fi

ns_flag=()
if [ -z "$url" ]; then
  port=18091
  "$work/herald" registry --registry-addr "127.0.0.1:$port" --log-level warn &
  pids+=($!)
  url="http://127.0.0.1:$port"
  for _ in $(seq 1 50); do curl -sf "$url/subjects" >/dev/null && break; sleep 0.1; done
else
  # A shared registry: keep this run's subjects apart.
  ns_flag=(--namespace "gate_$(git rev-parse --short=8 HEAD)_$RANDOM")
fi

echo "schema gate: registry $url seeded from $ref ($(git rev-parse --short "$ref")), level $level"
"$work/herald-prev" schema register --schema-registry-url "$url" "${ns_flag[@]}" >/dev/null
"$work/herald" schema check --schema-registry-url "$url" --level "$level" "${ns_flag[@]}"

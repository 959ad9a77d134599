#!/usr/bin/env bash
# Start Kafka, Apicurio Registry, PostgreSQL, NATS (JetStream) and RabbitMQ as local
# processes and print the environment for herald on stdout:
#
#   eval "$(scripts/infra/up.sh)"
#
# Downloads and package installs run one after the other (apt and Maven do
# not like concurrent runs); the services then start in parallel.
# Progress goes to stderr. Stop everything with scripts/infra/down.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVICE=up
# shellcheck source=lib.sh
. "$here/lib.sh"

services=(kafka apicurio postgres nats rabbitmq)
begin=$SECONDS

for s in "${services[@]}"; do
  "$here/$s.sh" fetch
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
declare -A pids
for s in "${services[@]}"; do
  "$here/$s.sh" start >"$tmp/$s.env" &
  pids[$s]=$!
done
failed=()
for s in "${services[@]}"; do
  wait "${pids[$s]}" || failed+=("$s")
done
if [ ${#failed[@]} -gt 0 ]; then
  die "failed to start: ${failed[*]} (logs in $LOG_DIR; the others are left running, stop them with $here/down.sh)"
fi

log "all services up in $((SECONDS - begin))s; logs in $LOG_DIR"
for s in "${services[@]}"; do cat "$tmp/$s.env"; done

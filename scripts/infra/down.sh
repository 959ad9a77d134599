#!/usr/bin/env bash
# Stop the services started by scripts/infra/up.sh.
#
#   scripts/infra/down.sh           stop; Kafka, PostgreSQL, NATS and RabbitMQ data are kept
#   scripts/infra/down.sh --reset   stop and delete their data
#
# Downloads stay cached either way (delete $HERALD_INFRA_DIR to drop them).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVICE=down
# shellcheck source=lib.sh
. "$here/lib.sh"

action=stop
case "${1:-}" in
  "") ;;
  --reset) action=reset ;;
  *) echo "usage: $0 [--reset]" >&2; exit 2 ;;
esac

rc=0
declare -A pids
for s in kafka apicurio postgres nats rabbitmq; do
  "$here/$s.sh" "$action" &
  pids[$s]=$!
done
for s in kafka apicurio postgres nats rabbitmq; do
  wait "${pids[$s]}" || { log "$s: $action failed"; rc=1; }
done
exit "$rc"

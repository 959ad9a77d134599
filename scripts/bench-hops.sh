#!/usr/bin/env bash
# Where an order waits on the real stack, hop by hop: orders and inventory
# as two `herald serve` processes on Kafka and PostgreSQL, herald bench at
# a fixed rate, then every committed record of the run read back with kcat
# and each hop timed from the events' ce_time (when a handler made the
# event) and the records' timestamps (when the client produced them).
# Ends with the broker's own floor for one transactional hop
# (tools/kafkafloor) in the same sitting.
#
#   eval "$(scripts/infra/up.sh)"
#   scripts/bench-hops.sh [DURATION] [RATE]    (default 20s 50)
#
# A warm-up run at the same rate comes first and is left out: the first
# run after the stack starts is several times slower (the JVMs warming up).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-20s}"
rate="${2:-50}"
: "${HERALD_KAFKA_BROKERS:?run eval \"\$(scripts/infra/up.sh)\" first}" "${HERALD_SCHEMA_REGISTRY_URL:?}" "${HERALD_DATABASE_URL:?}"
command -v kcat >/dev/null || { echo "bench-hops: kcat is needed (apt-get install kcat)" >&2; exit 1; }
out="${OUT:-$(mktemp -d)}"
bin="$out/herald"
go build -o "$bin" ./cmd/herald
ns="hops_$(date +%s)"
export HERALD_NAMESPACE="$ns" HERALD_INSECURE_NO_AUTH=true
"$bin" schema register >/dev/null
. scripts/serve-split.sh
trap 'kill "${split_pids[@]}" 2>/dev/null; true' EXIT
serve_split "$bin" "$out"
bench() {
  "$bin" bench --target=127.0.0.1:28400 --inventory-target=127.0.0.1:28401 --duration="$duration" --rate="$rate" \
    --concurrency=16 --follow-timeout=1m --json >"$out/$1.json" 2>/dev/null || echo "$1: bench reported a failure" >&2
}
bench warm-up
from_ms=$(date +%s%3N)
bench run
jq -r '"herald bench: accepted \(.accepted_per_s)/s, accept→final p50/p99 \(.final_latency.p50_ms)/\(.final_latency.p99_ms) ms, saga p50/p99 \(.saga_latency.p50_ms)/\(.saga_latency.p99_ms) ms"' "$out/run.json"
kill "${split_pids[@]}"; wait "${split_pids[@]}" 2>/dev/null || true; split_pids=()
for topic in "$ns.herald.orders.v1" "$ns.herald.inventory.v1"; do
  kcat -C -b "$HERALD_KAFKA_BROKERS" -t "$topic" -X isolation.level=read_committed -o beginning -e -q \
    -f '%T\t%k\t%h\n'
done >"$out/records.tsv"
python3 - "$from_ms" "$out/records.tsv" <<'PY'
import sys, datetime
from_ms, path = int(sys.argv[1]), sys.argv[2]
events = {}  # (order id, event type) -> (ce_time ms, record timestamp ms)
for line in open(path):
    parts = line.rstrip('\n').split('\t')
    if len(parts) != 3:
        continue
    ts, key, headers = int(parts[0]), parts[1], parts[2]
    h = dict(kv.split('=', 1) for kv in headers.split(',') if '=' in kv)
    typ, at = h.get('ce_type', '').rsplit('.', 1)[-1], h.get('ce_time')
    if not typ or not at:
        continue
    # RFC 3339 with nanoseconds: keep microseconds for fromisoformat.
    main, _, rest = at.replace('Z', '+00:00').partition('.')
    if rest:
        i = next(k for k, c in enumerate(rest) if not c.isdigit())
        main += '.' + rest[:i][:6].ljust(6, '0') + rest[i:]
    events[(key, typ)] = (datetime.datetime.fromisoformat(main).timestamp() * 1000, ts)
hops = [
    ('order accepted → relay produces OrderCreated', lambda c, d, f: c[1] - c[0]),
    ('→ inventory has deducted (relay commit, fetch, deduct)', lambda c, d, f: d[0] - c[1]),
    ('→ inventory produces InventoryDeducted', lambda c, d, f: d[1] - d[0]),
    ('→ orders has confirmed (inventory commit, fetch, confirm)', lambda c, d, f: f[0] - d[1]),
    ('OrderCreated → OrderConfirmed', lambda c, d, f: f[0] - c[0]),
]
samples = [[] for _ in hops]
for (key, typ), created in events.items():
    if typ != 'OrderCreated' or created[0] < from_ms:
        continue
    deducted, confirmed = events.get((key, 'InventoryDeducted')), events.get((key, 'OrderConfirmed'))
    if deducted and confirmed:
        for i, (_, f) in enumerate(hops):
            samples[i].append(f(created, deducted, confirmed))
def pct(xs, p):
    return sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]
print(f"{len(samples[0])} confirmed orders of the run, ms:")
for (name, _), xs in zip(hops, samples):
    if xs:
        print(f"  {name}: p50 {pct(xs, .5):.1f}, p90 {pct(xs, .9):.1f}, p99 {pct(xs, .99):.1f}")
PY
go run ./tools/kafkafloor -brokers "$HERALD_KAFKA_BROKERS"
echo "JSON summaries, logs and records in $out" >&2

# Sourced by the bench scripts: serve_split BIN OUT starts orders and
# inventory as two `herald serve` processes (gRPC on 127.0.0.1:28400 and
# :28401, logs in OUT), adds their pids to the array split_pids and waits
# until both answer health checks. The caller sets HERALD_NAMESPACE and
# the infrastructure's environment, and kills "${split_pids[@]}".
split_pids=()
serve_split() {
  local bin="$1" out="$2" addr
  "$bin" serve --services=orders --grpc-addr=127.0.0.1:28400 --http-addr= --log-level=warn 2>"$out/orders.log" &
  split_pids+=($!)
  "$bin" serve --services=inventory --grpc-addr=127.0.0.1:28401 --http-addr= --log-level=warn 2>"$out/inventory.log" &
  split_pids+=($!)
  for addr in 127.0.0.1:28400 127.0.0.1:28401; do
    for _ in $(seq 100); do
      grpcurl -plaintext "$addr" grpc.health.v1.Health/Check >/dev/null 2>&1 && break
      sleep 0.2
    done
  done
}

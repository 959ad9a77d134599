# Sourced by the bench scripts: start_dev BIN OUT starts `herald dev` with
# its data and log in OUT (gRPC on 127.0.0.1:28500, admin HTTP on :28502,
# Kafka on :28509, registry on :28501), sets dev_pid, kills it when the
# caller's shell exits, and waits until it answers health checks. It exits
# the caller when herald dev does not start.
start_dev() {
  local bin="$1" out="$2"
  "$bin" dev --data-dir="$out/data" --grpc-addr=127.0.0.1:28500 --http-addr=127.0.0.1:28502 \
    --kafka-addr=127.0.0.1:28509 --registry-addr=127.0.0.1:28501 --log-level=warn 2>"$out/dev.log" &
  dev_pid=$!
  trap 'kill $dev_pid 2>/dev/null; wait $dev_pid 2>/dev/null; true' EXIT
  for _ in $(seq 150); do
    grpcurl -plaintext 127.0.0.1:28500 grpc.health.v1.Health/Check >/dev/null 2>&1 && break
    kill -0 $dev_pid 2>/dev/null || break
    sleep 0.2
  done
  # Another process on these ports would answer the health check instead.
  if ! kill -0 $dev_pid 2>/dev/null; then
    echo "herald dev did not start (ports 28500-28509 taken?); see $out/dev.log" >&2
    cat "$out/dev.log" >&2
    exit 1
  fi
}

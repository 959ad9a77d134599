# syntax=docker/dockerfile:1
#
# The herald image: one binary for `herald dev`, `herald serve` and
# `herald schema register`. compose/compose.yaml builds it once and runs every
# herald container from it.
#
#   docker build -t herald:local .
#
# cgo is required: the Confluent serde links librdkafka through cgo, so the
# binary is built with CGO_ENABLED=1 against glibc and runs on a glibc
# (Debian) base, not on Alpine or distroless/static.

FROM golang:1.26-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=1

# Dependencies first, in their own layer: it is rebuilt only when go.mod or
# go.sum change, not on every source edit.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
# -buildvcs=false: the build context may carry a .git that is a worktree link
# or owned by another user; stamping VCS data would then fail the build.
RUN --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -buildvcs=false -o /out/herald ./cmd/herald


FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A fixed, unprivileged uid/gid so volume ownership and Kubernetes
# runAsNonRoot checks behave the same everywhere. The home directory is the
# working directory, so `herald dev` can keep its default --data-dir there.
RUN groupadd --system --gid 10001 herald \
 && useradd --system --uid 10001 --gid herald --home-dir /var/lib/herald \
      --create-home --shell /usr/sbin/nologin herald

COPY --from=build /out/herald /usr/local/bin/herald

USER 10001:10001
WORKDIR /var/lib/herald

# 8080: gRPC (HERALD_GRPC_ADDR); 8082: HTTP metrics (HERALD_HTTP_ADDR).
EXPOSE 8080 8082

ENTRYPOINT ["herald"]
CMD ["help"]

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
# HERALD_VERSION is the release the binary reports (service.version of its
# traces): docker build --build-arg HERALD_VERSION=$(git describe --tags).
ARG HERALD_VERSION=""
RUN --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -buildvcs=false -ldflags "-X main.version=${HERALD_VERSION}" -o /out/herald ./cmd/herald


FROM debian:bookworm-slim
# Pinned (hadolint DL3008), so that a rebuild installs what was tested. When
# Debian supersedes this version the build fails at this step: take the new
# one from `apt-cache policy ca-certificates` in a debian:bookworm-slim
# container (bookworm-security carries the updates).
ARG CA_CERTIFICATES_VERSION=20250419~deb12u2
RUN apt-get update \
 && apt-get install -y --no-install-recommends "ca-certificates=${CA_CERTIFICATES_VERSION}" \
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
# Outside a container herald binds 127.0.0.1 by default; in the image it
# listens on every interface, so that `docker run -p` reaches it:
#
#   docker run --rm -p 127.0.0.1:8080:8080 -p 127.0.0.1:8082:8082 herald:local dev
#
# (The embedded Kafka and registry of `herald dev` stay on the container's
# loopback; set HERALD_KAFKA_ADDR / HERALD_REGISTRY_ADDR to change that.)
ENV HERALD_GRPC_ADDR=0.0.0.0:8080 \
    HERALD_HTTP_ADDR=0.0.0.0:8082
EXPOSE 8080 8082

ENTRYPOINT ["herald"]
CMD ["help"]

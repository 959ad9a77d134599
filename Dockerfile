# Builds the herald binary. cgo is needed by the Confluent serde, so the
# runtime image is glibc-based.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -o /out/herald ./cmd/herald

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/herald herald && mkdir -p /var/lib/herald && chown herald /var/lib/herald
COPY --from=build /out/herald /usr/local/bin/herald
USER herald
WORKDIR /var/lib/herald
ENTRYPOINT ["herald"]

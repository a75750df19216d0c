# syntax=docker/dockerfile:1
# The telephone CLI in a FROM scratch image: a static binary, CA roots compiled in
# (golang.org/x/crypto/x509roots/fallback/bundle, used when the configuration dials TLS and the
# system has no roots: cmd/telephone/roots.go), a non-root user, nothing else.
#
#   docker build --build-arg VERSION=$(git describe --tags) --build-arg COMMIT=$(git rev-parse HEAD) -t telephone .
#   docker run --rm -e PLUGBOARD_URL=wss://... -e TELEPHONE_TOKEN=... -e BACKEND_URL=http://backend:8080 telephone
#
# CI cannot run Docker; cmd/telephone/container_test.go builds the binary with this file's
# `go build` line and runs it chrooted in an empty directory instead (version, demo, and wss://
# with a private CA).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/telephone ./cmd/telephone
# The token store's directory, owned by the runtime user (scratch has no shell to create it).
RUN mkdir -p /out/data

FROM scratch
COPY --from=build /out/telephone /telephone
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
# Operations endpoints when OPS_ADDR=:8081 (or HEALTH_CHECK_PORT=8081) is set.
EXPOSE 8081
ENTRYPOINT ["/telephone"]
CMD ["run"]

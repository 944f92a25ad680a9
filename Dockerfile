# syntax=docker/dockerfile:1
# kong-metrics-sidecar and kong-metrics-injector, static, in one distroless
# non-root image. Build it with `make image` (docker or podman), which
# passes VERSION, REVISION, BRANCH, BUILD_USER and BUILD_DATE. `make build`
# uses the same go build flags; version/build_test.go checks that they agree.

# The builder runs on the build machine's platform and cross-compiles, so a
# multi-platform build (--platform linux/amd64,linux/arm64) needs no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
# Modules first: this layer stays cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
ARG BRANCH=unknown
ARG BUILD_USER=unknown
ARG BUILD_DATE=unknown
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${VERSION} -X github.com/prometheus/common/version.Revision=${REVISION} -X github.com/prometheus/common/version.Branch=${BRANCH} -X github.com/prometheus/common/version.BuildUser=${BUILD_USER} -X github.com/prometheus/common/version.BuildDate=${BUILD_DATE}" \
      -o /out/ ./cmd/kong-metrics-sidecar ./cmd/kong-metrics-injector

# distroless static: CA certificates, tzdata and /etc/passwd with nonroot
# (uid 65532); no shell, no package manager. Both binaries are static, so
# nothing else is needed at run time.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="kong-metrics-sidecar" \
      org.opencontainers.image.description="Kong metrics sidecar and its injector: Kong's latency per Kubernetes Service, for autoscaling" \
      org.opencontainers.image.source="https://github.com/kong-metrics-sidecar/kong-metrics-sidecar" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/kong-metrics-sidecar /out/kong-metrics-injector /usr/local/bin/
USER 65532:65532
# The sidecar's port; the injector (command /usr/local/bin/kong-metrics-injector)
# listens on 9443 (webhook) and 9090 (metrics).
EXPOSE 9542
ENTRYPOINT ["/usr/local/bin/kong-metrics-sidecar"]

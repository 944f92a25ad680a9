# syntax=docker/dockerfile:1
# Both binaries, static, in a distroless non-root image. `make build` uses
# the same flags.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/kong-metrics-sidecar/kong-metrics-sidecar/version.Version=${VERSION} -X github.com/kong-metrics-sidecar/kong-metrics-sidecar/version.Revision=${REVISION}" \
      -o /out/ ./cmd/...

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
EXPOSE 9542
ENTRYPOINT ["/usr/local/bin/kong-metrics-sidecar"]

# One Makefile; CI calls its targets exactly as they are.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
PKG      := github.com/kong-metrics-sidecar/kong-metrics-sidecar
# The same flags as the Dockerfile: static, reproducible, stamped.
LDFLAGS  := -s -w -X $(PKG)/version.Version=$(VERSION) -X $(PKG)/version.Revision=$(REVISION)
BUILD    := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
FUZZTIME ?= 10s

.PHONY: all build demo test test-unit fuzz-short fuzz soak vet tidy-check deps bench clean

all: build

build:
	$(BUILD) -o bin/ ./cmd/... ./integration/cmd/...

# The main job on a built-in default: Kong simulator + sidecar + the
# tutorial's traffic, printing the enriched series and the mean latency.
demo: build
	bin/demo -bin bin

# Everything: vet, tidy check, every test under -race (the real-Prometheus
# test included) and a short fuzz run of each fuzz target.
test: deps vet tidy-check test-unit fuzz-short test-manifests e2e

deps:
	bash scripts/install-deps.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }

# The main module and the two test modules that keep heavy dependencies
# out of it (they use the main module through replace, so a change here
# can leave them untidy).
TIDY_MODULES := . manifests/test integration/e2e

tidy-check:
	@set -e; for m in $(TIDY_MODULES); do \
		cp $$m/go.mod /tmp/kms-go.mod.bak; cp $$m/go.sum /tmp/kms-go.sum.bak; \
		(cd $$m && $(GO) mod tidy); \
		if ! git diff --quiet -- $$m/go.mod $$m/go.sum; then \
			git diff -- $$m/go.mod $$m/go.sum; \
			cp /tmp/kms-go.mod.bak $$m/go.mod; cp /tmp/kms-go.sum.bak $$m/go.sum; \
			echo "$$m: go.mod is not tidy"; exit 1; \
		fi; \
	done

# One package at a time: several tests check latencies (config reload
# within 2 s, the tutorial's 100 ms through a real Prometheus) that two
# race-instrumented packages competing for 2 cores could skew.
test-unit:
	$(GO) test -race -count=1 -p 1 -timeout 30m ./...

# Short runs of every fuzz target (go test takes one -fuzz target at a time).
fuzz-short:
	@set -e; for t in $$($(GO) run ./scripts/fuzztargets); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

fuzz:
	$(MAKE) fuzz-short FUZZTIME=5m

# The soak test for ten minutes (make test runs it for 60 s).
soak:
	SOAK_DURATION=10m $(GO) test -race -count=1 -timeout 30m -run TestSoak -v ./integration

# Every benchmark, each beside its baselines (the peer design, a bare scan,
# a plain GET) in the same run, then the load test of the sidecar as a
# process (10,000-route page); bin/bench-report.md sums up MB/s, ratios,
# allocations and memory, as docs/performance.md quotes them.
bench:
	@mkdir -p bin
	$(GO) test -run '^$$' -bench . -benchmem ./... > bin/bench.txt; status=$$?; cat bin/bench.txt; exit $$status
	$(GO) run ./integration/loadtest/cmd/benchreport < bin/bench.txt > bin/bench-report.md
	$(GO) run ./integration/loadtest/cmd/loadtest -routes 10000 >> bin/bench-report.md
	@cat bin/bench-report.md

clean:
	rm -rf bin

.PHONY: test-manifests image

# The Kubernetes manifests: kustomize build of every kustomization under
# manifests/, strict decoding into the Go types, the tutorial's text. A
# module of its own (manifests/test), so that kustomize, prometheus-operator
# and cert-manager stay out of go.mod.
test-manifests:
	cd manifests/test && $(GO) test -count=1 ./...

# The image (both binaries), with docker or podman, whichever has a working
# engine. Set IMAGE to change the name; VERSION and REVISION are stamped.
IMAGE ?= ghcr.io/kong-metrics-sidecar/kong-metrics-sidecar:$(VERSION)

image:
	@engine=""; tried=""; \
	for e in docker podman; do \
		if ! command -v $$e >/dev/null 2>&1; then tried="$$tried\n  $$e: not installed"; continue; fi; \
		if err=$$($$e info 2>&1 >/dev/null); then engine=$$e; break; fi; \
		tried="$$tried\n  $$e: installed, but '$$e info' fails: $$(printf '%s' "$$err" | tail -n 1)"; \
	done; \
	if [ -z "$$engine" ]; then \
		printf 'make image: no container engine that can build here:%b\n' "$$tried" >&2; \
		printf 'Start the Docker daemon (or install podman) and run make image again.\n' >&2; \
		exit 1; \
	fi; \
	echo "make image: building $(IMAGE) with $$engine"; \
	$$engine build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE) .

# The end-to-end test on a real control plane (integration/e2e/README.md):
# builds the third-party servers into a cache on first use, then runs Kong's
# autoscaling tutorial against them.
.PHONY: e2e
e2e:
	bins="$$(bash scripts/build-e2e-bins.sh)" && set -a && eval "$$bins" && set +a && \
		cd integration/e2e && $(GO) test -count=1 -v -timeout 15m ./...

# One Makefile; CI calls its targets exactly as they are.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BRANCH   ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
# Not user@host as promu stamps it: a build stays the same wherever it runs.
BUILD_USER ?= unknown
# The commit's date (UTC), not the clock's, so that a rebuild is the same.
BUILD_DATE ?= $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d-%H:%M:%S 2>/dev/null || echo unknown)
# The version variables as the Prometheus projects stamp them; -version
# prints them and *_build_info carries them.
VERSION_PKG := github.com/prometheus/common/version
# The flags of every build, the release's too (release-bins): static,
# reproducible, stamped.
LDFLAGS  := -s -w -X $(VERSION_PKG).Version=$(VERSION) -X $(VERSION_PKG).Revision=$(REVISION) -X $(VERSION_PKG).Branch=$(BRANCH) -X $(VERSION_PKG).BuildUser=$(BUILD_USER) -X $(VERSION_PKG).BuildDate=$(BUILD_DATE)
BUILD    := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
FUZZTIME ?= 10s

# The modules of the repository: the main one, the three test modules that
# keep heavy dependencies out of it, and those that build third-party
# servers for the tests (scripts/build-test-bins.sh).
OWN_MODULES := . manifests/test charts/test integration/e2e release
BIN_MODULES := integration/e2e/bins/etcd integration/e2e/bins/kubernetes integration/e2e/bins/prometheus integration/e2e/bins/prometheus-operator integration/e2e/bins/keda

# The test tiers (CONTRIBUTING.md). go test ./... runs the fast tier: no
# third-party server built or started, no soak. The tests that run real
# servers (integration/: Prometheus, the programs as processes, the soak;
# integration/loadtest) carry the build tag TEST_TAGS; test-unit runs both
# tiers, and vet, lint and fuzz-short read the tagged files too.
TEST_TAGS := integration

# Where the project caches what it builds for its tests.
CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kong-metrics-sidecar

.PHONY: all build demo test check fmt vet lint lint-bins tidy-check test-unit test-short test-integration \
	fuzz-short fuzz soak bench clean bins prometheus-bin test-manifests test-chart e2e dashboard-png \
	release-bins release release-notes image-bins test-release actionlint

all: build

build:
	$(BUILD) -o bin/ ./cmd/... ./integration/cmd/...

# The main job on a built-in default: Kong simulator + sidecar + the
# tutorial's traffic, printing Kong's series beside the sidecar's, the
# series dropped by reason and what the tutorial's HPA would read.
demo: build
	bin/demo -bin bin

# Every test: format, vet, lint and tidiness of every module, every test of
# the main module under -race (both tiers: the real-Prometheus tests
# included, packages in parallel), a short fuzz run of each fuzz target, the manifests, and
# the end-to-end test. Each target names what it needs, so make -j test
# builds the test binaries before the tests that run them.
test: fmt vet lint lint-bins tidy-check actionlint test-unit fuzz-short test-manifests test-chart test-release e2e

# A contributor's inner loop: format, vet, lint, tidiness and the fast tier
# (go test ./...), without the real servers (no Prometheus, no control
# plane to build).
check: fmt vet lint tidy-check test-short

fmt:
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }

# go vet in every module, the tagged tier's files included. The third-party modules are vetted with the flags
# scripts/build-test-bins.sh builds them with, so that vet reuses the
# compiled dependencies instead of compiling Kubernetes a second time.
vet:
	@set -e; for m in $(OWN_MODULES); do echo "go vet: $$m"; (cd $$m && $(GO) vet -tags $(TEST_TAGS) ./...); done

BIN_ENV := CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false -trimpath"
BIN_TAGS := remove_all_sd

# golangci-lint (.golangci.yml), built once into the cache from the module
# proxy at the version pinned here.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(CACHE)/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint

$(GOLANGCI_LINT):
	GOBIN=$(dir $@) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

lint: $(GOLANGCI_LINT)
	@set -e; for m in $(OWN_MODULES); do echo "golangci-lint: $$m"; (cd $$m && $(GOLANGCI_LINT) run --build-tags $(TEST_TAGS) --config $(CURDIR)/.golangci.yml ./...); done

# The third-party modules hold a main.go (etcd) or a tools.go that only pins
# the commands to build (a //go:build tools file, which go vet cannot load:
# it imports programs). Those with code are vetted and linted after the
# servers are built, with the same flags and tags, so that the compiled
# dependencies are shared; tidy-check covers all three.
lint-bins: $(GOLANGCI_LINT) bins
	@set -e; for m in $(BIN_MODULES); do \
		if [ -z "$$(cd $$m && $(BIN_ENV) $(GO) list -tags $(BIN_TAGS) ./... 2>/dev/null)" ]; then echo "$$m: a tools.go pin, no code to vet"; continue; fi; \
		echo "go vet and golangci-lint: $$m"; \
		(cd $$m && $(BIN_ENV) $(GO) vet -tags $(BIN_TAGS) ./... && \
		 $(BIN_ENV) $(GOLANGCI_LINT) run --build-tags $(BIN_TAGS) --config $(CURDIR)/.golangci.yml ./...); done

# go mod tidy -diff changes nothing and fails when a module is not tidy
# (the test modules use the main module through replace, so a change here
# can leave them untidy).
tidy-check:
	@set -e; for m in $(OWN_MODULES) $(BIN_MODULES); do (cd $$m && $(GO) mod tidy -diff) || { echo "$$m: go.mod is not tidy; run go mod tidy there"; exit 1; }; done

# The third-party servers the tests run, built from their Go modules into
# the cache on first use (scripts/build-test-bins.sh; nothing after that).
# bin/*.env hold their paths; the test targets read them.
bins:
	@mkdir -p bin
	bash scripts/build-test-bins.sh > bin/test-bins.env.tmp && mv bin/test-bins.env.tmp bin/test-bins.env

prometheus-bin:
	@mkdir -p bin
	bash scripts/build-test-bins.sh prometheus > bin/prometheus.env.tmp && mv bin/prometheus.env.tmp bin/prometheus.env

# with-bins ENVFILE: the shell prefix that exports the paths in ENVFILE, and
# PROMETHEUS_BIN from them unless it is set already.
with-bins = set -a && . ./$(1) && set +a && export PROMETHEUS_BIN="$${PROMETHEUS_BIN:-$$E2E_PROMETHEUS_BIN}" &&

# Every test of the main module, both tiers, packages in parallel: the
# real-Prometheus tests included.
test-unit: prometheus-bin
	$(call with-bins,bin/prometheus.env) $(GO) test -race -count=1 -timeout 30m -tags $(TEST_TAGS) ./...

# The fast tier alone: go test ./..., under -race.
test-short:
	$(GO) test -race -count=1 -timeout 15m ./...

# The tagged tier alone: the packages whose tests run real servers.
test-integration: prometheus-bin
	$(call with-bins,bin/prometheus.env) $(GO) test -race -count=1 -timeout 30m -tags $(TEST_TAGS) ./integration/...

# Short runs of every fuzz target, the tagged tier's files included
# (scripts/fuzz.sh: one go test -fuzz per target, as go test -list names
# them). Minimizing a new corpus entry is capped at FUZZMINIMIZETIME: at
# go test's default (60 s) a target whose entries are whole pages spends a
# short run minimizing and fuzzes nothing.
FUZZMINIMIZETIME ?= 1s
fuzz-short:
	GO=$(GO) bash scripts/fuzz.sh -tags $(TEST_TAGS) -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME)

fuzz:
	$(MAKE) fuzz-short FUZZTIME=5m FUZZMINIMIZETIME=10s

# The soak test for ten minutes (make test runs it for 60 s).
soak: prometheus-bin
	$(call with-bins,bin/prometheus.env) SOAK_DURATION=10m $(GO) test -race -count=1 -timeout 30m -tags $(TEST_TAGS) -run TestSoak -v ./integration

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


# The Kubernetes manifests: kustomize build of every kustomization under
# manifests/, strict decoding into the Go types, the tutorial's text, and
# the Grafana dashboard (strict decoding with grafana-foundation-sdk, every
# query on the real Prometheus scraping the sidecar). A module of its own
# (manifests/test), so that kustomize, prometheus-operator, cert-manager,
# the Grafana SDK and gonum/plot stay out of go.mod.
test-manifests: prometheus-bin
	$(call with-bins,bin/prometheus.env) cd manifests/test && $(GO) test -count=1 -timeout 20m ./...

# The README's picture of the Grafana dashboard, docs/images/dashboard.png:
# manifests/test/cmd/dashboard-png runs the dashboard's queries on the real
# Prometheus fed by the simulator and the sidecar (about four minutes of
# traffic) and draws them with gonum.org/v1/plot. Not part of make test.
dashboard-png: prometheus-bin
	$(call with-bins,bin/prometheus.env) cd manifests/test && $(GO) run ./cmd/dashboard-png

# The Helm chart (charts/kong-metrics-sidecar) with the Helm SDK: lint, the
# renderings decoded strictly against their golden files, the schema, the
# generated certificate across upgrades, the files make manifests generates
# from it current (and every kustomize install the same objects), and
# helm install, upgrade and uninstall on a real API server (the end-to-end
# test's control plane). A module of its own (charts/test), so that Helm
# stays out of go.mod.
test-chart: bins
	$(call with-bins,bin/test-bins.env) cd charts/test && $(GO) test -count=1 ./...

# The files of manifests/ that the chart renders (manifests/README.md lists
# them), written from charts/kong-metrics-sidecar with the Helm SDK by
# charts/test/cmd/gen-manifests: the chart is their one source. Run it after
# changing the chart; test-chart fails while a checked-in file is stale.
.PHONY: manifests
manifests:
	cd charts/test && $(GO) run ./cmd/gen-manifests -chart $(CURDIR)/charts/kong-metrics-sidecar -out $(CURDIR)/manifests

# The release (docs/versioning.md): one build, the same here and in the
# release workflow (.github/workflows/release.yml). release-bins builds the
# three binaries (sidecar, injector, kubectl plugin) for each platform with $(BUILD), the flags of make build, into
# $(RELEASE_DIR)/<os>_<arch>/; release (the release module's cmd/release,
# with go-containerregistry and Helm as libraries, no container daemon)
# puts them on the base image, pinned by digest, as a two-platform OCI
# index, pushes it as $(REGISTRY)/kong-metrics-sidecar:$(VERSION), writes
# an SBOM per platform image, and pushes the chart (version and appVersion
# $(VERSION)) to oci://$(REGISTRY)/charts/kong-metrics-sidecar. Every time
# in them is the commit's (SOURCE_DATE_EPOCH), so a rebuild of a commit
# gives the same digests. Credentials: docker login (or helm registry login).
#   make release VERSION=v0.2.0 REGISTRY=registry.example.com/team
RELEASE_DIR ?= bin/release
RELEASE_PLATFORMS := linux/amd64 linux/arm64
REGISTRY ?= ghcr.io/kong-metrics-sidecar
# gcr.io/distroless/static:nonroot, pinned: update the digest on purpose
# (docs/versioning.md says how), never by pulling a moving tag.
BASE_IMAGE ?= gcr.io/distroless/static:nonroot@sha256:e2e927ec666bae08560abb3c55d0659eceabb657f56b6782ab500a9fc7f555e3
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
SOURCE_URL ?= https://github.com/kong-metrics-sidecar/kong-metrics-sidecar
# $(call RELEASE_TOOL,VERSION,DIR): cmd/release on the binaries in DIR.
RELEASE_TOOL = cd release && $(GO) run ./cmd/release -version $(1) -revision $(REVISION) \
	-source-date-epoch $(SOURCE_DATE_EPOCH) -source $(SOURCE_URL) -bin-dir $(abspath $(2)) \
	-chart-dir $(CURDIR)/charts/kong-metrics-sidecar -out $(abspath $(2))/out

release-bins:
	@set -e; for p in $(RELEASE_PLATFORMS); do os=$${p%/*}; arch=$${p#*/}; \
		echo "release-bins: $$p"; \
		GOOS=$$os GOARCH=$$arch $(BUILD) -o $(RELEASE_DIR)/$${os}_$${arch}/ ./cmd/kong-metrics-sidecar ./cmd/kong-metrics-injector ./cmd/kubectl-kong_metrics; \
	done

release: release-bins
	$(call RELEASE_TOOL,$(VERSION),$(RELEASE_DIR)) -base $(BASE_IMAGE) -image $(REGISTRY)/kong-metrics-sidecar -chart-repo oci://$(REGISTRY)/charts

# The changelog's section for $(VERSION), the GitHub release's text, into
# $(RELEASE_DIR)/out/notes.md; fails when CHANGELOG.md has none.
release-notes:
	cd release && $(GO) run ./cmd/release -version $(VERSION) -notes-from $(CURDIR)/CHANGELOG.md -out $(abspath $(RELEASE_DIR))/out

# The same release into a registry of the tool's own on 127.0.0.1, on a
# stand-in base (distroless cannot be pulled here), then this machine's
# binaries taken from the pulled image into bin/image: the end-to-end test
# runs those. Its version is v0.0.0-local (a chart needs SemVer); the
# binaries keep the stamp of $(VERSION).
image-bins:
	$(MAKE) --no-print-directory release-bins RELEASE_DIR=bin/image-release
	$(call RELEASE_TOOL,v0.0.0-local,bin/image-release) -local $(CURDIR)/bin/image

# The release test (release/release_test.go): make release into an
# in-process registry on 127.0.0.1, pulled back and checked, twice.
test-release:
	cd release && $(GO) test -count=1 -timeout 15m ./...

# actionlint checks every workflow under .github/workflows; built once into
# the cache from its Go module, as golangci-lint is.
ACTIONLINT_VERSION := v1.7.12
ACTIONLINT := $(CACHE)/tools/actionlint-$(ACTIONLINT_VERSION)/actionlint

$(ACTIONLINT):
	GOBIN=$(dir $@) $(GO) install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)

actionlint: $(ACTIONLINT)
	$(ACTIONLINT) -no-color

# The end-to-end test on a real control plane (integration/e2e/README.md):
# Kong's autoscaling tutorial against the servers bins builds.
e2e: bins image-bins
	$(call with-bins,bin/test-bins.env) export E2E_IMAGE_BIN_DIR=$(CURDIR)/bin/image && cd integration/e2e && $(GO) test -count=1 -v -timeout 25m ./...

# The scale scenario (integration/e2e/scale_test.go, docs/performance.md):
# the tutorial's HPA with 20 Kong pods, Prometheus sharded (2 shards × 2
# replicas) behind Thanos Query. Not in make test: Thanos's build alone
# takes minutes on a cold cache. Behind the e2escale build tag, so that
# make e2e leaves it out; vetted with it here.
.PHONY: e2e-scale
e2e-scale:
	@mkdir -p bin
	bash scripts/build-test-bins.sh etcd kubernetes prometheus prometheus-operator thanos > bin/scale-bins.env.tmp && mv bin/scale-bins.env.tmp bin/scale-bins.env
	$(call with-bins,bin/scale-bins.env) cd integration/e2e && $(GO) vet -tags e2escale . && $(GO) test -tags e2escale -count=1 -v -timeout 20m -run '^TestScale$$' .

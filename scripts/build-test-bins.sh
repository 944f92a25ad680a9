#!/usr/bin/env bash
# Builds the third-party servers the tests run (etcd, kube-apiserver,
# kube-controller-manager, Prometheus 3, Prometheus Operator, KEDA, and Thanos
# for make e2e-scale) from the Go modules under integration/e2e/bins, into a
# cache outside the work tree:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/kong-metrics-sidecar/e2e-bin/<module>-<key>/
#
# where <key> hashes the module's go.mod and go.sum, the Go version and the
# build flags, so a directory is built once and reused until one of them
# changes. Prints, on stdout, shell assignments of the binaries' paths:
#
#   eval "$(scripts/build-test-bins.sh)"             # E2E_ETCD_BIN and the others
#   eval "$(scripts/build-test-bins.sh prometheus)"  # E2E_PROMETHEUS_BIN and E2E_PROMTOOL_BIN
#
# Arguments name the modules to build (etcd, kubernetes, prometheus,
# prometheus-operator, keda, thanos); none means all but thanos, which is
# built only when named. Build output goes to stderr. Needs Go and the
# module proxy, no root. Safe to run concurrently (flock).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bins="$root/integration/e2e/bins"
cache="${E2E_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kong-metrics-sidecar/e2e-bin}"
go="${GO:-go}"
# Third-party servers: no -race, stripped, reproducible paths.
flags=(-trimpath -ldflags=-s\ -w)
# Bump to force a rebuild of everything after a change to how we build.
format=1

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
# A build that fails or is interrupted leaves nothing behind.
trap 'rm -rf "$cache"/.tmp-*-$$' EXIT

wanted=("$@")
for m in "${wanted[@]}"; do
	[ -d "$bins/$m" ] || { echo "build-test-bins: no module $m under integration/e2e/bins" >&2; exit 2; }
done

# build MODULE TAGS OUTVAR=PKG... builds the packages of one module into
# its cache directory unless that directory is already complete and holds
# every binary asked for (a command added to a module whose go.mod did not
# change is built then); a module the arguments leave out is skipped.
build() {
	local module=$1 tags=$2
	shift 2
	if [ ${#wanted[@]} -gt 0 ] && [[ " ${wanted[*]} " != *" $module "* ]]; then
		return 0
	fi
	local key
	key=$( { echo "format=$format tags=$tags flags=${flags[*]}"; "$go" env GOVERSION GOOS GOARCH; cat "$bins/$module/go.mod" "$bins/$module/go.sum"; } | sha256sum | cut -c1-16)
	local dir="$cache/$module-$key" complete=1 p
	[ -f "$dir/.complete" ] || complete=0
	for p in "$@"; do [ -f "$dir/$(basename "${p#*=}")" ] || complete=0; done
	if [ "$complete" = 0 ]; then
		local tmp="$cache/.tmp-$module-$$"
		rm -rf "$tmp"
		mkdir -p "$tmp"
		local pkgs=()
		for p in "$@"; do pkgs+=("${p#*=}"); done
		echo "build-test-bins: building $module (${pkgs[*]}) into $dir" >&2
		local start=$SECONDS
		(cd "$bins/$module" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" "$go" build "${flags[@]}" -tags "$tags" -o "$tmp/" "${pkgs[@]}") >&2
		echo "build-test-bins: $module built in $((SECONDS - start))s" >&2
		touch "$tmp/.complete"
		rm -rf "$dir"
		mv "$tmp" "$dir"
	fi
	for p in "$@"; do
		local var=${p%%=*} pkg=${p#*=}
		printf '%s=%q\n' "$var" "$dir/$(basename "$pkg")"
	done
}

build etcd "" E2E_ETCD_BIN=github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/bins/etcd
build kubernetes "" \
	E2E_KUBE_APISERVER_BIN=k8s.io/kubernetes/cmd/kube-apiserver \
	E2E_KUBE_CONTROLLER_MANAGER_BIN=k8s.io/kubernetes/cmd/kube-controller-manager
# remove_all_sd leaves out the service-discovery plugins but Kubernetes
# (enable_kubernetes_sd): the test's Prometheus finds its targets as in a
# cluster, and the others would double the build. promtool (check rules,
# test rules on the shipped alerting rules) shares the compiled packages.
build prometheus remove_all_sd,enable_kubernetes_sd \
	E2E_PROMETHEUS_BIN=github.com/prometheus/prometheus/cmd/prometheus \
	E2E_PROMTOOL_BIN=github.com/prometheus/prometheus/cmd/promtool
# Prometheus Operator: the test runs it against the API server to turn the
# shipped ServiceMonitor into Prometheus's configuration.
build prometheus-operator "" E2E_PROMETHEUS_OPERATOR_BIN=github.com/prometheus-operator/prometheus-operator/cmd/operator
# KEDA: the test runs its operator and its metrics API server against the
# API server to scale the tutorial's Deployment from the sidecar's series
# through KEDA's Prometheus scaler. By far the longest build here (KEDA
# links every scaler's SDK).
build keda "" \
	E2E_KEDA_OPERATOR_BIN=github.com/kedacore/keda/v2/cmd/operator \
	E2E_KEDA_ADAPTER_BIN=github.com/kedacore/keda/v2/cmd/adapter
# Thanos (make e2e-scale): one binary, the sidecar beside each shard's
# Prometheus and the query layer over them. Built only when named, so that
# the bare script (make bins, make test) does not build it. The tags are
# those of Thanos's own builds (.promu.yml): slicelabels, without which its
# zero-copy label conversions read Prometheus's labels wrongly (the
# sidecar's gRPC responses panic), and netgo.
if [[ " ${wanted[*]} " == *" thanos "* ]]; then
	build thanos netgo,slicelabels E2E_THANOS_BIN=github.com/thanos-io/thanos/cmd/thanos
fi

//go:build tools

// Package prometheus pins the Prometheus commands that
// scripts/build-test-bins.sh builds from this module: the server, and
// promtool, which checks and unit-tests the shipped alerting rules.
package prometheus

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)

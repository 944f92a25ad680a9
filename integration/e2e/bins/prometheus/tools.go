//go:build tools

// Package prometheus pins the Prometheus server command that
// scripts/build-test-bins.sh builds from this module.
package prometheus

import _ "github.com/prometheus/prometheus/cmd/prometheus"

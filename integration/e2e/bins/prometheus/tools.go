//go:build tools

// Package prometheus pins the Prometheus server command that
// scripts/build-e2e-bins.sh builds from this module.
package prometheus

import _ "github.com/prometheus/prometheus/cmd/prometheus"

//go:build tools

// Package prometheusoperator pins the Prometheus Operator command that
// scripts/build-test-bins.sh builds from this module.
package prometheusoperator

import _ "github.com/prometheus-operator/prometheus-operator/cmd/operator"

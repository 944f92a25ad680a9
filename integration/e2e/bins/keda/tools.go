//go:build tools

// Package keda pins the KEDA commands that scripts/build-test-bins.sh builds
// from this module: the operator and the metrics API server (the adapter).
package keda

import (
	_ "github.com/kedacore/keda/v2/cmd/adapter"
	_ "github.com/kedacore/keda/v2/cmd/operator"
)

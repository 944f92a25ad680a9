//go:build tools

// Package thanos pins the Thanos command (sidecar, query) that
// scripts/build-test-bins.sh builds from this module for the scale
// scenario (make e2e-scale).
package thanos

import _ "github.com/thanos-io/thanos/cmd/thanos"

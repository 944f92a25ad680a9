// Package version holds the build's version and revision, stamped at build
// time with -ldflags "-X github.com/kong-metrics-sidecar/kong-metrics-sidecar/version.Version=…".
package version

import (
	"fmt"
	"runtime"
)

var (
	// Version is the release version; "dev" when unstamped.
	Version = "dev"
	// Revision is the VCS revision the binary was built from.
	Revision = "unknown"
)

// String describes the build in one line, for -version.
func String(program string) string {
	return fmt.Sprintf("%s version %s (revision %s, %s)", program, Version, Revision, runtime.Version())
}

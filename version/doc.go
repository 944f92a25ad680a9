// Package version holds no code: both programs take their version from
// github.com/prometheus/common/version, stamped at build time as the
// Prometheus projects stamp it,
//
//	-ldflags "-X github.com/prometheus/common/version.Version=… -X ….Revision=…
//	          -X ….Branch=… -X ….BuildUser=… -X ….BuildDate=…"
//
// print it with version.Print for -version, and export it as
// kong_metrics_sidecar_build_info and kong_metrics_injector_build_info with
// client_golang's version collector. This package's test checks that
// make build builds both programs static and stamped that way; the
// release image is built with the same $(BUILD) line (make release-bins),
// and release/release_test.go checks the binaries in it.
package version

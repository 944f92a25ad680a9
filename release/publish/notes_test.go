package publish_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/release/publish"
)

const changelog = `# Changelog

## [Unreleased]

### Added
- Something new.

## [1.1.0] - 2026-12-20

### Fixed
- A fix.

## [1.0.0] - 2026-12-06

### Added
- The first release.

## [0.9.0] - 2026-11-01

[Unreleased]: https://example.com/compare/v1.1.0...HEAD
[1.1.0]: https://example.com/compare/v1.0.0...v1.1.0
`

func TestReleaseNotes(t *testing.T) {
	for _, tc := range []struct {
		version, want, err string
	}{
		{version: "v1.1.0", want: "### Fixed\n- A fix.\n"},
		{version: "v1.0.0", want: "### Added\n- The first release.\n"},
		{version: "v1.0", err: `no section "## [1.0]"`},
		{version: "v2.0.0", err: `no section "## [2.0.0]"`},
		{version: "v0.9.0", err: "is empty"}, // the link definitions are no text
	} {
		t.Run(tc.version, func(t *testing.T) {
			got, err := publish.ReleaseNotes([]byte(changelog), tc.version)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ReleaseNotes: %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ReleaseNotes = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestChangelogHasTheChartsAppVersion: the release the chart's
// appVersion names has its section in CHANGELOG.md, so the workflow can
// make its GitHub release.
func TestChangelogHasTheChartsAppVersion(t *testing.T) {
	root := filepath.Join("..", "..")
	c, err := loader.LoadDir(filepath.Join(root, "charts", "kong-metrics-sidecar"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "CHANGELOG.md"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := publish.ReleaseNotes(data, c.Metadata.AppVersion); err != nil {
		t.Error(err)
	}
}

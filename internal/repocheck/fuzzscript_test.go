package repocheck

import (
	"errors"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// TestFuzzScriptJudge runs scripts/fuzz.sh --judge on recorded outputs of
// failed go test -fuzz runs: only the bare "context deadline exceeded" of
// Go's coordinator race (go.dev/issue/75804), with no failing input written,
// may pass; every finding must stop make fuzz-short.
func TestFuzzScriptJudge(t *testing.T) {
	for _, tc := range []struct {
		file, target string
		race         bool
	}{
		// FuzzMutatePod at the end of a 180 s run on go1.26.8 (progress
		// lines cut).
		{"race.txt", "FuzzMutatePod", true},
		// The same output read for another target.
		{"race.txt", "FuzzHandler", false},
		// CI's run that found a 321-digit sample value kept.
		{"finding.txt", "FuzzRewrite", false},
		// A worker ended by a signal.
		{"hung.txt", "FuzzPageAfterPage", false},
		// The race's lines with a failing input written.
		{"race-and-input.txt", "FuzzMutatePod", false},
		// The target's own deadline, reported at a line of its file.
		{"target-deadline.txt", "FuzzMutatePod", false},
	} {
		t.Run(tc.file+"/"+tc.target, func(t *testing.T) {
			root := harness.RepoRoot()
			cmd := exec.CommandContext(t.Context(), "bash", filepath.Join(root, "scripts", "fuzz.sh"),
				"--judge", tc.target, filepath.Join("testdata", "fuzzjudge", tc.file))
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			switch {
			case err == nil:
				if !tc.race {
					t.Errorf("judged the race, want a finding")
				}
			case errors.As(err, &exit) && exit.ExitCode() == 1:
				if tc.race {
					t.Errorf("judged a finding, want the race")
				}
			default:
				t.Fatalf("fuzz.sh --judge: %v\n%s", err, out)
			}
		})
	}
}

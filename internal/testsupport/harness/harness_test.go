package harness

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBuildIntoConcurrently: two test processes building the same binary
// into one directory (here two goroutines) both get a whole binary, and
// leave no build directory behind.
func TestBuildIntoConcurrently(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // only turns a hang into a failure
	defer cancel()
	dir := t.TempDir()
	var wg sync.WaitGroup
	paths := make([]string, 2)
	errs := make([]error, 2)
	for i := range paths {
		wg.Go(func() {
			bins, err := buildInto(ctx, dir, []string{"./integration/cmd/kong-simulator"})
			paths[i], errs[i] = bins["kong-simulator"], err
		})
	}
	wg.Wait()
	for i := range paths {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if want := filepath.Join(dir, "kong-simulator"); paths[i] != want {
			t.Errorf("build %d: %q, want %q", i, paths[i], want)
		}
	}
	out, _ := exec.CommandContext(ctx, paths[0], "-help").CombinedOutput()
	if !strings.Contains(string(out), "-proxy-listen") {
		t.Errorf("the binary does not run as the simulator: %s", out)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("%d entries in the directory, want the binary alone: %v", len(entries), entries)
	}
}

package kubelet

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestAtomicWriterLayout checks the volume after each write against the
// kubelet's layout: the visible files are symlinks through ..data, which
// points at the only ..<timestamp> directory, and nothing else is left.
func TestAtomicWriterLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "volume")
	var steps []Step
	w := &AtomicWriter{Dir: dir, OnStep: func(s Step) { steps = append(steps, s) }}
	allSteps := []Step{StepTimestampDir, StepDataTmp, StepRenameData, StepCreateUserVisible, StepRemoveUserVisible, StepRemoveOld}
	tests := []struct {
		name    string
		payload map[string][]byte
		steps   []Step // nil: nothing written
	}{
		{"first write creates the directory", map[string][]byte{"config.yaml": []byte("a\n")}, allSteps},
		{"update", map[string][]byte{"config.yaml": []byte("b\n")}, allSteps},
		{"the same payload is no write", map[string][]byte{"config.yaml": []byte("b\n")}, nil},
		{"a key added", map[string][]byte{"config.yaml": []byte("b\n"), "other.yaml": []byte("c\n")}, allSteps},
		{"a key removed", map[string][]byte{"other.yaml": []byte("c\n")}, allSteps},
	}
	for _, tc := range tests {
		steps = nil
		if err := w.Write(tc.payload); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Equal(steps, tc.steps) {
			t.Errorf("%s: steps %v, want %v", tc.name, steps, tc.steps)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names, tsDirs []string
		for _, e := range entries {
			names = append(names, e.Name())
			if strings.HasPrefix(e.Name(), "..") && e.Name() != DataDir {
				tsDirs = append(tsDirs, e.Name())
			}
		}
		if len(tsDirs) != 1 {
			t.Fatalf("%s: entries %v, want exactly one timestamped directory and no %s", tc.name, names, DataDirTmp)
		}
		if target, err := os.Readlink(filepath.Join(dir, DataDir)); err != nil || target != tsDirs[0] {
			t.Errorf("%s: %s -> %q (%v), want -> %s", tc.name, DataDir, target, err, tsDirs[0])
		}
		if len(names) != len(tc.payload)+2 {
			t.Errorf("%s: entries %v, want the payload's keys, %s and one timestamped directory", tc.name, names, DataDir)
		}
		for key, content := range tc.payload {
			visible := filepath.Join(dir, key)
			if target, err := os.Readlink(visible); err != nil || target != filepath.Join(DataDir, key) {
				t.Errorf("%s: %s -> %q (%v), want -> %s", tc.name, key, target, err, filepath.Join(DataDir, key))
			}
			if got, err := os.ReadFile(visible); err != nil || string(got) != string(content) {
				t.Errorf("%s: %s reads %q (%v), want %q", tc.name, key, got, err, content)
			}
		}
	}
}

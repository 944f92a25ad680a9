package filewatch

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCheckSettle drives the settle check with made-up times, one read per
// step.
func TestCheckSettle(t *testing.T) {
	const debounce = time.Second
	t0 := time.Unix(1e9, 0)
	type step struct {
		after   time.Duration // since t0
		content string        // written before the check; "" leaves the file alone
		want    string        // the content delivered last after the check; "" for none
	}
	f := func(name string, steps ...step) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f")
			var delivered string
			w := New(Options{Paths: []string{path}, Debounce: debounce}, func(c Content) error {
				delivered = string(c.Files[0].Data)
				return nil
			})
			l := &loop{Watcher: w, timer: newStoppedTimer()}
			defer l.timer.Stop()
			for i, s := range steps {
				if s.content != "" {
					if err := os.WriteFile(path, []byte(s.content), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				l.check(t0.Add(s.after))
				if delivered != s.want {
					t.Fatalf("step %d (after %s): delivered %q, want %q", i, s.after, delivered, s.want)
				}
			}
		})
	}
	// The first read waits a debounce before it is delivered.
	f("first read",
		step{0, "a", ""},
		step{debounce / 2, "", ""},
		step{debounce, "", "a"})
	// Content that changed between two reads waits again, from the second read.
	f("changed between reads",
		step{0, "a", ""},
		step{debounce, "b", ""},
		step{debounce + debounce/2, "", ""},
		step{2 * debounce, "", "b"})
	// Content that changed back is not delivered before it stayed a debounce.
	f("changed back",
		step{0, "a", ""},
		step{debounce, "", "a"},
		step{2 * debounce, "b", "a"},
		step{2*debounce + 10*time.Millisecond, "a", "a"},
		step{3 * debounce, "b", "a"},
		step{4 * debounce, "", "b"})
}

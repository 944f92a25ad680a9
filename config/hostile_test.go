package config

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/filewatch"
)

// TestStoreRefusesWhatItCannotRead: an extension file that is a FIFO, a
// device or larger than filewatch.MaxFileBytes is refused at once, and the
// configuration in use stays.
func TestStoreRefusesWhatItCannotRead(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	large := filepath.Join(dir, "large.yaml")
	padding := bytes.Repeat([]byte("# padding\n"), filewatch.MaxFileBytes/10+1)
	if err := os.WriteFile(large, append(append([]byte{}, commandLatency...), padding...), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, "/dev/zero", large} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			good := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(good, commandLatency, 0o600); err != nil {
				t.Fatal(err)
			}
			s := NewStore(good, StoreOptions{}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
			if err := s.Reload(); err != nil {
				t.Fatal(err)
			}
			before := s.Load()
			if err := os.Rename(good, good+".old"); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(path, good); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- s.Reload() }()
			select {
			case err := <-done:
				if err == nil {
					t.Error("the file was taken")
				}
			case <-time.After(time.Minute): // only a reader that blocks waits this long
				t.Fatal("Reload blocks")
			}
			if s.Load() != before {
				t.Error("the configuration in use changed")
			}
			if _, err := LoadExtension(good); err == nil {
				t.Error("LoadExtension (-check-config) took the file")
			}
		})
	}
}

// TestErrorTextBounded: a small file that repeats a problem thousands of
// times, each quoting a long value, makes an error of bounded length that
// lists MaxProblems problems and counts the rest.
func TestErrorTextBounded(t *testing.T) {
	const dups = 300
	var b strings.Builder
	longName := strings.Repeat("n", 64<<10)
	fmt.Fprintf(&b, "kind: DataPlaneMetricsExtension\napiVersion: gateway-operator.konghq.com/v1alpha1\nmetadata:\n  name: %s\n  namespace: kong\nspec:\n  serviceSelector:\n    matchNames:\n", longName)
	for range dups + 1 {
		b.WriteString("    - name: command\n")
	}
	b.WriteString("  config:\n    latency: true\n")
	_, err := ParseExtension([]byte(b.String()))
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	if limit := 2 * MaxProblems * 300; len(msg) > limit {
		t.Errorf("error of %d bytes for a file of %d, want at most %d", len(msg), b.Len(), limit)
	}
	if !strings.Contains(msg, fmt.Sprintf("%d problems", dups)) || !strings.Contains(msg, fmt.Sprintf("and %d more", dups-MaxProblems)) {
		t.Errorf("the error does not count every problem:\n%.2000s", msg)
	}
}

// TestParseMemoryBounded: decoding the largest extension file the sidecar
// reads allocates (an upper bound of its peak heap) far less than the
// injector's default 128 MiB limit, whatever the file holds: a long list
// of Services, the most nodes per byte.
func TestParseMemoryBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("kind: DataPlaneMetricsExtension\napiVersion: gateway-operator.konghq.com/v1alpha1\nmetadata:\n  name: kong\n  namespace: kong\nspec:\n  serviceSelector:\n    matchNames:\n")
	for i := 0; b.Len() < filewatch.MaxFileBytes-100; i++ {
		fmt.Fprintf(&b, "    - name: s%d\n", i)
	}
	b.WriteString("  config:\n    latency: true\n")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ext, err := ParseExtension([]byte(b.String()))
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("a %d-byte file of %d Services: %d MiB allocated", b.Len(), len(ext.Selection.Services), allocated>>20)
	if allocated > 96<<20 {
		t.Errorf("decoding allocated %d MiB, want at most 96 MiB", allocated>>20)
	}
}

package filewatch_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/filewatch"
)

// TestReadFileRefuses: only regular files of at most MaxFileBytes are
// read; a FIFO nobody writes to, a device that never ends and a directory
// are refused at once, without blocking or growing.
func TestReadFileRefuses(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	large := filepath.Join(dir, "large")
	if err := os.WriteFile(large, make([]byte, filewatch.MaxFileBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	atLimit := filepath.Join(dir, "at-limit")
	if err := os.WriteFile(atLimit, make([]byte, filewatch.MaxFileBytes), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(atLimit, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string // want: in the error; "" to read
	}{
		{"fifo", fifo, "not a regular file"},
		{"device", "/dev/zero", "not a regular file"},
		{"directory", dir, "not a regular file"},
		{"too large", large, "larger than 1048576 bytes"},
		{"at the limit", atLimit, ""},
		{"symlink to a regular file", link, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			type read struct {
				data []byte
				err  error
			}
			done := make(chan read, 1)
			go func() {
				data, err := filewatch.ReadFile(tc.path)
				done <- read{data, err}
			}()
			var r read
			select {
			case r = <-done:
			case <-time.After(hangTimeout):
				t.Fatalf("ReadFile(%s) blocks", tc.name)
			}
			if tc.want == "" {
				if r.err != nil || len(r.data) != filewatch.MaxFileBytes {
					t.Errorf("read %d bytes, %v; want %d", len(r.data), r.err, filewatch.MaxFileBytes)
				}
				return
			}
			if r.err == nil || !strings.Contains(r.err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", r.err, tc.want)
			}
			// Read, as a Watcher reads, says the same.
			if c := filewatch.Read(tc.path); c.Err() == nil {
				t.Errorf("Read took %s", tc.name)
			}
		})
	}
}

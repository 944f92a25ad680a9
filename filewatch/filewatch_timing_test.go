package filewatch_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/filewatch"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kubelet"
)

// BenchmarkRead is the cost of one read and hash of a 4 KiB file, which a
// Watcher pays at each poll and each settle check.
func BenchmarkRead(b *testing.B) {
	path := filepath.Join(b.TempDir(), "f")
	content := bytes.Repeat([]byte("x"), 4096)
	if err := os.WriteFile(path, content, 0o644); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(content)))
	for b.Loop() {
		if c := filewatch.Read(path); c.Err() != nil || len(c.Files[0].Data) != len(content) {
			b.Fatalf("Read: %v", c.Err())
		}
	}
}

// BenchmarkKubeletUpdate is the time from a kubelet ConfigMap update (the
// ..data swap) to its delivery through file events, with a 1 ms debounce:
// the Watcher's own latency, two debounces included, on this machine.
func BenchmarkKubeletUpdate(b *testing.B) {
	dir := b.TempDir()
	aw := &kubelet.AtomicWriter{Dir: dir}
	if err := aw.Write(map[string][]byte{"config.yaml": []byte("v0")}); err != nil {
		b.Fatal(err)
	}
	delivered := make(chan string, 16)
	w := filewatch.New(filewatch.Options{
		Paths: []string{filepath.Join(dir, "config.yaml")}, PollInterval: time.Hour, Debounce: time.Millisecond,
	}, func(c filewatch.Content) error { delivered <- string(c.Files[0].Data); return nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	<-delivered
	i := 0
	for b.Loop() {
		i++
		want := fmt.Sprintf("v%d", i)
		if err := aw.Write(map[string][]byte{"config.yaml": []byte(want)}); err != nil {
			b.Fatal(err)
		}
		for got := range delivered {
			if got == want {
				break
			}
		}
	}
}

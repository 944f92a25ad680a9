package filewatch_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/filewatch"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/filewatch/filewatchtest"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/kubelet"
)

// hangTimeout only turns a hang into a failure.
const hangTimeout = 10 * time.Second

// deliveries records what a Watcher delivered.
type deliveries struct {
	mu   sync.Mutex
	got  []filewatch.Content
	next chan filewatch.Content // each delivery, for tests that wait on one
}

func newDeliveries() *deliveries {
	return &deliveries{next: make(chan filewatch.Content, 100)}
}

func (d *deliveries) deliver(c filewatch.Content) error {
	d.mu.Lock()
	d.got = append(d.got, c)
	d.mu.Unlock()
	d.next <- c
	return c.Err()
}

func (d *deliveries) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.got)
}

// wait returns the next delivery.
func (d *deliveries) wait(t *testing.T, what string) filewatch.Content {
	t.Helper()
	select {
	case c := <-d.next:
		return c
	case <-time.After(hangTimeout):
		t.Fatalf("%s: nothing delivered", what)
		return filewatch.Content{}
	}
}

// run starts w until the test ends.
func run(t *testing.T, w *filewatch.Watcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// data is the content of c's files, or "!" for a file that was not read.
func data(c filewatch.Content) string {
	var parts []string
	for _, f := range c.Files {
		if f.Err != nil {
			parts = append(parts, "!")
			continue
		}
		parts = append(parts, string(f.Data))
	}
	return strings.Join(parts, "|")
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	writeFile(t, a, "one")
	c := filewatch.Read(a, b)
	if len(c.Files) != 2 || string(c.Files[0].Data) != "one" || c.Files[0].Sum != sha256.Sum256([]byte("one")) {
		t.Fatalf("Read = %+v", c)
	}
	if !errors.Is(c.Files[1].Err, os.ErrNotExist) || !errors.Is(c.Err(), os.ErrNotExist) || c.Files[1].Data != nil {
		t.Errorf("the missing file: %+v, Err() = %v", c.Files[1], c.Err())
	}
	if again := filewatch.Read(a, b); again.Key() != c.Key() {
		t.Errorf("the same files read twice have keys %q and %q", c.Key(), again.Key())
	}
	writeFile(t, b, "two")
	if changed := filewatch.Read(a, b); changed.Key() == c.Key() || changed.Err() != nil {
		t.Errorf("a file that appeared keeps the key, or an error: %v", changed.Err())
	}
}

// TestSettle drives Run with the fake clock and no file events: the first
// read and each change wait a debounce of unchanged content, content that
// changes within the debounce waits again, and content already delivered is
// not delivered again at the poll.
func TestSettle(t *testing.T) {
	const debounce, poll = time.Second, time.Minute
	path := filepath.Join(t.TempDir(), "f")
	writeFile(t, path, "v1")
	clock := filewatchtest.NewClock(time.Unix(1e9, 0))
	d := newDeliveries()
	w := filewatch.New(filewatch.Options{Paths: []string{path}, PollInterval: poll, Debounce: debounce, Clock: clock, NoEvents: true}, d.deliver)
	run(t, w)
	armed := func(want time.Duration) {
		t.Helper()
		select {
		case got := <-clock.Armed():
			if got != want {
				t.Fatalf("timer armed for %s, want %s", got, want)
			}
		case <-time.After(hangTimeout):
			t.Fatal("the timer was not armed")
		}
	}
	none := func(what string) {
		t.Helper()
		if n := d.count(); n != 0 {
			t.Fatalf("%s: %d deliveries, want none", what, n)
		}
	}

	armed(debounce) // the first read
	clock.Advance(debounce - time.Nanosecond)
	none("before a debounce")
	clock.Advance(time.Nanosecond)
	if c := d.wait(t, "after a debounce"); data(c) != "v1" {
		t.Fatalf("delivered %q, want v1", data(c))
	}

	// A change half written when the poll reads it, complete before the
	// settle check: the half is never delivered.
	// Each Advance ends before a timer the Watcher arms during it falls due.
	writeFile(t, path, "v2-ha")
	clock.Advance(poll - debounce) // to the first tick
	armed(debounce)
	writeFile(t, path, "v2-half-and-rest")
	clock.Advance(debounce) // reads the rest: changed, waits again
	armed(debounce)
	clock.Advance(debounce / 2)
	if n := len(d.next); n != 0 {
		t.Fatalf("delivered before the complete file stayed a debounce")
	}
	clock.Advance(debounce / 2)
	if c := d.wait(t, "the complete file"); data(c) != "v2-half-and-rest" {
		t.Fatalf("delivered %q, want the complete file", data(c))
	}

	// Polls of an unchanged file deliver nothing; the next change is the
	// next delivery.
	clock.Advance(3 * poll) // three ticks, the last 2 s before the end
	writeFile(t, path, "v3")
	clock.Advance(poll - 2*debounce) // to the next tick
	armed(debounce)
	clock.Advance(debounce)
	if c := d.wait(t, "v3"); data(c) != "v3" {
		t.Fatalf("delivered %q after unchanged polls, want v3", data(c))
	}
	if n := d.count(); n != 3 {
		t.Errorf("%d deliveries, want 3", n)
	}
}

// TestReload: Reload delivers at once, without the settle check, returns
// deliver's error, and ErrStopped once Run has returned.
func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	d := newDeliveries()
	w := filewatch.New(filewatch.Options{Paths: []string{path}, PollInterval: time.Hour, Clock: filewatchtest.NewClock(time.Unix(1e9, 0)), NoEvents: true}, d.deliver)
	stop := run(t, w)
	if err := w.Reload(t.Context()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Reload() without the file = %v, want ErrNotExist", err)
	}
	writeFile(t, path, "v1")
	if err := w.Reload(t.Context()); err != nil {
		t.Errorf("Reload() = %v", err)
	}
	if d.count() != 2 || data(d.got[1]) != "v1" {
		t.Errorf("deliveries %d, want 2 ending with v1", d.count())
	}
	stop()
	if err := w.Reload(t.Context()); !errors.Is(err, filewatch.ErrStopped) {
		t.Errorf("Reload() after Run = %v, want ErrStopped", err)
	}
}

// TestEvents follows two files of a kubelet Secret volume whose directory
// is missing at start, through file events alone (the poll is an hour),
// with the real clock: each update is delivered whole, both files at once.
func TestEvents(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "yet", "mounted")
	aw := &kubelet.AtomicWriter{Dir: dir}
	d := newDeliveries()
	w := filewatch.New(filewatch.Options{
		Paths:        []string{filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")},
		PollInterval: time.Hour, Debounce: 20 * time.Millisecond,
	}, d.deliver)
	run(t, w)
	if c := d.wait(t, "the missing files"); data(c) != "!|!" {
		t.Fatalf("delivered %q, want two errors", data(c))
	}
	for _, v := range []string{"1", "2", "3"} {
		if err := aw.Write(map[string][]byte{"tls.crt": []byte("crt" + v), "tls.key": []byte("key" + v)}); err != nil {
			t.Fatal(err)
		}
		want := "crt" + v + "|key" + v
		c := d.wait(t, "update "+v)
		// The first write links the files into the new directory one
		// after the other, as the kubelet does: a slow writer may have one
		// delivered before the other. Later updates are one rename.
		for v == "1" && data(c) != want && (data(c) == "crt1|!" || data(c) == "!|key1") {
			c = d.wait(t, "update 1's second file")
		}
		if data(c) != want {
			t.Fatalf("update %s: delivered %q, want %q", v, data(c), want)
		}
	}
}

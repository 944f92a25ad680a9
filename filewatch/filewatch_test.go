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
	"testing/synctest"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/filewatch"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kubelet"
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

// TestSettle drives Run in a synctest bubble, whose clock moves only when
// every goroutine in it waits, with no file events: the first read and
// each change wait a debounce of unchanged content, content that changes
// within the debounce waits again, and content already delivered is not
// delivered again at the poll.
func TestSettle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const debounce, poll = time.Second, time.Minute
		path := filepath.Join(t.TempDir(), "f")
		writeFile(t, path, "v1")
		d := newDeliveries()
		w := filewatch.New(filewatch.Options{Paths: []string{path}, PollInterval: poll, Debounce: debounce, NoEvents: true}, d.deliver)
		run(t, w)
		// advance moves the bubble's time on by by, and returns once the
		// Watcher waits again: the work due by then is done.
		advance := func(by time.Duration) {
			time.Sleep(by)
			synctest.Wait()
		}
		delivered := func(what, want string) {
			t.Helper()
			select {
			case c := <-d.next:
				if data(c) != want {
					t.Fatalf("%s: delivered %q, want %q", what, data(c), want)
				}
			default:
				t.Fatalf("%s: nothing delivered, want %q", what, want)
			}
		}
		none := func(what string) {
			t.Helper()
			if n := len(d.next); n != 0 {
				t.Fatalf("%s: %d deliveries, want none", what, n)
			}
		}

		advance(debounce - time.Nanosecond) // the first read waits a debounce
		none("before a debounce")
		advance(time.Nanosecond)
		delivered("after a debounce", "v1")

		// A change half written when the poll reads it, complete before the
		// settle check: the half is never delivered.
		writeFile(t, path, "v2-ha")
		advance(poll - debounce) // to the first tick, which reads the half
		writeFile(t, path, "v2-half-and-rest")
		advance(debounce) // the settle check reads the rest: changed, waits again
		none("the half written file")
		advance(debounce - time.Nanosecond)
		none("before the complete file stayed a debounce")
		advance(time.Nanosecond)
		delivered("the complete file", "v2-half-and-rest")

		// Polls of an unchanged file deliver nothing; the next change is the
		// next delivery, a debounce after the poll that read it.
		advance(3 * poll) // three ticks, the last 2 s before now
		none("polls of an unchanged file")
		writeFile(t, path, "v3")
		advance(poll - 2*debounce) // to the next tick
		none("v3 when the poll read it")
		advance(debounce)
		delivered("v3", "v3")
		if n := d.count(); n != 3 {
			t.Errorf("%d deliveries, want 3", n)
		}
	})
}

// TestReload: Reload delivers at once, without the settle check, returns
// deliver's error, and ErrStopped once Run has returned.
func TestReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "f")
		d := newDeliveries()
		w := filewatch.New(filewatch.Options{Paths: []string{path}, PollInterval: time.Hour, NoEvents: true}, d.deliver)
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
	})
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

package e2e_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/cluster"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// world is one run's processes and timeline.
type world struct {
	t     *testing.T
	start time.Time

	mu       sync.Mutex // Protects procs and timeline.
	procs    []*harness.Process
	timeline []string
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, start: time.Now()}
	// Registered first, so it runs last: every process is stopped by then.
	t.Cleanup(w.report)
	return w
}

// started registers a process to be stopped at the end and reported on
// failure. Processes stop in reverse order, after anything registered
// with t.Cleanup later.
func (w *world) started(p *harness.Process) *harness.Process {
	w.mu.Lock()
	w.procs = append(w.procs, p)
	w.mu.Unlock()
	w.t.Cleanup(func() { p.Stop(10 * time.Second) })
	return p
}

// track registers a process to be reported on failure; its owner stops
// it.
func (w *world) track(p *harness.Process) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.procs = append(w.procs, p)
}

// step records that a step passed, with what it observed.
func (w *world) step(format string, args ...any) {
	line := fmt.Sprintf("%7.1fs  %s", time.Since(w.start).Seconds(), fmt.Sprintf(format, args...))
	w.mu.Lock()
	w.timeline = append(w.timeline, line)
	w.mu.Unlock()
	w.t.Log(line)
}

func (w *world) report() {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(os.Stdout, "\n=== e2e timeline (%s) ===\n%s\n", w.t.Name(), strings.Join(w.timeline, "\n"))
	if !w.t.Failed() {
		return
	}
	// Keep the whole logs where the work tree ignores them.
	dir := filepath.Join(harness.RepoRoot(), "integration", ".work", "e2e-logs", time.Now().Format("20060102-150405"))
	if err := os.MkdirAll(dir, 0o755); err == nil {
		for _, p := range w.procs {
			_ = os.WriteFile(filepath.Join(dir, p.Name+".log"), []byte(p.Output()), 0o644)
		}
	}
	var b strings.Builder
	for _, p := range w.procs {
		b.WriteString(cluster.Tail(p, 60))
	}
	w.t.Logf("component logs (whole logs in %s):%s", dir, b.String())
}

// waitFor polls check every interval until it reports done, failing the
// test after timeout with the last observation.
func (w *world) waitFor(ctx context.Context, timeout time.Duration, what string, check func() (done bool, observed string)) string {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		done, obs := check()
		if obs != last && obs != "" {
			w.t.Logf("%7.1fs  %s: %s", time.Since(w.start).Seconds(), what, obs)
			last = obs
		}
		if done {
			return obs
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			w.t.Fatalf("%s: not after %s; last observed: %s", what, timeout, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// traffic runs the tutorial's request loop at a delay until stopped.
type traffic struct {
	cancel context.CancelFunc
	done   chan struct{}
	ok     int
	err    error
}

func startTraffic(ctx context.Context, proxyURL, delay string) *traffic {
	ctx, cancel := context.WithCancel(ctx)
	tr := &traffic{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		tr.ok, tr.err = harness.Traffic(ctx, proxyURL, delay, 2)
	}()
	return tr
}

// stop ends the loop and returns how many requests succeeded.
func (tr *traffic) stop() (int, error) {
	tr.cancel()
	<-tr.done
	return tr.ok, tr.err
}

package config

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kongsim"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kubelet"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/proxy"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// hangTimeout bounds every wait for the Watcher to do something; it only
// turns a hang into a failure, and says nothing about speed.
const hangTimeout = 10 * time.Second

// extension is an extension file whose one document selects services in
// namespace, with the spec.config flag turned on.
func extension(namespace, flag string, services ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "kind: DataPlaneMetricsExtension\napiVersion: gateway-operator.konghq.com/v1alpha1\n"+
		"metadata:\n  name: %s-%s\n  namespace: %s\nspec:\n  serviceSelector:\n    matchNames:\n", namespace, flag, namespace)
	for _, s := range services {
		fmt.Fprintf(&b, "    - name: %s\n", s)
	}
	fmt.Fprintf(&b, "  config:\n    %s: true\n", flag)
	return b.Bytes()
}

var (
	commandLatency = extension("kong", "latency", "command")
	billingStatus  = extension("default", "statusCode", "billing")
	bothBandwidth  = slices.Concat(extension("kong", "bandwidth", "command"), []byte("---\n"), extension("default", "bandwidth", "billing"))
	// Invalid files, each for its own reason.
	syntaxError  = []byte("kind: [DataPlaneMetricsExtension\n")
	unknownField = bytes.Replace(commandLatency, []byte("latency: true"), []byte("latencyy: true"), 1)
)

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// watched is a Store with its Watcher running until the test ends.
type watched struct {
	store   *Store
	reg     *prometheus.Registry
	logs    *lockedBuffer
	watcher *Watcher
	stop    func() // stops the Watcher and waits for Run to return
}

func watch(t *testing.T, path string, opts WatchOptions, noEvents bool) *watched {
	t.Helper()
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	store := NewStore(path, StoreOptions{}, reg, logger)
	opts.Logger = logger
	opts.noEvents = noEvents
	w := NewWatcher(store, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	})
	return &watched{store: store, reg: reg, logs: logs, watcher: w, stop: stop}
}

// inUse is the hash of the extension file in use, "" before one was valid.
func (w *watched) inUse() string { return inUse(w.store) }

// inUse is the hash of store's extension file in use, once the Store has
// also updated its metrics for it.
func inUse(store *Store) string {
	// The Store holds mu while it swaps the snapshot and sets its metrics:
	// under mu the snapshot and the metrics agree.
	store.mu.Lock()
	ext := store.Load().Extension
	store.mu.Unlock()
	if ext != nil {
		return ext.Hash
	}
	return ""
}

// metric returns the value of the gauge or counter name with the given
// label pairs, failing the test when there is none.
func (w *watched) metric(t *testing.T, name string, labelPairs ...string) float64 {
	t.Helper()
	v, ok := gathered(t, w.reg, name, labelPairs...)
	if !ok {
		t.Fatalf("no metric %s%v", name, labelPairs)
	}
	return v
}

func gathered(t *testing.T, g prometheus.Gatherer, name string, labelPairs ...string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gathering: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labelPairs); i += 2 {
				if labels[labelPairs[i]] != labelPairs[i+1] {
					continue metrics
				}
			}
			return value(m), true
		}
	}
	return 0, false
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	}
	return 0
}

func (w *watched) successes(t *testing.T) float64 {
	return w.metric(t, "kong_metrics_sidecar_config_reloads_total", "result", "success")
}

func (w *watched) failures(t *testing.T) float64 {
	return w.metric(t, "kong_metrics_sidecar_config_reloads_total", "result", "failure")
}

// waitFor polls cond until it holds; it fails the test after timeout, which
// only turns a hang into a failure.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not the case after %s", what, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path string, content []byte) {
	t.Helper()
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
}

// volume is an extension file and one way of changing it.
type volume struct {
	path  string
	write func(t *testing.T, content []byte)
}

// kubeletVolume is a ConfigMap volume in dir with the key config.yaml.
func kubeletVolume(dir string) volume {
	aw := &kubelet.AtomicWriter{Dir: dir}
	return volume{
		path: filepath.Join(dir, "config.yaml"),
		write: func(t *testing.T, content []byte) {
			t.Helper()
			if err := aw.Write(map[string][]byte{"config.yaml": content}); err != nil {
				t.Fatal(err)
			}
		},
	}
}

// inPlace truncates path and writes content in two halves with a pause,
// as a program that does not write atomically does; between them the file
// is empty (a valid file that selects nothing) and then half written.
func inPlace(t *testing.T, path string, content []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	time.Sleep(5 * time.Millisecond)
	half := len(content) / 2
	if _, err := f.Write(content[:half]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := f.Write(content[half:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWatcherFollowsUpdates changes the file in each way it is changed in
// practice, several times, with the poll out of the way: each change must
// be taken through file events, and only the final content of each change
// may ever be used.
func TestWatcherFollowsUpdates(t *testing.T) {
	tests := []struct {
		name          string
		absentAtStart bool
		setup         func(t *testing.T, root string) volume
	}{
		{"kubelet ConfigMap volume", false, func(t *testing.T, root string) volume {
			return kubeletVolume(root)
		}},
		{"kubelet volume without the key at start", true, func(t *testing.T, root string) volume {
			v := kubeletVolume(root)
			if err := (&kubelet.AtomicWriter{Dir: root}).Write(map[string][]byte{"other.yaml": []byte("x: 1\n")}); err != nil {
				t.Fatal(err)
			}
			return v
		}},
		{"kubelet volume directory absent at start", true, func(t *testing.T, root string) volume {
			return kubeletVolume(filepath.Join(root, "not", "yet", "mounted"))
		}},
		{"editor: write a temporary file, rename it over", false, func(t *testing.T, root string) volume {
			path := filepath.Join(root, "config.yaml")
			return volume{path, func(t *testing.T, content []byte) {
				tmp := filepath.Join(root, ".config.yaml.swp")
				writeFile(t, tmp, content)
				if err := os.Rename(tmp, path); err != nil {
					t.Fatal(err)
				}
			}}
		}},
		{"remove, then create", false, func(t *testing.T, root string) volume {
			path := filepath.Join(root, "config.yaml")
			return volume{path, func(t *testing.T, content []byte) {
				if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Millisecond)
				writeFile(t, path, content)
			}}
		}},
		{"truncate, then write in place", false, func(t *testing.T, root string) volume {
			path := filepath.Join(root, "config.yaml")
			return volume{path, func(t *testing.T, content []byte) { inPlace(t, path, content) }}
		}},
		{"plain file absent at start", true, func(t *testing.T, root string) volume {
			path := filepath.Join(root, "config.yaml")
			return volume{path, func(t *testing.T, content []byte) { inPlace(t, path, content) }}
		}},
		{"symlink to a file written in place in another directory", false, func(t *testing.T, root string) volume {
			for _, d := range []string{"etc", "data"} {
				if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			path, real := filepath.Join(root, "etc", "config.yaml"), filepath.Join(root, "data", "extension.yaml")
			if err := os.Symlink(real, path); err != nil {
				t.Fatal(err)
			}
			return volume{path, func(t *testing.T, content []byte) { inPlace(t, real, content) }}
		}},
		{"directory removed and created again", false, func(t *testing.T, root string) volume {
			dir := filepath.Join(root, "conf")
			path := filepath.Join(dir, "config.yaml")
			return volume{path, func(t *testing.T, content []byte) {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Millisecond)
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, path, content)
			}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := tc.setup(t, t.TempDir())
			versions := [][]byte{commandLatency, billingStatus, commandLatency, bothBandwidth}
			if !tc.absentAtStart {
				v.write(t, versions[0])
			}
			// A writer would have to stall for a debounce and a settle check
			// (1 s) between two steps of a change for a step to be used.
			w := watch(t, v.path, WatchOptions{PollInterval: time.Hour, Debounce: 500 * time.Millisecond}, false)
			if !tc.absentAtStart {
				waitFor(t, hangTimeout, "the file at start is used", func() bool { return w.inUse() == sha(versions[0]) })
				versions = versions[1:]
			} else {
				waitFor(t, hangTimeout, "the missing file is reported", func() bool { return w.failures(t) >= 1 })
				if got := w.metric(t, "kong_metrics_sidecar_config_last_reload_successful"); got != 0 {
					t.Fatalf("config_last_reload_successful = %v with the file absent, want 0", got)
				}
			}
			for i, content := range versions {
				before := w.successes(t)
				v.write(t, content)
				waitFor(t, hangTimeout, fmt.Sprintf("change %d is used", i+1), func() bool { return w.inUse() == sha(content) })
				if got := w.successes(t); got != before+1 {
					t.Errorf("change %d: %v successful reloads, want 1: content other than the final one was used", i+1, got-before)
				}
				if got := w.metric(t, "kong_metrics_sidecar_config_info", "sha256", sha(content)); got != 1 {
					t.Errorf("change %d: config_info{sha256=%q} = %v, want 1", i+1, sha(content), got)
				}
				if got := w.metric(t, "kong_metrics_sidecar_config_last_reload_successful"); got != 1 {
					t.Errorf("change %d: config_last_reload_successful = %v, want 1", i+1, got)
				}
			}
		})
	}
}

// TestWatcherSettles: a file rewritten in place is read half written by
// the poll; the settle check waits a debounce for it, sees the rest come in
// and waits again, so the half is never used, although it is a valid file
// that selects less. It runs in a synctest bubble, whose clock moves only
// when every goroutine in it waits, so each wait shows.
func TestWatcherSettles(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const debounce, poll = time.Second, time.Minute
		path := filepath.Join(t.TempDir(), "config.yaml")
		writeFile(t, path, billingStatus)
		w := watch(t, path, WatchOptions{PollInterval: poll, Debounce: debounce}, true)
		advance(debounce - time.Nanosecond)
		if got := w.inUse(); got != "" {
			t.Fatalf("in use %.8s before the file at start settled, want none", got)
		}
		advance(time.Nanosecond) // the first read waits to settle too
		if got := w.inUse(); got != sha(billingStatus) {
			t.Fatalf("in use %.8s a debounce after start, want the file at start", got)
		}

		half := slices.Concat(commandLatency, []byte("---\n"))
		full := slices.Concat(half, billingStatus)
		if _, err := ParseExtension(half); err != nil {
			t.Fatalf("the half written file must be valid for this test: %v", err)
		}
		before := w.successes(t)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(half); err != nil {
			t.Fatal(err)
		}
		advance(poll - debounce)            // the poll reads the half…
		advance(debounce - time.Nanosecond) // …and waits a debounce for it to settle
		if got := w.inUse(); got != sha(billingStatus) {
			t.Fatalf("in use %.8s before the settle interval passed, want the previous file", got)
		}
		if _, err := f.Write(billingStatus); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		advance(time.Nanosecond) // the settle check reads the full file: changed, so it waits again
		if got, n := w.inUse(), w.successes(t); got != sha(billingStatus) || n != before {
			t.Fatalf("in use %.8s after %v reloads: the half written file was used", got, n-before)
		}
		advance(debounce)
		if got := w.inUse(); got != sha(full) {
			t.Fatalf("in use %.8s a debounce after the full file was read, want the full file", got)
		}
		if got := w.successes(t); got != before+1 {
			t.Errorf("%v successful reloads, want 1: the half written file was used", got-before)
		}
	})
}

// advance moves a synctest bubble's time on by d, and returns once every
// goroutine in it waits again: the Watcher's work due by then is done.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// TestWatcherPoll: changes that no file event reports are taken by the
// poll. Without file events it runs in a synctest bubble, each poll a
// minute of the bubble's time; with file events, which a bubble cannot
// wait for, on the real clock with a short poll.
func TestWatcherPoll(t *testing.T) {
	tests := []struct {
		name     string
		noEvents bool
		setup    func(t *testing.T, root string) volume
	}{
		{"file events unavailable", true, func(t *testing.T, root string) volume {
			return kubeletVolume(root)
		}},
		// A directory symlink swapped above the file (as git-sync does) is
		// not in any watched directory.
		{"directory symlink swapped above the file", false, func(t *testing.T, root string) volume {
			current := filepath.Join(root, "current")
			n := 0
			return volume{filepath.Join(current, "config.yaml"), func(t *testing.T, content []byte) {
				n++
				dir := filepath.Join(root, fmt.Sprintf("rev%d", n))
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, "config.yaml"), content)
				tmp := filepath.Join(root, "current.tmp")
				if err := os.Symlink(filepath.Base(dir), tmp); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, current); err != nil {
					t.Fatal(err)
				}
			}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// used waits for content to be in use. In a bubble, the file at
			// start is used a debounce after Run starts; each change, written
			// a debounce after a tick, a poll after it was written: at the
			// next tick and a debounce.
			poll, debounce := 50*time.Millisecond, 10*time.Millisecond
			used := func(t *testing.T, w *watched, what string, content []byte) {
				t.Helper()
				waitFor(t, hangTimeout, what, func() bool { return w.inUse() == sha(content) })
			}
			body := func(t *testing.T) {
				v := tc.setup(t, t.TempDir())
				v.write(t, commandLatency)
				w := watch(t, v.path, WatchOptions{PollInterval: poll, Debounce: debounce}, tc.noEvents)
				used(t, w, "the file at start is used", commandLatency)
				for i, content := range [][]byte{billingStatus, commandLatency} {
					v.write(t, content)
					used(t, w, fmt.Sprintf("change %d is used", i+1), content)
				}
				// An unchanged file is neither reloaded nor counted at each poll.
				successes, failures := w.successes(t), w.failures(t)
				time.Sleep(3 * poll)
				// Reload is taken once the last poll's read is done; it reloads
				// nothing either, the file being unchanged.
				if err := w.watcher.Reload(t.Context()); err != nil {
					t.Fatal(err)
				}
				if s, f := w.successes(t), w.failures(t); s != successes || f != failures {
					t.Errorf("reloads of an unchanged file: %v successes and %v failures, want none", s-successes, f-failures)
				}
			}
			if !tc.noEvents {
				body(t)
				return
			}
			poll, debounce = time.Minute, time.Second
			used = func(t *testing.T, w *watched, what string, content []byte) {
				t.Helper()
				wait := poll
				if w.inUse() == "" {
					wait = debounce // the file at start
				}
				advance(wait - time.Nanosecond)
				if w.inUse() == sha(content) {
					t.Fatalf("%s before %s", what, wait)
				}
				advance(time.Nanosecond)
				if w.inUse() != sha(content) {
					t.Fatalf("%s: not after %s", what, wait)
				}
			}
			synctest.Test(t, body)
		})
	}
}

// TestWatcherKeepsLastGood: an invalid or missing file never replaces the
// configuration in use; its error is logged once per distinct content with
// the path and the reason; a valid file is then taken.
func TestWatcherKeepsLastGood(t *testing.T) {
	tests := []struct {
		name    string
		payload map[string][]byte // the volume's content; no config.yaml for a missing file
		reason  string            // in the log
	}{
		{"syntax error", map[string][]byte{"config.yaml": syntaxError}, "did not find expected"},
		{"unknown field", map[string][]byte{"config.yaml": unknownField}, `spec.config.latencyy: unknown field`},
		{"key removed from the ConfigMap", map[string][]byte{"other.yaml": commandLatency}, "no such file or directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// In a synctest bubble, without file events (which a bubble cannot
			// wait for): the poll finds each write, and the waits below cost
			// no wall-clock time.
			synctest.Test(t, func(t *testing.T) {
				dir := t.TempDir()
				aw := &kubelet.AtomicWriter{Dir: dir}
				path := filepath.Join(dir, "config.yaml")
				write := func(payload map[string][]byte) {
					t.Helper()
					if err := aw.Write(payload); err != nil {
						t.Fatal(err)
					}
				}
				write(map[string][]byte{"config.yaml": commandLatency})
				w := watch(t, path, WatchOptions{PollInterval: 50 * time.Millisecond, Debounce: 20 * time.Millisecond}, true)
				waitFor(t, hangTimeout, "the good file is used", func() bool { return w.inUse() == sha(commandLatency) })
				successTS := w.metric(t, "kong_metrics_sidecar_config_last_reload_success_timestamp_seconds")
				if successTS <= 0 {
					t.Errorf("config_last_reload_success_timestamp_seconds = %v after a success", successTS)
				}
				successes := w.successes(t)

				write(tc.payload)
				waitFor(t, hangTimeout, "the bad file is rejected", func() bool { return w.failures(t) == 1 })
				// Polls go on; a forced reload of the same content fails again
				// (but is not counted again).
				if err := w.watcher.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), tc.reason) {
					t.Errorf("Reload() = %v, want an error containing %q", err, tc.reason)
				}
				time.Sleep(150 * time.Millisecond)
				if got := w.inUse(); got != sha(commandLatency) {
					t.Fatalf("in use %.8s, want the last good %.8s", got, sha(commandLatency))
				}
				if got := w.metric(t, "kong_metrics_sidecar_config_last_reload_successful"); got != 0 {
					t.Errorf("config_last_reload_successful = %v, want 0", got)
				}
				if got := w.failures(t); got != 1 {
					t.Errorf("%v failed reloads, want 1: the same bad content is counted once, whether polled or forced", got)
				}
				if got := w.metric(t, "kong_metrics_sidecar_config_info", "sha256", sha(commandLatency)); got != 1 {
					t.Errorf("config_info of the last good file = %v, want 1", got)
				}
				rejected := func() []string {
					var lines []string
					for line := range strings.Lines(w.logs.String()) {
						if strings.Contains(line, "extension file rejected") {
							lines = append(lines, line)
						}
					}
					return lines
				}
				if lines := rejected(); len(lines) != 1 {
					t.Errorf("%d rejections logged, want 1:\n%s", len(lines), strings.Join(lines, ""))
				} else if !strings.Contains(lines[0], path) || !strings.Contains(lines[0], tc.reason) {
					t.Errorf("the rejection %q does not name the path %s and the reason %q", lines[0], path, tc.reason)
				}

				write(map[string][]byte{"config.yaml": billingStatus})
				waitFor(t, hangTimeout, "the next good file is used", func() bool { return w.inUse() == sha(billingStatus) })
				if got := w.successes(t); got != successes+1 {
					t.Errorf("%v successful reloads, want 1", got-successes)
				}
				if got := w.metric(t, "kong_metrics_sidecar_config_last_reload_successful"); got != 1 {
					t.Errorf("config_last_reload_successful = %v, want 1", got)
				}
				if got := w.metric(t, "kong_metrics_sidecar_config_last_reload_success_timestamp_seconds"); got <= successTS {
					t.Errorf("config_last_reload_success_timestamp_seconds = %v, want after %v", got, successTS)
				}
				if _, ok := gathered(t, w.reg, "kong_metrics_sidecar_config_info", "sha256", sha(commandLatency)); ok {
					t.Errorf("config_info still has the previous file's hash")
				}
			})
		})
	}
}

// TestWatcherReload: Reload takes the file at once, without an event, and
// reports the Store's verdict; after Run it reports ErrWatcherStopped.
func TestWatcherReload(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.yaml")
	w := watch(t, path, WatchOptions{PollInterval: time.Hour}, true)
	ctx := context.Background()
	tests := []struct {
		content []byte // nil: no file
		wantErr string
		inUse   []byte
	}{
		{nil, "no such file or directory", nil},
		{commandLatency, "", commandLatency},
		{unknownField, "unknown field", commandLatency},
		{billingStatus, "", billingStatus},
	}
	for i, tc := range tests {
		if tc.content != nil {
			writeFile(t, path, tc.content)
		}
		err := w.watcher.Reload(ctx)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("step %d: Reload() = %v, want nil", i, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("step %d: Reload() = %v, want an error containing %q", i, err, tc.wantErr)
		}
		if want := sha(tc.inUse); tc.inUse != nil && w.inUse() != want || tc.inUse == nil && w.inUse() != "" {
			t.Errorf("step %d: in use %.8s, want %.8s", i, w.inUse(), want)
		}
	}
	w.stop()
	if err := w.watcher.Reload(ctx); !errors.Is(err, ErrWatcherStopped) {
		t.Errorf("Reload() after Run returned = %v, want ErrWatcherStopped", err)
	}
}

// TestWatcherAbsentAtStart: without a file the sidecar's metrics say so,
// and the file is taken as soon as it appears.
func TestWatcherAbsentAtStart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "volume")
	w := watch(t, filepath.Join(dir, "config.yaml"), WatchOptions{PollInterval: time.Hour, Debounce: 50 * time.Millisecond}, false)
	waitFor(t, hangTimeout, "the missing file is reported", func() bool { return w.failures(t) >= 1 })
	for _, m := range []struct {
		name  string
		pairs []string
		want  float64
	}{
		{"kong_metrics_sidecar_config_last_reload_successful", nil, 0},
		{"kong_metrics_sidecar_config_last_reload_success_timestamp_seconds", nil, 0},
		{"kong_metrics_sidecar_config_reloads_total", []string{"result", "success"}, 0},
		{"kong_metrics_sidecar_config_info", []string{"sha256", ""}, 1},
	} {
		if got := w.metric(t, m.name, m.pairs...); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.pairs, got, m.want)
		}
	}
	if rw := w.store.Load().Rewriter; rw == nil || len(rw.Selection().Services) != 0 {
		t.Errorf("without a file the rewriter must select nothing")
	}
	if err := (&kubelet.AtomicWriter{Dir: dir}).Write(map[string][]byte{"config.yaml": commandLatency}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, hangTimeout, "the file is used", func() bool { return w.inUse() == sha(commandLatency) })
	if got := w.metric(t, "kong_metrics_sidecar_config_last_reload_successful"); got != 1 {
		t.Errorf("config_last_reload_successful = %v, want 1", got)
	}
}

// TestKubeletStepByStep stops the kubelet between each step of an update
// and checks that the configuration in use is always a whole file: the old
// one until the ..data rename, the new one right after it, through the
// rename's event alone (there is no poll).
func TestKubeletStepByStep(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	v := kubeletVolume(dir)
	v.write(t, commandLatency)
	w := watch(t, v.path, WatchOptions{PollInterval: time.Hour, Debounce: 10 * time.Millisecond}, false)
	waitFor(t, hangTimeout, "the file at start is used", func() bool { return w.inUse() == sha(commandLatency) })
	var seen []kubelet.Step
	aw := &kubelet.AtomicWriter{Dir: dir, OnStep: func(s kubelet.Step) {
		seen = append(seen, s)
		want := commandLatency
		if s >= kubelet.StepRenameData {
			want = billingStatus
			waitFor(t, hangTimeout, "the new file is used after "+s.String(), func() bool { return w.inUse() == sha(want) })
		} else {
			// Give the watcher time to see anything it could.
			time.Sleep(100 * time.Millisecond)
		}
		if got := w.inUse(); got != sha(want) {
			t.Errorf("after %s: in use %.8s, want %.8s", s, got, sha(want))
		}
	}}
	if err := aw.Write(map[string][]byte{"config.yaml": billingStatus}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 6 {
		t.Errorf("steps %v, want all six", seen)
	}
	if got := w.failures(t); got != 0 {
		t.Errorf("%v failed reloads during a kubelet update, want 0", got)
	}
}

// TestReloadUnderScrapes swaps the file hundreds of times, as the kubelet
// does, between files that select different Services, while scrapes run
// through the HTTP handler without pause: every answer must be exactly one
// configuration's rewrite of Kong's page, no scrape may fail, and neither
// goroutines nor open files may grow.
func TestReloadUnderScrapes(t *testing.T) {
	const swaps, scrapers = 300, 4
	page := kongsim.Sample()
	versions := [][]byte{commandLatency, billingStatus, bothBandwidth}
	expected := make([][]byte, len(versions))
	for i, v := range versions {
		ext, err := ParseExtension(v)
		if err != nil {
			t.Fatal(err)
		}
		expected[i] = rewritePage(relabel.New(ext.Selection), page)
		if len(expected[i]) == 0 {
			t.Fatalf("version %d keeps nothing of Kong's page", i)
		}
	}
	for i := range expected {
		for j := range expected {
			if i != j && bytes.HasPrefix(expected[i], expected[j]) {
				t.Fatalf("version %d's page starts with version %d's: answers could not be told apart", i, j)
			}
		}
	}
	goroutines0, files0 := runtime.NumGoroutine(), openFiles(t)

	kong := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		w.Write(page)
	}))
	dir := t.TempDir()
	v := kubeletVolume(dir)
	v.write(t, versions[0])
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.DiscardHandler)
	store := NewStore(v.path, StoreOptions{}, reg, logger)
	watcher := NewWatcher(store, WatchOptions{PollInterval: 50 * time.Millisecond, Debounce: 5 * time.Millisecond, Logger: logger})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { defer close(runDone); watcher.Run(ctx) }()
	upstreamTransport := &http.Transport{DisableCompression: true}
	handler := proxy.NewHandler(proxy.Options{
		UpstreamURL:      kong.URL + "/metrics",
		Client:           &http.Client{Transport: upstreamTransport},
		Timeout:          10 * time.Second,
		MaxUpstreamBytes: 64 << 20,
		Rewriter:         func() *relabel.Rewriter { return store.Load().Rewriter },
		Registry:         reg,
		Logger:           logger,
	})
	sidecar := httptest.NewServer(proxy.NewMux(handler))
	scrapeTransport := &http.Transport{}
	client := &http.Client{Transport: scrapeTransport, Timeout: 10 * time.Second}
	if err := watcher.Reload(ctx); err != nil {
		t.Fatal(err)
	}

	var (
		answers  [3]atomic.Int64
		failures atomic.Int64
		mu       sync.Mutex
		firstBad string
	)
	bad := func(format string, args ...any) {
		failures.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if firstBad == "" {
			firstBad = fmt.Sprintf(format, args...)
		}
	}
	scrape := func() {
		resp, err := client.Get(sidecar.URL + "/metrics")
		if err != nil {
			bad("scrape: %v", err)
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			bad("scrape: HTTP %s, %v", resp.Status, err)
			return
		}
		match := -1
		for i, exp := range expected {
			if bytes.HasPrefix(body, exp) {
				match = i
			}
		}
		if match < 0 {
			bad("an answer is no configuration's page:\n%.2000s", body)
			return
		}
		// After Kong's part only the sidecar's own metrics may follow.
		for line := range strings.Lines(string(body[len(expected[match]):])) {
			if !strings.Contains(line, "kong_metrics_sidecar_") {
				bad("an answer mixes configurations: after version %d's page comes %q", match, line)
				return
			}
		}
		answers[match].Add(1)
	}
	// run scrapes without pause while swapping the file n times.
	settles := 0
	run := func(n int) {
		scrapeCtx, stopScrapes := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range scrapers {
			wg.Go(func() {
				for scrapeCtx.Err() == nil {
					scrape()
				}
			})
		}
		for i := range n {
			content, invalid := versions[i%len(versions)], i%7 == 6
			if invalid {
				content = syntaxError // never used, never in an answer
			}
			v.write(t, content)
			if i%2 == 1 && !invalid {
				// Let every other change settle, so that many are used.
				settles++
				waitFor(t, 10*time.Second, "a change is used", func() bool { return inUse(store) == sha(content) })
			} else {
				time.Sleep(time.Millisecond)
			}
		}
		stopScrapes()
		wg.Wait()
		scrapeTransport.CloseIdleConnections()
		upstreamTransport.CloseIdleConnections()
	}

	run(30) // warm up: connections, pools and the watcher's watches exist
	goroutines1, files1 := settled(t, goroutines0+10, files0+10)
	successes1, _ := gathered(t, reg, "kong_metrics_sidecar_config_reloads_total", "result", "success")
	settles = 0
	run(swaps)
	successes2, _ := gathered(t, reg, "kong_metrics_sidecar_config_reloads_total", "result", "success")
	goroutines2, files2 := settled(t, goroutines1, files1)
	t.Logf("answers by version %d %d %d; %v reloads; goroutines %d → %d → %d; open files %d → %d → %d",
		answers[0].Load(), answers[1].Load(), answers[2].Load(), successes2, goroutines0, goroutines1, goroutines2, files0, files1, files2)
	if n := failures.Load(); n > 0 {
		t.Errorf("%d bad scrapes; the first: %s", n, firstBad)
	}
	if got := successes2 - successes1; got < float64(settles) {
		t.Errorf("%v reloads during %d swaps, want at least the %d that were waited for", got, swaps, settles)
	}
	for i := range answers {
		if answers[i].Load() == 0 {
			t.Errorf("no answer with version %d", i)
		}
	}
	if goroutines2 > goroutines1 || files2 > files1 {
		t.Errorf("after %d swaps: goroutines %d → %d, open files %d → %d; want no growth", swaps, goroutines1, goroutines2, files1, files2)
	}

	// Stopping everything gives back every goroutine and file.
	cancel()
	<-runDone
	sidecar.Close()
	kong.Close()
	if g, f := settled(t, goroutines0, files0); g > goroutines0 || f > files0 {
		t.Errorf("after stopping: goroutines %d → %d, open files %d → %d", goroutines0, g, files0, f)
	}
}

// rewritePage is what the handler serves of Kong's page under rw.
func rewritePage(rw *relabel.Rewriter, page []byte) []byte {
	p := rw.NewPage()
	var out []byte
	for line := range bytes.Lines(page) {
		out = p.AppendLine(out, bytes.TrimSuffix(line, []byte("\n")))
	}
	return out
}

// settled waits, for a while, until the goroutines and open files are at
// most the given numbers, and returns them.
func settled(t *testing.T, goroutines, files int) (int, int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g, f := runtime.NumGoroutine(), openFiles(t)
		if g <= goroutines && f <= files || time.Now().After(deadline) {
			return g, f
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// openFiles counts the process's open file descriptors, or returns 0 where
// /proc/self/fd does not exist.
func openFiles(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(entries)
}

// TestMountPoints: a subPath mount shows as a mount point of the file
// itself in /proc/self/mountinfo.
func TestMountPoints(t *testing.T) {
	const mountinfo = `22 27 0:21 / /proc rw,relatime - proc proc rw
1510 1490 259:1 /var/lib/kubelet/pods/0d1f/volume-subpaths/extension/sidecar/0 /etc/kong-metrics-sidecar/config.yaml ro,relatime - ext4 /dev/nvme0n1p1 rw
1511 1490 259:1 /x /etc/with\040space\134dir ro - ext4 /dev/nvme0n1p1 rw
short line
`
	got := mountPoints(strings.NewReader(mountinfo))
	want := []string{"/proc", "/etc/kong-metrics-sidecar/config.yaml", `/etc/with space\dir`}
	if !slices.Equal(got, want) {
		t.Errorf("mountPoints = %q, want %q", got, want)
	}
	if _, err := os.Stat("/proc/self/mountinfo"); err == nil {
		if !isMountPoint("/proc") {
			t.Errorf("isMountPoint(/proc) = false")
		}
		if isMountPoint(t.TempDir()) {
			t.Errorf("isMountPoint(a temporary directory) = true")
		}
	}
}

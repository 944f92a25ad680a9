package config

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/filewatch"
)

// Defaults for WatchOptions.
const (
	DefaultPollInterval = filewatch.DefaultPollInterval
	DefaultDebounce     = filewatch.DefaultDebounce
)

// ErrWatcherStopped is returned by Watcher.Reload once Run has returned.
var ErrWatcherStopped = errors.New("extension file watcher stopped")

// WatchOptions configure a Watcher.
type WatchOptions struct {
	// PollInterval is how often the file is re-read whatever the file
	// events say, as a fallback for events that never come; 0 means
	// DefaultPollInterval.
	PollInterval time.Duration
	// Debounce is how long the file's directory must stay quiet after an
	// event before the file is read, and how long its content must then
	// stay the same before it is used; 0 means DefaultDebounce.
	Debounce time.Duration
	// Logger logs watch problems; nil discards them. The Store logs the
	// reloads themselves.
	Logger *slog.Logger

	noEvents bool // for tests: behave as if the file system sent no events
}

// Watcher keeps a Store in step with its extension file, which it follows
// with a filewatch.Watcher: a directory watch that sees the kubelet's
// ..data swap, editors' renames and in-place writes, symlinks into other
// directories and a directory missing at start, with a poll as fallback.
// One goroutine, Run, does every reload, whether a file event, the poll or
// Reload asked for it, so reloads never race one another. Reload may be
// called from any goroutine.
//
// A ConfigMap mounted with subPath is a bind mount of one file that the
// kubelet never updates: no watch or poll can see a change, and only a
// restart of the container takes it. Mount the whole volume instead; Run
// logs a warning when the file is a mount point of its own.
//
// Content is used only once two reads at least Debounce apart return the
// same bytes (the settle check), so a file caught half written is not
// taken even when it happens to be valid YAML. Content already handed to
// the Store is not handed again, so the poll neither reloads nor counts an
// unchanged file. Anything above the file's directory that is swapped as a
// symlink is seen by the poll only.
type Watcher struct {
	path   string // the file, absolute
	logger *slog.Logger
	fw     *filewatch.Watcher
}

// NewWatcher returns a Watcher for store's file. Nothing happens until Run.
func NewWatcher(store *Store, opts WatchOptions) *Watcher {
	path := store.Path()
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	w := &Watcher{path: filepath.Clean(path), logger: opts.Logger}
	if w.logger == nil {
		w.logger = slog.New(slog.DiscardHandler)
	}
	paths := []string{w.path}
	if routes := store.RoutesPath(); routes != "" {
		if abs, err := filepath.Abs(routes); err == nil {
			routes = abs
		}
		paths = append(paths, filepath.Clean(routes))
	}
	w.fw = filewatch.New(filewatch.Options{
		Paths:        paths,
		PollInterval: opts.PollInterval,
		Debounce:     opts.Debounce,
		What:         "extension file",
		Logger:       w.logger,
		NoEvents:     opts.noEvents,
	}, func(c filewatch.Content) error {
		var routes *filewatch.File
		if len(c.Files) > 1 {
			routes = &c.Files[1]
		}
		return store.deliver(c.Files[0], routes) // the Store logs and counts the outcome
	})
	return w
}

// Reload makes Run re-read the file now, without the settle check, and
// returns the Store's verdict: nil when the content in use is the file's,
// the reason it was rejected otherwise. It is meant for SIGHUP. It waits
// for Run to take the request, and returns ErrWatcherStopped once Run has
// returned.
func (w *Watcher) Reload(ctx context.Context) error {
	err := w.fw.Reload(ctx)
	if errors.Is(err, filewatch.ErrStopped) {
		return ErrWatcherStopped
	}
	return err
}

// Run follows the file until ctx is done. It must be called once. It reads
// the file at once, so a change made before Run started is not missed. It
// does not fail: without file events (such as when the inotify limits are
// reached) it logs a warning and relies on the poll alone.
func (w *Watcher) Run(ctx context.Context) {
	if isMountPoint(w.path) {
		w.logger.Warn("the extension file is a mount of its own, such as a ConfigMap volume mounted with subPath: "+
			"the kubelet never updates it, so changes arrive only with a container restart; mount the volume's directory instead",
			"path", w.path)
	}
	w.fw.Run(ctx)
}

// isMountPoint reports whether path is itself mounted, as a subPath mount
// of a ConfigMap key is, according to /proc/self/mountinfo (Linux only;
// false elsewhere).
func isMountPoint(path string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	return slices.Contains(mountPoints(f), path)
}

// mountPoints lists the mount points of a mountinfo file (proc(5)): the
// fifth field of each line, with its octal escapes undone.
func mountPoints(r io.Reader) []string {
	var points []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		points = append(points, unescapeOctal(fields[4]))
	}
	return points
}

// unescapeOctal undoes the kernel's \ooo escapes of space, tab, newline and
// backslash in mountinfo paths.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }

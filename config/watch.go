package config

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Defaults for WatchOptions.
const (
	DefaultPollInterval = 30 * time.Second
	DefaultDebounce     = 150 * time.Millisecond
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
}

// Watcher keeps a Store in step with its extension file. One goroutine,
// Run, does every reload, whether a file event, the poll or Reload asked
// for it, so reloads never race one another. Reload may be called from any
// goroutine.
//
// It watches the file's directory, not the file, so it follows every way
// the file is replaced:
//   - a ConfigMap volume, where the kubelet writes a new ..<timestamp>
//     directory, points ..data_tmp at it and renames that over ..data (the
//     file itself is the symlink config.yaml -> ..data/config.yaml, so a
//     watch on it would follow the symlink to a file the kubelet never
//     writes again, only deletes);
//   - an editor's write to a temporary file renamed over the file, a
//     remove then create, or a truncate then write in place;
//   - a symlink to a file in another directory, whose directory is watched
//     too;
//   - the file, or its directory, missing at start: the nearest existing
//     ancestor is watched until the directory appears.
//
// A ConfigMap mounted with subPath is a bind mount of one file that the
// kubelet never updates: no watch or poll can see a change, and only a
// restart of the container takes it. Mount the whole volume instead; Run
// logs a warning when the file is a mount point of its own.
//
// Bursts of events are debounced, and content is used only once two reads
// at least Debounce apart return the same bytes (the settle check), so a
// file caught half written is not taken even when it happens to be valid
// YAML. Content already handed to the Store is not handed again, so the
// poll neither reloads nor counts an unchanged file. Anything above the
// file's directory that is swapped as a symlink is seen by the poll only.
type Watcher struct {
	store    *Store
	path     string // the file, absolute
	dir      string // its directory
	poll     time.Duration
	debounce time.Duration
	logger   *slog.Logger

	reqs    chan chan error // forced reloads; Run replies on the inner channel
	stopped chan struct{}   // closed when Run returns

	noEvents bool // for tests: behave as if the file system sent no events
}

// NewWatcher returns a Watcher for store's file. Nothing happens until Run.
func NewWatcher(store *Store, opts WatchOptions) *Watcher {
	path := store.Path()
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	w := &Watcher{
		store:    store,
		path:     filepath.Clean(path),
		poll:     opts.PollInterval,
		debounce: opts.Debounce,
		logger:   opts.Logger,
		reqs:     make(chan chan error),
		stopped:  make(chan struct{}),
	}
	w.dir = filepath.Dir(w.path)
	if w.poll <= 0 {
		w.poll = DefaultPollInterval
	}
	if w.debounce <= 0 {
		w.debounce = DefaultDebounce
	}
	if w.logger == nil {
		w.logger = slog.New(slog.DiscardHandler)
	}
	return w
}

// Reload makes Run re-read the file now, without the settle check, and
// returns the Store's verdict: nil when the content in use is the file's,
// the reason it was rejected otherwise. It is meant for SIGHUP. It waits
// for Run to take the request, and returns ErrWatcherStopped once Run has
// returned.
func (w *Watcher) Reload(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case w.reqs <- reply:
	case <-w.stopped:
		return ErrWatcherStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run follows the file until ctx is done. It must be called once. It reads
// the file at once, so a change made before Run started is not missed. It
// does not fail: without file events (such as when the inotify limits are
// reached) it logs a warning and relies on the poll alone.
func (w *Watcher) Run(ctx context.Context) {
	defer close(w.stopped)
	l := &watchLoop{Watcher: w, timer: time.NewTimer(time.Hour)}
	l.timer.Stop()
	defer l.timer.Stop()

	var events <-chan fsnotify.Event
	var errs <-chan error
	if !w.noEvents {
		fsw, err := fsnotify.NewWatcher()
		if err != nil {
			w.logger.Warn("file events are unavailable: the extension file is re-read every poll interval only",
				"path", w.path, "poll_interval", w.poll, "err", err)
		} else {
			defer fsw.Close()
			l.fsw, events, errs = fsw, fsw.Events, fsw.Errors
		}
	}
	ticker := time.NewTicker(w.poll)
	defer ticker.Stop()

	if isMountPoint(w.path) {
		w.logger.Warn("the extension file is a mount of its own, such as a ConfigMap volume mounted with subPath: "+
			"the kubelet never updates it, so changes arrive only with a container restart; mount the volume's directory instead",
			"path", w.path)
	}
	// Watch first, then read: a change in between is then seen twice, never
	// missed.
	l.sync()
	l.check(time.Now())
	w.logger.Info("watching the extension file", "path", w.path, "watches", l.watching, "poll_interval", w.poll)
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if l.relevant(ev.Name) {
				w.logger.Debug("extension file event", "event", ev.String())
				l.timer.Reset(w.debounce)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// An overflow lost events; re-read to be safe.
			w.logger.Warn("watching the extension file", "path", w.path, "err", err)
			l.timer.Reset(w.debounce)
		case <-l.timer.C:
			l.sync()
			l.check(time.Now())
		case <-ticker.C:
			l.sync()
			l.check(time.Now())
		case reply := <-w.reqs:
			reply <- l.force()
		}
	}
}

// watchLoop is Run's state; only Run's goroutine touches it.
type watchLoop struct {
	*Watcher
	fsw   *fsnotify.Watcher // nil without file events
	timer *time.Timer       // debounce and settle

	watching []string // the directories sync wants watched
	real     string   // the file's resolved path at the last sync; "" if it did not resolve
	watchErr string   // the last watch error logged, to log each once

	last      string    // key of the last read
	lastSince time.Time // when the last read first returned last
	applied   string    // key of the last read handed to the Store
}

// check reads the file and hands it to the Store once it has settled: the
// same bytes (or the same error) for at least a debounce.
func (l *watchLoop) check(now time.Time) {
	data, err := os.ReadFile(l.path)
	key := contentKey(data, err)
	if key != l.last {
		if l.last != "" {
			l.logger.Debug("extension file changed; waiting for it to settle", "path", l.path, "settle", l.debounce)
		}
		l.last, l.lastSince = key, now
		l.timer.Reset(l.debounce)
		return
	}
	if wait := l.debounce - now.Sub(l.lastSince); wait > 0 {
		l.timer.Reset(wait)
		return
	}
	if key == l.applied {
		return
	}
	l.applied = key
	_ = l.store.ReloadData(data, err) // the Store logs and counts the outcome
}

// force reads the file and hands it to the Store at once.
func (l *watchLoop) force() error {
	data, err := os.ReadFile(l.path)
	key := contentKey(data, err)
	l.last, l.lastSince, l.applied = key, time.Now(), key
	return l.store.ReloadData(data, err)
}

// contentKey identifies what a read returned: the content's hash, or the error.
func contentKey(data []byte, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// sync points the watches at the file's directory (or, while it is missing,
// its nearest existing ancestor) and at the directory of the file a symlink
// leads to, and forgets the file's old resolution.
func (l *watchLoop) sync() {
	l.real = ""
	if real, err := filepath.EvalSymlinks(l.path); err == nil {
		l.real = real
	}
	want := []string{nearestDir(l.dir)}
	if want[0] == l.dir && l.real != "" {
		// The file is a symlink into another directory, whose in-place
		// writes the file's own directory does not see. The kubelet's
		// ..<timestamp> directories are left out: it never writes into
		// them after the ..data swap, which the directory watch sees.
		realDir, dir := filepath.Dir(l.real), l.dir
		if d, err := filepath.EvalSymlinks(l.dir); err == nil {
			dir = d
		}
		kubelet := filepath.Dir(realDir) == dir && strings.HasPrefix(filepath.Base(realDir), "..")
		if realDir != dir && !kubelet {
			want = append(want, realDir)
		}
	}
	l.watching = want
	if l.fsw == nil {
		return
	}
	have := l.fsw.WatchList()
	for _, p := range have {
		if !slices.Contains(want, p) {
			_ = l.fsw.Remove(p) // fails only when the watch is already gone
		}
	}
	for _, p := range want {
		if slices.Contains(have, p) {
			continue
		}
		if err := l.fsw.Add(p); err != nil {
			// Such as the inotify watch limit; the poll still covers it.
			if msg := err.Error(); msg != l.watchErr {
				l.watchErr = msg
				l.logger.Warn("cannot watch the extension file's directory; relying on the poll",
					"path", p, "poll_interval", l.poll, "err", err)
			}
			continue
		}
		l.logger.Debug("watching", "path", p)
	}
}

// relevant reports whether an event on name may change what reading the
// file returns: the file itself, the file its symlink leads to, a directory
// on the way to either (created, removed or renamed), or one of the
// kubelet's ..data, ..data_tmp and ..<timestamp> entries beside the file.
func (l *watchLoop) relevant(name string) bool {
	switch {
	case name == l.path, name == l.real:
		return true
	case isAncestor(name, l.path), l.real != "" && isAncestor(name, l.real):
		return true
	case filepath.Dir(name) == l.dir && strings.HasPrefix(filepath.Base(name), ".."):
		return true
	}
	return false
}

// isAncestor reports whether dir is a proper ancestor of path.
func isAncestor(dir, path string) bool {
	return strings.HasPrefix(path, strings.TrimSuffix(dir, string(filepath.Separator))+string(filepath.Separator))
}

// nearestDir returns dir, or its nearest ancestor that exists when it does not.
func nearestDir(dir string) string {
	for {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
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

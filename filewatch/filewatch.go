// Package filewatch follows files on disk and hands their content to its
// user once it has settled. It is the one way the project follows a file:
// the sidecar's extension file, the injector's serving certificate and the
// Admin API's CA and client certificate.
//
// A Watcher watches the files' directories, not the files, so it follows
// every way a file is replaced:
//   - a Kubernetes ConfigMap or Secret volume, where the kubelet writes a
//     new ..<timestamp> directory, points ..data_tmp at it and renames that
//     over ..data (the file itself is a symlink into ..data, so a watch on
//     it would follow the symlink to a file the kubelet never writes again,
//     only deletes);
//   - an editor's write to a temporary file renamed over the file, a remove
//     then create, or a truncate then write in place;
//   - a symlink to a file in another directory, whose directory is watched
//     too;
//   - a file, or its directory, missing at start: the nearest existing
//     ancestor is watched until the directory appears.
//
// A poll re-reads the files whatever the events say, for events that never
// come (the inotify limits reached, a directory symlink swapped above the
// file). Bursts of events are debounced, and content is handed over only
// once two reads at least a debounce apart return the same bytes (the
// settle check), so a file caught half written is not taken even when it
// happens to parse. Each read is hashed once, and content already handed
// over is not handed again.
package filewatch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Defaults for Options.
const (
	DefaultPollInterval = 30 * time.Second
	DefaultDebounce     = 150 * time.Millisecond
)

// ErrStopped is returned by Watcher.Reload once Run has returned.
var ErrStopped = errors.New("file watcher stopped")

// Options configure a Watcher.
type Options struct {
	// Paths are the files followed, together: each delivery holds all of
	// them, in this order. At least one is required.
	Paths []string
	// PollInterval is how often the files are re-read whatever the file
	// events say; 0 means DefaultPollInterval.
	PollInterval time.Duration
	// Debounce is how long the directories must stay quiet after an event
	// before the files are read, and how long their content must then stay
	// the same before it is delivered; 0 means DefaultDebounce.
	Debounce time.Duration
	// What names the files in log messages, such as "extension file";
	// empty means "file".
	What string
	// Logger logs watch problems; nil discards them. The user logs what it
	// makes of the content.
	Logger *slog.Logger
	// NoEvents makes the Watcher rely on the poll alone, as it does when
	// the file system gives no events.
	NoEvents bool
}

// File is what one read of one file returned.
type File struct {
	// Path is the file's path as given in Options.Paths.
	Path string
	// Data is the file's content; nil when Err is set.
	Data []byte
	// Sum is the SHA-256 of Data; zero when Err is set.
	Sum [sha256.Size]byte
	// Err is why the file could not be read.
	Err error
}

// Key identifies what the read returned: the content's hash, or the error.
func (f File) Key() string {
	if f.Err != nil {
		return "error: " + f.Err.Error()
	}
	return hex.EncodeToString(f.Sum[:])
}

// Content is one read of every followed file.
type Content struct {
	// Files holds one File per path, in the order of Options.Paths.
	Files []File
	key   string
}

// Key identifies the content: two reads have the same Key exactly when they
// returned the same bytes (or the same errors) for every file.
func (c Content) Key() string { return c.key }

// Err joins the files' read errors; nil when every file was read.
func (c Content) Err() error {
	var errs []error
	for _, f := range c.Files {
		errs = append(errs, f.Err)
	}
	return errors.Join(errs...)
}

// MaxFileBytes bounds a file that filewatch reads: a Kubernetes ConfigMap
// or Secret holds at most 1 MiB, and the extension file's decoding takes
// some thirty times its size in memory, so a larger file is refused rather
// than read.
const MaxFileBytes = 1 << 20

// ReadFile reads the file at path, which must be a regular file (after
// symlinks) of at most MaxFileBytes. Opening it never blocks: a FIFO, a
// device such as /dev/zero or a directory is refused without a read.
func ReadFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	if fi.Size() > MaxFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes (%d)", path, MaxFileBytes, fi.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, MaxFileBytes) // it grew as it was read
	}
	return data, nil
}

// Read reads each of paths once (with ReadFile), hashing what it read once, as a Watcher
// does. Users call it for a first load that must not wait for Run.
func Read(paths ...string) Content {
	c := Content{Files: make([]File, len(paths))}
	for i, p := range paths {
		f := File{Path: p}
		f.Data, f.Err = ReadFile(p)
		if f.Err != nil {
			f.Data = nil
		} else {
			f.Sum = sha256.Sum256(f.Data)
		}
		c.Files[i] = f
	}
	var key strings.Builder
	for _, f := range c.Files {
		key.WriteString(f.Key())
		key.WriteByte(0)
	}
	c.key = key.String()
	return c
}

// Watcher follows files and delivers their settled content. One goroutine,
// Run, reads and delivers, whether a file event, the poll or Reload asked
// for it, so deliveries never race one another. Reload may be called from
// any goroutine.
type Watcher struct {
	paths    []string // as given, for Read
	files    []string // the same, absolute and clean
	poll     time.Duration
	debounce time.Duration
	what     string
	logger   *slog.Logger
	noEvents bool
	deliver  func(Content) error

	reqs    chan chan error // forced reloads; Run replies on the inner channel
	stopped chan struct{}   // closed when Run returns
}

// New returns a Watcher that calls deliver, from Run's goroutine, with each
// settled content that differs from the last one delivered. deliver's error
// is returned by Reload; Run ignores it (deliver logs and counts what it
// rejects). deliver may keep the Content and its Data: each read allocates
// anew. Nothing happens until Run.
func New(opts Options, deliver func(Content) error) *Watcher {
	w := &Watcher{
		paths:    slices.Clone(opts.Paths),
		poll:     opts.PollInterval,
		debounce: opts.Debounce,
		what:     opts.What,
		logger:   opts.Logger,
		noEvents: opts.NoEvents,
		deliver:  deliver,
		reqs:     make(chan chan error),
		stopped:  make(chan struct{}),
	}
	for _, p := range opts.Paths {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		w.files = append(w.files, filepath.Clean(p))
	}
	if w.poll <= 0 {
		w.poll = DefaultPollInterval
	}
	if w.debounce <= 0 {
		w.debounce = DefaultDebounce
	}
	if w.what == "" {
		w.what = "file"
	}
	if w.logger == nil {
		w.logger = slog.New(slog.DiscardHandler)
	}
	return w
}

// Reload makes Run read the files now and deliver them at once, without the
// settle check, and returns deliver's error. It is meant for SIGHUP. It
// waits for Run to take the request, and returns ErrStopped once Run has
// returned.
func (w *Watcher) Reload(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case w.reqs <- reply:
	case <-w.stopped:
		return ErrStopped
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

// Run follows the files until ctx is done. It must be called once. It reads
// the files at once, so a change made before Run started is not missed. It
// does not fail: without file events (such as when the inotify limits are
// reached) it logs a warning and relies on the poll alone.
func (w *Watcher) Run(ctx context.Context) {
	defer close(w.stopped)
	l := &loop{Watcher: w, timer: newStoppedTimer()}
	defer l.timer.Stop()

	var events <-chan fsnotify.Event
	var errs <-chan error
	if !w.noEvents {
		fsw, err := fsnotify.NewWatcher()
		if err != nil {
			w.logger.Warn("file events are unavailable: the "+w.what+" is re-read every poll interval only",
				"paths", w.files, "poll_interval", w.poll, "err", err)
		} else {
			defer func() { _ = fsw.Close() }() // nothing to do about a failed close on the way out
			l.fsw, events, errs = fsw, fsw.Events, fsw.Errors
		}
	}
	ticker := time.NewTicker(w.poll)
	defer ticker.Stop()

	// Watch first, then read: a change in between is then seen twice, never
	// missed.
	l.sync()
	l.check(time.Now())
	w.logger.Info("watching the "+w.what, "paths", w.files, "watches", l.watching, "poll_interval", w.poll)
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
				w.logger.Debug(w.what+" event", "event", ev.String())
				l.timer.Reset(w.debounce)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// An overflow lost events; re-read to be safe.
			w.logger.Warn("watching the "+w.what, "paths", w.files, "err", err)
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

// loop is Run's state; only Run's goroutine touches it.
type loop struct {
	*Watcher
	fsw   *fsnotify.Watcher // nil without file events
	timer *time.Timer       // debounce and settle

	watching []string // the directories sync wants watched
	real     []string // each file's resolved path at the last sync; "" if it did not resolve
	watchErr string   // the last watch error logged, to log each once

	last      string    // key of the last read
	lastSince time.Time // when the last read first returned last
	applied   string    // key of the last content delivered
}

// newStoppedTimer returns a stopped timer for the loop to Reset. Since Go
// 1.23 no value from before a Reset or Stop is received after it.
func newStoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// check reads the files and delivers them once they have settled: the same
// bytes (or the same errors) for at least a debounce.
func (l *loop) check(now time.Time) {
	c := Read(l.paths...)
	key := c.Key()
	if key != l.last {
		if l.last != "" {
			l.logger.Debug(l.what+" changed; waiting for it to settle", "paths", l.files, "settle", l.debounce)
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
	_ = l.deliver(c) // the user logs and counts the outcome
}

// force reads the files and delivers them at once.
func (l *loop) force() error {
	c := Read(l.paths...)
	key := c.Key()
	l.last, l.lastSince, l.applied = key, time.Now(), key
	return l.deliver(c)
}

// sync points the watches at each file's directory (or, while it is
// missing, its nearest existing ancestor) and at the directory of the file
// a symlink leads to, and forgets the files' old resolutions.
func (l *loop) sync() {
	l.real = make([]string, len(l.files))
	var want []string
	add := func(dir string) {
		if !slices.Contains(want, dir) {
			want = append(want, dir)
		}
	}
	for i, file := range l.files {
		if real, err := filepath.EvalSymlinks(file); err == nil {
			l.real[i] = real
		}
		dir := filepath.Dir(file)
		near := nearestDir(dir)
		add(near)
		if near != dir || l.real[i] == "" {
			continue
		}
		// The file is a symlink into another directory, whose in-place
		// writes the file's own directory does not see. The kubelet's
		// ..<timestamp> directories are left out: it never writes into
		// them after the ..data swap, which the directory watch sees.
		realDir := filepath.Dir(l.real[i])
		if d, err := filepath.EvalSymlinks(dir); err == nil {
			dir = d
		}
		kubelet := filepath.Dir(realDir) == dir && strings.HasPrefix(filepath.Base(realDir), "..")
		if realDir != dir && !kubelet {
			add(realDir)
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
				l.logger.Warn("cannot watch the "+l.what+"'s directory; relying on the poll",
					"path", p, "poll_interval", l.poll, "err", err)
			}
			continue
		}
		l.logger.Debug("watching", "path", p)
	}
}

// relevant reports whether an event on name may change what reading a file
// returns: the file itself, the file its symlink leads to, a directory on
// the way to either (created, removed or renamed), or one of the kubelet's
// ..data, ..data_tmp and ..<timestamp> entries beside the file.
func (l *loop) relevant(name string) bool {
	for i, file := range l.files {
		real := l.real[i]
		switch {
		case name == file, real != "" && name == real:
			return true
		case isAncestor(name, file), real != "" && isAncestor(name, real):
			return true
		case filepath.Dir(name) == filepath.Dir(file) && strings.HasPrefix(filepath.Base(name), ".."):
			return true
		}
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

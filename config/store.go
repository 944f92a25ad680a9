package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/filewatch"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/lastgood"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// Snapshot is one validated configuration. Scrapes take one snapshot and use
// only it, so a reload never mixes two configurations in one response.
type Snapshot struct {
	// Rewriter rewrites pages for this configuration's selection.
	Rewriter *relabel.Rewriter
	// Extension is the file it came from; nil before a valid file was read.
	Extension *Extension
	// Routes is the route mapping in use (StoreOptions.RoutesFile); nil
	// before one was read.
	Routes *Extension
}

// StoreOptions are a Store's optional parts.
type StoreOptions struct {
	// RoutesFile is the route mapping the injector publishes: a
	// KongServiceMapping document, gzip-compressed or not. Its mappings
	// apply below the extension file's own. A missing file is no mapping,
	// not an error; "" means none is followed.
	RoutesFile string
	// OnUnresolved is the Selection's OnUnresolved for every Rewriter the
	// Store makes.
	OnUnresolved func(name string)
}

// Store holds the configuration in use and swaps it atomically when the
// extension file changes to valid content. It is safe for concurrent use.
type Store struct {
	path   string
	opts   StoreOptions
	logger *slog.Logger
	routes *routeState

	current atomic.Pointer[Snapshot]

	mu  sync.Mutex                  // Serializes Reload.
	ext lastgood.Keeper[*Extension] // the extension file: the last good one, each bad content reported once

	lastSuccessful prometheus.Gauge
	lastSuccessTS  prometheus.Gauge
	reloads        *prometheus.CounterVec
	info           *prometheus.GaugeVec
}

// NewStore returns a Store for the extension file at path, starting with an
// empty selection (nothing kept) until Reload reads a valid file. Its
// metrics are registered on reg.
func NewStore(path string, opts StoreOptions, reg prometheus.Registerer, logger *slog.Logger) *Store {
	s := &Store{
		path:   path,
		opts:   opts,
		logger: logger,
		lastSuccessful: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kong_metrics_sidecar_config_last_reload_successful",
			Help: "Whether the last attempt to load the extension file succeeded (1) or failed (0).",
		}),
		lastSuccessTS: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kong_metrics_sidecar_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful load of the extension file.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kong_metrics_sidecar_config_reloads_total",
			Help: "Attempts to load a changed extension file, by result.",
		}, []string{"result"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kong_metrics_sidecar_config_info",
			Help: "The extension file in use: its SHA-256 (empty before a valid file was read).",
		}, []string{"sha256"}),
	}
	s.reloads.WithLabelValues("success")
	s.reloads.WithLabelValues("failure")
	s.info.WithLabelValues("").Set(1)
	reg.MustRegister(s.lastSuccessful, s.lastSuccessTS, s.reloads, s.info)
	if opts.RoutesFile != "" {
		s.routes = newRouteState(reg)
	}
	s.current.Store(&Snapshot{Rewriter: relabel.New(relabel.Selection{OnUnresolved: opts.OnUnresolved})})
	return s
}

// RoutesPath is the route mapping file's path; "" when none is followed.
func (s *Store) RoutesPath() string { return s.opts.RoutesFile }

// Path is the extension file's path.
func (s *Store) Path() string { return s.path }

// Load returns the configuration in use.
func (s *Store) Load() *Snapshot { return s.current.Load() }

// Reload reads the extension file and, when its content changed and is
// valid, makes it the configuration in use. Invalid content keeps the
// configuration in use; its error is returned every time, and logged and
// counted once for as long as the same content is read again in a row.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := filewatch.ReadFile(s.path)
	extErr := s.apply(data, sha256.Sum256(data), err)
	if s.routes == nil {
		return extErr
	}
	data, err = filewatch.ReadFile(s.opts.RoutesFile)
	return errors.Join(extErr, s.applyRoutes(data, sha256.Sum256(data), err))
}

// ReloadData is Reload for content the caller has already read: data and
// readErr are what reading Path returned. The Watcher uses it so that the
// bytes it saw stay the same across its settle check are exactly the bytes
// validated and used.
func (s *Store) ReloadData(data []byte, readErr error) error {
	return s.reloadRead(data, sha256.Sum256(data), readErr)
}

// deliver applies one read of the followed files: the extension file, then
// the route mapping file when one is followed.
func (s *Store) deliver(ext filewatch.File, routes *filewatch.File) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.apply(ext.Data, ext.Sum, ext.Err)
	if routes != nil && s.routes != nil {
		err = errors.Join(err, s.applyRoutes(routes.Data, routes.Sum, routes.Err))
	}
	return err
}

// reloadRead is ReloadData for content already hashed: sum is data's
// SHA-256. The Watcher uses it, so that each read is hashed once.
func (s *Store) reloadRead(data []byte, sum [sha256.Size]byte, readErr error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apply(data, sum, readErr)
}

// apply does Reload's work once the file was read and hashed; s.mu must be
// held.
func (s *Store) apply(data []byte, sum [sha256.Size]byte, err error) error {
	key := hex.EncodeToString(sum[:])
	if err != nil {
		key = "unreadable:" + err.Error()
		err = s.readError(err)
	}
	outcome, err := s.ext.Offer(key, func() (*Extension, error) {
		if err != nil {
			return nil, err
		}
		ext, err := ParseExtension(data)
		if err != nil {
			return nil, fmt.Errorf("extension file %s: %w", s.path, err)
		}
		return ext, nil
	})
	switch outcome {
	case lastgood.Kept:
		s.lastSuccessful.Set(1)
	case lastgood.Repeated:
		s.lastSuccessful.Set(0) // the same bad content again: counted and logged already
	case lastgood.Rejected:
		s.lastSuccessful.Set(0)
		s.reloads.WithLabelValues("failure").Inc()
		if s.Load().Extension == nil {
			s.logger.Error("extension file not loaded; until a valid one is, no Kong series are served, only the sidecar's own metrics", "path", s.path, "err", err)
		} else {
			s.logger.Error("extension file rejected; keeping the configuration in use", "path", s.path, "err", err)
		}
	case lastgood.Loaded:
		ext, _ := s.ext.Get()
		s.loaded(ext, key)
	}
	return err
}

// readError is err, from reading the extension file, with what to do
// about the common cause: a file that is not there.
func (s *Store) readError(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is said once
		}
		return fmt.Errorf("extension file %s: %w; want the file there: mount the ConfigMap that holds config.yaml (DataPlaneMetricsExtension documents) at its directory, or set SIDECAR_CONFIG_FILE to its path", s.path, err)
	}
	return fmt.Errorf("reading extension file: %w", err)
}

// loaded makes ext, from content with the hex SHA-256 hash, the
// configuration in use.
func (s *Store) loaded(ext *Extension, hash string) {
	prev := s.Load().Extension
	s.publish(ext, s.Load().Routes)
	s.lastSuccessful.Set(1)
	s.lastSuccessTS.Set(float64(time.Now().UnixNano()) / 1e9)
	s.reloads.WithLabelValues("success").Inc()
	s.info.Reset()
	s.info.WithLabelValues(hash).Set(1)
	if ext.Documents == 0 {
		s.logger.Warn("extension file has no documents: nothing is selected", "path", s.path)
	}
	for _, w := range ext.Warnings {
		s.logger.Warn("extension file enables nothing for some Services", "path", s.path, "problem", w)
	}
	prevHash := ""
	if prev != nil {
		prevHash = prev.Hash
	}
	s.logger.Info("extension file loaded", "path", s.path, "sha256", hash, "previous_sha256", prevHash,
		"services", len(ext.Selection.Services), "mappings", len(ext.Selection.Mappings))
}

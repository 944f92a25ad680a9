package kongadmin

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// Lister reads every Kong service's tags; *Client is one.
type Lister interface {
	Services(ctx context.Context) (map[string]relabel.Tag, error)
}

// Mapping is what the Admin API said the last time it was read. It is
// immutable: a refresh that changes anything publishes a new Mapping with
// a higher Version.
type Mapping struct {
	Version uint64
	Tags    map[string]relabel.Tag // by Kong service name; never nil
}

// Options configure a Refresher.
type Options struct {
	// Interval is the time between two refreshes (default 30s).
	Interval time.Duration
	// MinInterval is the least time between the starts of two refreshes
	// that Nudge asks for (default 5s).
	MinInterval time.Duration
	// Timeout bounds one refresh, every page included (default 10s).
	Timeout time.Duration
	// Registry, when not nil, gets the Refresher's self-metrics.
	Registry prometheus.Registerer
	Logger   *slog.Logger
}

// Refresher keeps a Mapping up to date in the background. Mapping, Nudge
// and Rewriter are safe for concurrent use and never wait on the Admin API.
type Refresher struct {
	lister  Lister
	opts    Options
	logger  *slog.Logger
	current atomic.Pointer[Mapping]
	nudge   chan struct{} // capacity 1: nudges while one is pending coalesce

	up          prometheus.Gauge
	lastSuccess prometheus.Gauge
	services    prometheus.Gauge
	errors      *prometheus.CounterVec

	mu       sync.Mutex // Protects the cached rewriter below.
	base     *relabel.Rewriter
	version  uint64
	rewriter *relabel.Rewriter
}

// NewRefresher returns a Refresher reading from l; call Run to start it.
// Until the first successful refresh its Mapping is empty.
func NewRefresher(l Lister, o Options) *Refresher {
	if o.Interval <= 0 {
		o.Interval = 30 * time.Second
	}
	if o.MinInterval <= 0 {
		o.MinInterval = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Refresher{
		lister: l, opts: o, logger: o.Logger, nudge: make(chan struct{}, 1),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kong_metrics_sidecar_admin_api_up",
			Help: "Whether the last read of Kong's Admin API succeeded (1) or failed (0).",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kong_metrics_sidecar_admin_api_last_refresh_success_timestamp_seconds",
			Help: "When Kong's Admin API was last read successfully.",
		}),
		services: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kong_metrics_sidecar_admin_api_services",
			Help: "Kong services known from the last successful read of the Admin API.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kong_metrics_sidecar_admin_api_refresh_errors_total",
			Help: "Failed reads of Kong's Admin API, by kind.",
		}, []string{"kind"}),
	}
	for _, k := range ErrorKinds {
		r.errors.WithLabelValues(k)
	}
	if o.Registry != nil {
		o.Registry.MustRegister(r.up, r.lastSuccess, r.services, r.errors)
	}
	r.current.Store(&Mapping{Tags: map[string]relabel.Tag{}})
	return r
}

// Mapping returns the last Mapping read; it must not be modified.
func (r *Refresher) Mapping() *Mapping { return r.current.Load() }

// Nudge asks for a refresh soon (at most one every MinInterval) without
// waiting for it, such as when a scrape meets a Kong service name the
// Mapping does not hold.
func (r *Refresher) Nudge() {
	select {
	case r.nudge <- struct{}{}:
	default:
	}
}

// Rewriter returns a Rewriter for base's Selection resolving with the
// current Mapping too, and nudging the Refresher on unseen names. It is
// built once per (base, Mapping version) pair, since Rewriters cache
// resolutions.
func (r *Refresher) Rewriter(base *relabel.Rewriter) *relabel.Rewriter {
	m := r.Mapping()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rewriter != nil && r.base == base && r.version == m.Version {
		return r.rewriter
	}
	sel := base.Selection()
	sel.Tags = m.Tags
	sel.OnUnseen = func(string) { r.Nudge() }
	r.base, r.version, r.rewriter = base, m.Version, relabel.New(sel)
	return r.rewriter
}

// Run refreshes at once, then every Interval and on nudges, one refresh at
// a time, until ctx is done. It starts nothing else: a *Client's files are
// followed by its FollowFiles, which the caller runs beside it.
func (r *Refresher) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var lastStart time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-r.nudge:
			if wait := time.Until(lastStart.Add(r.opts.MinInterval)); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		lastStart = time.Now()
		_ = r.Refresh(ctx) // Refresh logs and counts its failures; the next tick tries again
		timer.Reset(r.opts.Interval)
	}
}

// Refresh reads the Admin API once and publishes what it read. Run calls
// it; tests may call it directly. It is not safe to call concurrently with
// itself.
func (r *Refresher) Refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	tags, err := r.lister.Services(ctx)
	if err != nil {
		kind := KindConnect
		var e *Error
		if errors.As(err, &e) {
			kind = e.Kind
		}
		r.up.Set(0)
		r.errors.WithLabelValues(kind).Inc()
		r.logger.Warn("reading Kong's Admin API failed; keeping the last mapping", "kind", kind, "err", err)
		return err
	}
	r.up.Set(1)
	r.lastSuccess.Set(float64(time.Now().UnixNano()) / 1e9)
	r.services.Set(float64(len(tags)))
	old := r.current.Load()
	// An unchanged mapping keeps its version, so Rewriters (and their
	// caches) live on, and names no service has do not nudge again.
	if !maps.Equal(old.Tags, tags) {
		r.current.Store(&Mapping{Version: old.Version + 1, Tags: tags})
		r.logger.Info("Kong services read from the Admin API", "services", len(tags), "version", old.Version+1)
	}
	return nil
}

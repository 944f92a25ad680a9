package inject

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ServerOptions configure a Server. All fields but ShutdownTimeout are
// required.
type ServerOptions struct {
	// ListenAddr is the HTTPS address of /mutate, /healthz and /readyz.
	ListenAddr string
	// MetricsAddr is the plain-HTTP address of /metrics.
	MetricsAddr string
	// Mutate answers /mutate; normally a *Handler.
	Mutate http.Handler
	// GetCertificate gives the serving certificate for each new TLS
	// connection; normally CertReloader.GetCertificate.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Gatherer is what /metrics serves.
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
	// ShutdownTimeout bounds the drain of in-flight requests; 0 means 5s.
	ShutdownTimeout time.Duration
}

// Server serves the webhook over HTTPS and the injector's metrics over
// plain HTTP.
type Server struct {
	opts             ServerOptions
	webhook, metrics *http.Server
	webhookListener  net.Listener
	metricsListener  net.Listener
	ready            atomic.Bool // Set while Run serves, cleared when it starts draining.
}

// NewServer listens on both addresses, so that a busy port is reported
// before anything is served; Run serves.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 5 * time.Second
	}
	s := &Server{opts: opts}
	errorLog := slog.NewLogLogger(opts.Logger.Handler(), slog.LevelInfo) // TLS handshake failures: often a CA bundle that does not match

	mux := http.NewServeMux()
	mux.Handle("/mutate", opts.Mutate)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	s.webhook = &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: opts.GetCertificate,
		},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second, // the API server gives up on a webhook after at most 30s
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          errorLog,
	}

	metricsMux := http.NewServeMux()
	metricsMux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(opts.Logger.Handler(), slog.LevelError)}))
	s.metrics = &http.Server{
		Handler:           metricsMux,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          errorLog,
	}

	var err error
	if s.webhookListener, err = net.Listen("tcp", opts.ListenAddr); err != nil {
		return nil, fmt.Errorf("listening for the webhook: %w", err)
	}
	if s.metricsListener, err = net.Listen("tcp", opts.MetricsAddr); err != nil {
		_ = s.webhookListener.Close()
		return nil, fmt.Errorf("listening for metrics: %w", err)
	}
	return s, nil
}

// Addr is the webhook's address, with the port chosen when ListenAddr
// asked for port 0.
func (s *Server) Addr() net.Addr { return s.webhookListener.Addr() }

// MetricsAddr is the metrics address.
func (s *Server) MetricsAddr() net.Addr { return s.metricsListener.Addr() }

// Run serves until ctx is done, then stops taking connections, reports not
// ready and lets in-flight requests finish within ShutdownTimeout. It
// returns early with an error when either server fails.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- serveErr("webhook", s.webhook.ServeTLS(s.webhookListener, "", "")) }()
	go func() { errc <- serveErr("metrics", s.metrics.Serve(s.metricsListener)) }()
	s.ready.Store(true)
	s.opts.Logger.Info("serving", "webhook", s.Addr().String(), "metrics", s.MetricsAddr().String())

	running := 2
	var err error
	select {
	case <-ctx.Done():
		s.opts.Logger.Info("shutting down", "timeout", s.opts.ShutdownTimeout)
	case err = <-errc:
		running--
	}
	s.ready.Store(false)
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
	defer cancel()
	errs := []error{err}
	for _, srv := range []*http.Server{s.webhook, s.metrics} {
		if e := srv.Shutdown(drainCtx); e != nil {
			errs = append(errs, fmt.Errorf("draining: %w", e))
		}
	}
	for ; running > 0; running-- {
		errs = append(errs, <-errc)
	}
	return errors.Join(errs...)
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}

func serveErr(name string, err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serving %s: %w", name, err)
}

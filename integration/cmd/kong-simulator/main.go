// Command kong-simulator stands in for a Kong 3.9 node with the Prometheus
// plugin, for the project's integration tests, demo and benchmarks. It
// serves Kong's status listener (/metrics, /status, /status/ready) on
// -listen and a proxy listener on -proxy-listen that records the traffic it
// serves, such as the tutorial's GET /command/shell?cmd=sleep%200.1. With
// -admin-listen it also serves an Admin API (GET /services, with the tags
// the Kong Ingress Controller writes), over TLS with -admin-cert and
// -admin-key, requiring a client certificate with -admin-client-ca. With
// -stats-listen it serves its own counters (GET /stats) on a listener of
// their own, so that Kong's listeners answer only as Kong's do.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kongsim"
)

// shutdownTimeout bounds how long in-flight requests may take to finish
// after a signal.
const shutdownTimeout = 5 * time.Second

func main() { os.Exit(run()) }

func run() int {
	fs := flag.NewFlagSet("kong-simulator", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8100", "status listener address (/metrics, /status, /status/ready)")
	proxyListen := fs.String("proxy-listen", "127.0.0.1:8000", "proxy listener address; empty for none")
	services := fs.String("services", "kong/command:80@api.example.com",
		"comma-separated Kong services: fixture, <ns>/<svc>:<port>[@<host>] or httproute/<ns>/<name>/<rule>[=<kong service name>]")
	routes := fs.Int("routes", 0, "also generate N routes with recorded traffic, as on the scale page")
	stream := fs.Bool("stream", false, "append the stream subsystem's families, as Kong does with a stream listener")
	kongLatency := fs.Duration("kong-latency", time.Millisecond, "Kong latency recorded for each proxied request")
	adminListen := fs.String("admin-listen", "", "Admin API listener address (GET /services); empty for none")
	adminCert := fs.String("admin-cert", "", "Admin API serving certificate (PEM); with -admin-key, serve TLS")
	adminKey := fs.String("admin-key", "", "Admin API serving key (PEM)")
	adminClientCA := fs.String("admin-client-ca", "", "CA file (PEM); when set, the Admin API requires a client certificate it signs")
	adminToken := fs.String("admin-token", "", "when set, the Admin API requires it in the Kong-Admin-Token header")
	latencyMetrics := fs.Bool("latency-metrics", true, "the prometheus plugin's latency_metrics: false leaves out the three latency histograms, as Kong does")
	statsListen := fs.String("stats-listen", "", "the simulator's own counters, which Kong does not have (GET /stats: {\"metrics_fetches\":N}); empty for none")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	svcs, err := kongsim.ParseServices(*services)
	if err != nil {
		logger.Error("Invalid -services", "err", err)
		return 2
	}
	if *routes < 0 {
		logger.Error("Invalid -routes", "err", fmt.Sprintf("%d is negative", *routes))
		return 2
	}
	toggles := kongsim.AllToggles
	toggles.Latency = *latencyMetrics
	cfg := kongsim.Config{
		Services:       svcs,
		Toggles:        toggles,
		StreamListener: *stream,
		KongLatency:    *kongLatency,
	}
	sim, err := kongsim.NewPage(cfg, *routes)
	if err != nil {
		logger.Error("Invalid configuration", "err", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	adminTLS, err := adminTLSConfig(*adminCert, *adminKey, *adminClientCA)
	if err != nil {
		logger.Error("Invalid Admin API TLS settings", "err", err)
		return 2
	}
	servers := []struct {
		name, addr string
		handler    http.Handler
		tls        *tls.Config
	}{
		{"status", *listen, sim.StatusHandler(), nil},
		{"proxy", *proxyListen, sim.ProxyHandler(), nil},
		{"admin", *adminListen, sim.AdminHandler(kongsim.AdminOptions{Token: *adminToken}), adminTLS},
		{"stats", *statsListen, sim.StatsHandler(), nil},
	}
	errc := make(chan error, len(servers))
	var started []*http.Server
	for _, s := range servers {
		if s.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			logger.Error("Cannot listen", "listener", s.name, "err", err)
			shutdown(logger, started)
			return 1
		}
		if s.tls != nil {
			ln = tls.NewListener(ln, s.tls)
		}
		srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
		started = append(started, srv)
		logger.Info("Listening", "listener", s.name, "addr", ln.Addr().String())
		go func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s listener: %w", s.name, err)
			}
		}()
	}
	logger.Info("Kong simulator ready", "services", len(sim.Services()), "stream", *stream)

	select {
	case <-ctx.Done():
		// A second signal kills the process with the default action.
		stop()
		logger.Info("Shutting down")
		if !shutdown(logger, started) {
			return 1
		}
		return 0
	case err := <-errc:
		logger.Error("Server failed", "err", err)
		shutdown(logger, started)
		return 1
	}
}

// shutdown drains the servers within shutdownTimeout and reports whether
// they all finished in time.
func shutdown(logger *slog.Logger, servers []*http.Server) bool {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	ok := true
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			logger.Error("Shutdown incomplete", "err", err)
			ok = false
		}
	}
	return ok
}

// adminTLSConfig is the Admin API listener's TLS configuration, nil for
// plain HTTP.
func adminTLSConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		if clientCAFile != "" {
			return nil, errors.New("-admin-client-ca needs -admin-cert and -admin-key")
		}
		return nil, nil
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the Admin API certificate: %w", err)
	}
	var pool *x509.CertPool
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, err
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", clientCAFile)
		}
	}
	return kongsim.AdminTLSConfig(pair, pool), nil
}

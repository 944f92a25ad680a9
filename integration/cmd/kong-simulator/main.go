// Command kong-simulator stands in for a Kong 3.9 node with the Prometheus
// plugin, for the project's integration tests, demo and benchmarks. It
// serves Kong's status listener (/metrics, /status, /status/ready) on
// -listen and a proxy listener on -proxy-listen that records the traffic it
// serves, such as the tutorial's GET /command/shell?cmd=sleep%200.1.
package main

import (
	"context"
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

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/kongsim"
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
		"comma-separated Kong services: fixture, <ns>/<svc>:<port>[@<host>] or httproute/<ns>/<name>/<rule>")
	routes := fs.Int("routes", 0, "also generate N routes with recorded traffic, as on the scale page")
	stream := fs.Bool("stream", false, "append the stream subsystem's families, as Kong does with a stream listener")
	kongLatency := fs.Duration("kong-latency", time.Millisecond, "Kong latency recorded for each proxied request")
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
	cfg := kongsim.Config{
		Services:       svcs,
		Toggles:        kongsim.AllToggles,
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
	servers := []struct {
		name, addr string
		handler    http.Handler
	}{{"status", *listen, sim.StatusHandler()}, {"proxy", *proxyListen, sim.ProxyHandler()}}
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

// Command kong-metrics-sidecar runs beside Kong in a data plane pod: it
// scrapes Kong's status endpoint, keeps the families the extension file
// enables, labels each series with its Kubernetes Service and serves the
// result for a ServiceMonitor or PodMonitor.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/config"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/envconfig"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/cli"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/kongadmin"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/proxy"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

const program = "kong-metrics-sidecar"

// maxConcurrentScrapes caps scrapes served at once; they share one fetch
// of Kong, so even 50 scrapers at once (the fan-in target) fit.
const maxConcurrentScrapes = 64

// shutdownGrace bounds how long in-flight scrapes may take after SIGTERM.
const shutdownGrace = 10 * time.Second

func main() { os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr)) }

// A build that -ldflags did not stamp (go build, go run, go test) has the
// version dev in -version, build_info and the logs.
func init() {
	if version.Version == "" {
		version.Version = "dev"
	}
}

// run is the program: flags from args, settings from environ, the exit
// code as cli says (2 for any problem with flags or settings, all of them
// reported at once).
func run(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	fs.SetOutput(stderr)
	showVersion := fs.Bool("version", false, "print the version and exit")
	checkConfig := fs.String("check-config", "", "validate an extension `FILE`, print what it selects and exit (1 when invalid or when it enables nothing)")
	checkRoutes := fs.String("routes", "", "with -check-config: a route mapping `FILE` (as the injector publishes it) to resolve with")
	kongPage := fs.String("kong-page", "", "with -check-config: a page of Kong's /metrics, a `FILE or URL`; prints how each Kong service and upstream name on it resolves")
	fs.Usage = func() { usage(fs, stderr) }
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q; settings come from %s* variables (see -help)\n", program, fs.Args(), EnvPrefix)
		return cli.ExitSettings
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.Print(program))
		return cli.ExitOK
	}
	if *checkConfig != "" {
		return check(*checkConfig, *checkRoutes, *kongPage, stdout, stderr)
	}
	if *checkRoutes != "" || *kongPage != "" {
		fmt.Fprintf(stderr, "%s: -routes and -kong-page go with -check-config\n", program)
		return cli.ExitSettings
	}
	settings, err := LoadSettings(environ)
	if err != nil {
		return cli.InvalidSettings(stderr, program, err)
	}
	logger := envconfig.NewLogger(stderr, settings.LogSettings)

	// Signals are caught before anything that can take time (reading the
	// extension file, TLS files, listening): a SIGHUP during start-up is a
	// reload once the watcher runs, a SIGTERM a clean exit, never a kill.
	ctx, hup, stop := cli.Signals(context.Background())
	defer stop()
	if err := serve(ctx, hup, settings, logger); err != nil {
		logger.Error("sidecar stopped", "err", err)
		return cli.ExitFailure
	}
	return cli.ExitOK
}

// serve wires the sidecar together and serves until ctx is done; hup asks
// for a reload of the extension file.
func serve(ctx context.Context, hup <-chan os.Signal, settings Settings, logger *slog.Logger) error {
	logger.Info("starting", "version", version.Version, "revision", version.GetRevision())
	// Every goroutine serve starts ends before it returns: on the way out
	// the context is cancelled first, then they are waited for.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("kong_metrics_sidecar"),
	)
	unresolved := newUnresolvedLog(logger)
	store := config.NewStore(settings.ConfigFile, config.StoreOptions{RoutesFile: settings.RouteMappingFile, OnUnresolved: unresolved.report}, reg, logger)
	// A missing or invalid file is logged and counted; the sidecar serves
	// its own metrics until a valid one appears.
	_ = store.Reload()

	rewriter := func() *relabel.Rewriter { return store.Load().Rewriter }
	if settings.KongAdminURL != "" {
		client, err := kongadmin.NewClient(kongadmin.ClientOptions{
			URL:      settings.KongAdminURL,
			CAFile:   settings.KongAdminCAFile,
			CertFile: settings.KongAdminCertFile,
			KeyFile:  settings.KongAdminKeyFile,
			Token:    string(settings.KongAdminToken),
		})
		if err != nil {
			return err
		}
		adminLogger := logger.With("component", "kongadmin")
		admin := kongadmin.NewRefresher(client, kongadmin.Options{
			Interval: settings.KongAdminRefreshInterval,
			Registry: reg,
			Logger:   adminLogger,
		})
		wg.Go(func() { client.FollowFiles(ctx, adminLogger) }) // the CA and client certificate files
		wg.Go(func() { admin.Run(ctx) })
		// A Rewriter per (extension snapshot, Admin API mapping) pair, so
		// its resolution cache never outlives either.
		rewriter = func() *relabel.Rewriter { return admin.Rewriter(store.Load().Rewriter) }
		logger.Info("resolving Kong services through the Admin API", "url", envconfig.Redact(settings.KongAdminURL),
			"refresh_interval", settings.KongAdminRefreshInterval)
	}

	handler := proxy.NewHandler(proxy.Options{
		UpstreamURL:      settings.UpstreamURL.String(),
		Timeout:          settings.ScrapeTimeout,
		MaxUpstreamBytes: int64(settings.MaxUpstreamBytes),
		MinFetchInterval: settings.MinFetchInterval,
		Rewriter:         rewriter,
		Registry:         reg,
		Logger:           logger,
	})
	srv := &http.Server{
		Handler:           proxy.NewMux(proxy.LimitConcurrency(handler, maxConcurrentScrapes)),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      settings.ScrapeTimeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if err := web.Validate(settings.WebConfigFile); err != nil {
		return fmt.Errorf("web configuration file %s: %w", settings.WebConfigFile, err)
	}
	ln, err := net.Listen("tcp", settings.ListenAddr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", settings.ListenAddr, err)
	}
	webConfigFile := settings.WebConfigFile
	if webConfigFile != "" {
		// TLS is the sidecar's, keeping the last good certificate (webTLS).
		// Without TLS in the file, or when it does not load now,
		// exporter-toolkit serves the file as it is.
		switch wt, err := newWebTLS(webConfigFile, logger); {
		case err == nil:
			ln, webConfigFile = wt.listen(ln), wt.copyPath()
			logger.Info("TLS is enabled; a certificate that does not load keeps the last good one in use", "web_config_file", settings.WebConfigFile)
		case !errors.Is(err, errNoTLS):
			logger.Warn("the web configuration file does not load for the sidecar's own TLS; exporter-toolkit serves it", "web_config_file", settings.WebConfigFile, "err", err)
		}
	}
	logger.Info("serving", "addr", ln.Addr().String(), "upstream", settings.UpstreamURL.Redacted(),
		"config_file", settings.ConfigFile, "route_mapping_file", settings.RouteMappingFile, "version", version.Version)

	// One goroutine does every reload: file events, the poll and SIGHUP.
	watcher := config.NewWatcher(store, config.WatchOptions{PollInterval: settings.ConfigPollInterval, Logger: logger})
	wg.Go(func() { watcher.Run(ctx) })
	wg.Go(func() {
		for {
			select {
			case <-hup:
				logger.Info("SIGHUP: reloading the extension file", "path", settings.ConfigFile)
				_ = watcher.Reload(ctx) // the store logs a rejection
			case <-ctx.Done():
				return
			}
		}
	})

	// TLS and basic auth, when the web configuration file asks for them,
	// the Prometheus ecosystem's way: certificates are re-read on each new
	// connection, so rotated ones are picked up.
	noSystemd := false
	webFlags := &web.FlagConfig{
		WebListenAddresses: &[]string{settings.ListenAddr},
		WebSystemdSocket:   &noSystemd,
		WebConfigFile:      &webConfigFile,
	}
	errc := make(chan error, 1)
	wg.Go(func() { errc <- web.Serve(ln, srv, webFlags, logger) })
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	// From here on a second SIGTERM kills the process at once (cli.Signals).
	logger.Info("shutting down: finishing in-flight scrapes", "grace", shutdownGrace)
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancelShutdown()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

// check validates an extension file for -check-config and, given a route
// mapping and a Kong page, prints how each Kong name on the page resolves.
func check(path, routesPath, kongPage string, stdout, stderr io.Writer) int {
	ext, err := config.LoadExtension(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: valid, %d document(s)\n", path, ext.Documents)
	if len(ext.Selection.Services) == 0 {
		fmt.Fprintln(stdout, "selects nothing")
	}
	var lines []string
	for svc, fams := range ext.Selection.Services {
		kept := strings.Join(relabel.FamilyNames(fams), ", ")
		if kept == "" {
			kept = "no series kept"
		}
		lines = append(lines, fmt.Sprintf("selects Service %s: %s → %s", svc, fams, kept))
	}
	for kong, svc := range ext.Selection.Mappings {
		lines = append(lines, fmt.Sprintf("maps Kong service %q to Service %s", kong, svc))
	}
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
	}
	// A document that enables nothing is valid, and the sidecar takes it,
	// but it is the mistake of a missing or misplaced config: block, so
	// the check fails on it.
	for _, w := range ext.Warnings {
		fmt.Fprintf(stderr, "%s: %s\n", path, w)
	}
	if len(ext.Warnings) > 0 {
		return cli.ExitFailure
	}
	var routes *config.Extension
	if routesPath != "" {
		data, err := os.ReadFile(routesPath)
		if err == nil {
			routes, err = config.ParseRoutes(data)
		}
		if err != nil {
			fmt.Fprintf(stderr, "route mapping %s: %v\n", routesPath, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: valid route mapping, %d Kong service(s) mapped, %d with several backends\n",
			routesPath, len(routes.Selection.Mappings), len(routes.Selection.MultiBackend))
	}
	if kongPage == "" {
		return 0
	}
	page, err := readKongPage(kongPage)
	if err != nil {
		fmt.Fprintf(stderr, "Kong page %s: %v\n", kongPage, err)
		return 1
	}
	for _, l := range explainPage(config.Merge(ext, routes), page) {
		fmt.Fprintln(stdout, l)
	}
	return 0
}

// readKongPage reads a page of Kong's /metrics from a file or an http(s) URL.
func readKongPage(source string) ([]byte, error) {
	if !strings.HasPrefix(source, "http://") && !strings.HasPrefix(source, "https://") {
		return os.ReadFile(source)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, source, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<30))
}

// explainPage lists how each Kong service and upstream name on page
// resolves with sel, one line each, sorted.
func explainPage(sel relabel.Selection, page []byte) []string {
	rw := relabel.New(sel)
	type key struct {
		name     string
		upstream bool
	}
	series := map[key]int{}
	for line := range bytes.SplitSeq(page, []byte("\n")) {
		if name, upstream, ok := relabel.SeriesKey(bytes.TrimSuffix(line, []byte("\r"))); ok {
			series[key{name, upstream}]++
		}
	}
	lines := make([]string, 0, len(series)+1)
	for k, n := range series {
		what := "Kong service"
		if k.upstream {
			what = "Kong upstream"
		}
		svc, kept, drop, ok := rw.Resolve(k.name, k.upstream)
		var verdict string
		switch {
		case ok && kept == 0:
			verdict = fmt.Sprintf("Service %s, not selected: dropped", svc)
		case ok:
			verdict = fmt.Sprintf("Service %s, keeps %s", svc, kept)
		case drop == relabel.DropMultiBackend:
			verdict = "several Services (a rule with several backends): dropped as multi_backend"
		default:
			why := relabel.ExplainUnresolved(k.name)
			verdict = fmt.Sprintf("unresolved (%s): dropped; %s", why.Reason, why.Fix)
		}
		lines = append(lines, fmt.Sprintf("%s %q (%d series): %s", what, k.name, n, verdict))
	}
	slices.Sort(lines)
	if len(lines) == 0 {
		lines = append(lines, "the Kong page has no series of the families an extension can keep")
	}
	return lines
}

func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "Usage: %s [-version] [-check-config FILE]\n\n", program)
	fmt.Fprintf(w, "Scrapes Kong's /metrics, keeps and enriches the series a DataPlaneMetricsExtension selects, and serves them.\n\nFlags:\n")
	fs.PrintDefaults()
	fmt.Fprintf(w, "\nEnvironment variables:\n")
	for _, v := range envconfig.Variables[Settings](EnvPrefix) {
		fmt.Fprintf(w, "  %s (default %q)\n    \t%s\n", v.Name, v.Default, v.Help)
	}
}

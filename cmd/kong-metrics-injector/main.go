// Command kong-metrics-injector is a mutating admission webhook that adds
// the kong-metrics-sidecar container to Kong pods labelled
// kong-metrics-sidecar.io/inject: "true". It is configured with INJECTOR_*
// environment variables; -help lists them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/version"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/envconfig"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/inject"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/cli"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/routemap"
)

const program = "kong-metrics-injector"

func main() { os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr)) }

// A build that -ldflags did not stamp (go build, go run, go test) has the
// version dev in -version, build_info, the logs and the annotation on
// injected pods.
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
	fs.Usage = func() { usage(fs, stderr) }
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q; settings come from %s* variables (see -help)\n", program, fs.Args(), inject.EnvPrefix)
		return cli.ExitSettings
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.Print(program))
		return cli.ExitOK
	}
	settings, err := inject.LoadSettings(environ)
	if err != nil {
		return cli.InvalidSettings(stderr, program, err)
	}
	logger := envconfig.NewLogger(stderr, settings.LogSettings)

	// Signals are caught before the certificate is read. SIGHUP only says
	// why it is not needed: the certificate files are followed on their own.
	ctx, hup, stop := cli.Signals(context.Background())
	defer stop()
	go func() {
		for {
			select {
			case <-hup:
				logger.Info("SIGHUP ignored: the certificate files are followed as they change")
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := serve(ctx, settings, logger); err != nil {
		logger.Error("injector stopped", "err", err)
		return cli.ExitFailure
	}
	return cli.ExitOK
}

// serve wires the injector together and serves until ctx is done.
func serve(ctx context.Context, s inject.Settings, logger *slog.Logger) error {
	logger.Info("starting", "version", version.Version, "revision", version.GetRevision(), "mode", s.SidecarMode, "image", s.SidecarImage)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := inject.NewMetrics(reg)

	certs, err := inject.NewCertReloader(inject.CertReloaderOptions{
		CertFile: s.TLSCertFile,
		KeyFile:  s.TLSKeyFile,
		Logger:   logger.With("component", "tls"),
		Metrics:  metrics,
	})
	if err != nil {
		return err
	}
	handler := inject.NewHandler(s.Config(version.Version), logger.With("component", "webhook"), metrics)
	srv, err := inject.NewServer(inject.ServerOptions{
		ListenAddr:     s.ListenAddr,
		MetricsAddr:    s.MetricsAddr,
		Mutate:         handler,
		GetCertificate: certs.GetCertificate,
		Gatherer:       reg,
		Logger:         logger,
	})
	if err != nil {
		return err
	}
	var routes *routemap.Publisher
	if len(s.RouteMappingNamespaces) > 0 {
		cfg, err := restConfig(s.Kubeconfig)
		if err != nil {
			return fmt.Errorf("route mapping: %w", err)
		}
		routes, err = routemap.New(routemap.Options{
			Config:     cfg,
			Namespaces: s.RouteMappingNamespaces,
			ConfigMap:  s.RouteMappingConfigMap,
			Registry:   reg,
			Logger:     logger.With("component", "routemap"),
		})
		if err != nil {
			return err
		}
	}
	// The reloader and the route mapping stop with the server, also when
	// the server fails.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	certsDone := make(chan error, 1)
	go func() { certsDone <- certs.Run(ctx) }()
	routesDone := make(chan error, 1)
	if routes != nil {
		go func() { routesDone <- routes.Run(ctx) }()
	} else {
		routesDone <- nil
	}
	err = srv.Run(ctx)
	cancel()
	return errors.Join(err, <-certsDone, <-routesDone)
}

// restConfig is the API access of the route mapping: the kubeconfig at
// path, or the pod's service account when path is empty.
func restConfig(path string) (*rest.Config, error) {
	if path == "" {
		return rest.InClusterConfig()
	}
	return clientcmd.BuildConfigFromFlags("", path)
}

func usage(flags *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "Usage: %s [-version]\n\n", program)
	fmt.Fprintf(w, "A mutating admission webhook that adds the kong-metrics-sidecar container\n")
	fmt.Fprintf(w, "to pods labelled %s: \"true\".\n\nFlags:\n", inject.LabelInject)
	flags.PrintDefaults()
	fmt.Fprintf(w, "\nEnvironment:\n")
	for _, v := range envconfig.Variables[inject.Settings](inject.EnvPrefix) {
		def := v.Default
		if def == "" {
			def = "none"
		}
		fmt.Fprintf(w, "  %s (default %s)\n    \t%s\n", v.Name, def, v.Help)
	}
}

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
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/version"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/envconfig"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/inject"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/routemap"
)

const program = "kong-metrics-injector"

// Exit codes.
const (
	exitOK       = 0
	exitFailure  = 1 // could not start or serve
	exitSettings = 2 // bad flags or settings
)

func main() { os.Exit(run()) }

// A build that -ldflags did not stamp (go build, go run, go test) has the
// version dev in -version, build_info, the logs and the annotation on
// injected pods.
func init() {
	if version.Version == "" {
		version.Version = "dev"
	}
}

func run() int {
	flags := flag.NewFlagSet(program, flag.ContinueOnError)
	showVersion := flags.Bool("version", false, "print the version and exit")
	flags.Usage = func() { usage(flags) }
	if err := flags.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitSettings
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected arguments %q; settings come from INJECTOR_* variables (see -help)\n", program, flags.Args())
		return exitSettings
	}
	if *showVersion {
		fmt.Println(version.Print(program))
		return exitOK
	}
	settings, err := inject.LoadSettings(os.Environ())
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: invalid settings:\n%v\n", program, err)
		return exitSettings
	}
	logger := envconfig.NewLogger(os.Stderr, settings.LogSettings)

	// The first SIGTERM starts a drain; stop() then restores the default
	// action, so that a second one kills the process.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	// SIGHUP, whose default action is to exit, is caught too, before the
	// certificate is read: the certificate files are followed on their
	// own, so it only says so.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
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
		logger.Error("Injector failed", "err", err)
		return exitFailure
	}
	return exitOK
}

// serve wires the injector together and serves until ctx is done.
func serve(ctx context.Context, s inject.Settings, logger *slog.Logger) error {
	logger.Info("Starting", "version", version.Version, "revision", version.GetRevision(), "mode", s.SidecarMode, "image", s.SidecarImage)
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

func usage(flags *flag.FlagSet) {
	w := flags.Output()
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

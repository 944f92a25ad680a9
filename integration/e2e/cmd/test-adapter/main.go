// Command test-adapter serves custom metrics from Prometheus by the part of
// prometheus-adapter's rule format that Kong's tutorial uses (see package
// adapter). It takes prometheus-adapter's flags, so the end-to-end test
// runs either program the same way.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/component-base/logs"
	"k8s.io/klog/v2"
	basecmd "sigs.k8s.io/custom-metrics-apiserver/pkg/cmd"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/adapter"
)

func main() { os.Exit(run()) }

func run() int {
	logs.InitLogs()
	defer logs.FlushLogs()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	cmd := &basecmd.AdapterBase{Name: "test-adapter"}
	var (
		promURL, configFile string
		relist, maxAge      time.Duration
	)
	fs := cmd.Flags()
	fs.StringVar(&promURL, "prometheus-url", "", "Prometheus' base URL")
	fs.StringVar(&configFile, "config", "", "prometheus-adapter config file (rules: list)")
	fs.DurationVar(&relist, "metrics-relist-interval", 10*time.Minute, "how often series are discovered again")
	fs.DurationVar(&maxAge, "metrics-max-age", 0, "how far back discovery looks (default: the relist interval)")
	klog.InitFlags(nil)
	fs.AddGoFlagSet(flag.CommandLine)
	if err := fs.Parse(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if promURL == "" || configFile == "" {
		fmt.Fprintln(os.Stderr, "--prometheus-url and --config are required")
		return 2
	}
	cfg, err := adapter.LoadConfig(configFile)
	if err != nil {
		logger.Error("Loading config", "err", err)
		return 1
	}
	mapper, err := cmd.RESTMapper()
	if err != nil {
		logger.Error("Building the REST mapper", "err", err)
		return 1
	}
	client, err := cmd.DynamicClient()
	if err != nil {
		logger.Error("Building the dynamic client", "err", err)
		return 1
	}
	p, err := adapter.NewProvider(adapter.Options{
		Config: cfg, Prometheus: promURL, Mapper: mapper, Client: client,
		Relist: relist, MaxAge: maxAge, Logger: logger,
	})
	if err != nil {
		logger.Error("Compiling rules", "err", err)
		return 1
	}
	cmd.WithCustomMetrics(p)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go p.Run(ctx)
	if err := cmd.Run(ctx); err != nil {
		logger.Error("Serving", "err", err)
		return 1
	}
	return 0
}

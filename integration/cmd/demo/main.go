// Command demo runs the sidecar's main job on a built-in default: it starts
// the Kong simulator and the sidecar with the tutorial's
// DataPlaneMetricsExtension, drives the tutorial's traffic
// (/command/shell?cmd=sleep%200.1) for a few seconds, then prints Kong's
// latency series beside the sidecar's, the series the sidecar dropped by
// reason, and the value kong_upstream_latency_ms_60s_average would take
// against the tutorial HPA's 40 ms target, and stops everything. `make
// demo` runs it; -pages DIR keeps the two pages the report was made from.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

const extension = harness.TutorialExtension

func main() { os.Exit(run()) }

func run() int {
	binDir := flag.String("bin", "bin", "directory holding kong-metrics-sidecar and kong-simulator")
	duration := flag.Duration("duration", 5*time.Second, "how long the traffic runs")
	delay := flag.String("delay", "0.1", "the sleep the tutorial's command service is asked for, in seconds")
	pagesDir := flag.String("pages", "", "when set, write Kong's page and the sidecar's there (kong.prom, sidecar.prom)")
	flag.Parse()
	if err := demo(*binDir, *duration, *delay, *pagesDir, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	return 0
}

func demo(binDir string, duration time.Duration, delay, pagesDir string, out io.Writer) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "kong-metrics-sidecar-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	proxyAddr, statusAddr, sidecarAddr := mustAddr(), mustAddr(), mustAddr()

	sim, err := harness.Start("kong-simulator", filepath.Join(binDir, "kong-simulator"),
		[]string{"-proxy-listen", proxyAddr, "-listen", statusAddr}, nil)
	if err != nil {
		return err
	}
	defer sim.Stop(5 * time.Second)
	if err := harness.WaitHTTP("http://"+statusAddr+"/metrics", sim, 20*time.Second); err != nil {
		return err
	}

	cfg := filepath.Join(work, "config.yaml")
	if err := os.WriteFile(cfg, []byte(extension), 0o644); err != nil {
		return err
	}
	sidecar, err := harness.Start("kong-metrics-sidecar", filepath.Join(binDir, "kong-metrics-sidecar"), nil, []string{
		"SIDECAR_LISTEN_ADDR=" + sidecarAddr,
		"SIDECAR_UPSTREAM_URL=http://" + statusAddr + "/metrics",
		"SIDECAR_CONFIG_FILE=" + cfg,
	})
	if err != nil {
		return err
	}
	defer sidecar.Stop(5 * time.Second)
	if err := harness.WaitHTTP("http://"+sidecarAddr+"/readyz", sidecar, 20*time.Second); err != nil {
		return err
	}

	fmt.Fprintf(out, "Kong simulator: proxy http://%s, status http://%s/metrics\n", proxyAddr, statusAddr)
	fmt.Fprintf(out, "Sidecar:        http://%s/metrics, extension file:\n%s\n", sidecarAddr, indent(extension))
	fmt.Fprintf(out, "Driving the tutorial's traffic for %s: GET /command/shell?cmd=sleep%%20%s (4 clients)...\n", duration, delay)
	trafficCtx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	served, err := harness.Traffic(trafficCtx, "http://"+proxyAddr, delay, 4)
	if err != nil {
		return fmt.Errorf("traffic: %w", err)
	}
	fmt.Fprintf(out, "%d requests served.\n\n", served)

	p, err := readPages(ctx, sidecarAddr)
	if err != nil {
		return fmt.Errorf("%w\nsidecar log:\n%s", err, sidecar.Output())
	}
	if pagesDir != "" {
		if err := os.WriteFile(filepath.Join(pagesDir, "kong.prom"), p.kong, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(pagesDir, "sidecar.prom"), p.sidecar, 0o644); err != nil {
			return err
		}
	}
	return writeReport(out, p)
}

// readPages reads the sidecar's /metrics and Kong's page as the sidecar
// reads it (/metrics/kong) until both show the same state of Kong: a
// request cut off as the traffic stopped may still be recorded between
// the two reads.
func readPages(ctx context.Context, sidecarAddr string) (pages, error) {
	var p pages
	for range 20 {
		var err error
		if p.sidecar, err = harness.Get(ctx, "http://"+sidecarAddr+"/metrics"); err != nil {
			return p, err
		}
		if p.kong, err = harness.Get(ctx, "http://"+sidecarAddr+"/metrics/kong"); err != nil {
			return p, err
		}
		if consistent(p) {
			return p, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return p, fmt.Errorf("the sidecar's page and Kong's never showed the same kong_upstream_latency_ms values:\n%s\n%s", p.kong, p.sidecar)
}

func mustAddr() string {
	addr, err := harness.FreeAddr()
	if err != nil {
		panic(err)
	}
	return addr
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n    ")
}

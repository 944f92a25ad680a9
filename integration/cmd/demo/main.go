// Command demo runs the sidecar's main job on a built-in default: it starts
// the Kong simulator and the sidecar with the tutorial's
// DataPlaneMetricsExtension, drives the tutorial's traffic
// (/command/shell?cmd=sleep%200.1) for a few seconds, prints the enriched
// kong_upstream_latency_ms_sum and _count series and the mean latency they
// give, then stops everything. `make demo` runs it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
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
	flag.Parse()
	if err := demo(*binDir, *duration, *delay, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	return 0
}

func demo(binDir string, duration time.Duration, delay string, out io.Writer) error {
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

	body, err := harness.Get(ctx, "http://"+sidecarAddr+"/metrics")
	if err != nil {
		return err
	}
	var sum, count float64
	var found int
	fmt.Fprintln(out, "Enriched series from the sidecar:")
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		name, _, _ := strings.Cut(line, "{")
		if name != "kong_upstream_latency_ms_sum" && name != "kong_upstream_latency_ms_count" {
			continue
		}
		fmt.Fprintln(out, "  "+line)
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return fmt.Errorf("parsing %q: %w", line, err)
		}
		if name == "kong_upstream_latency_ms_sum" {
			sum += v
		} else {
			count += v
		}
		found++
	}
	if found == 0 || count == 0 {
		return fmt.Errorf("the sidecar served no kong_upstream_latency_ms series:\n%s\nsidecar log:\n%s", body, sidecar.Output())
	}
	fmt.Fprintf(out, "\nMean upstream latency of kong/command: %.1f ms (sum %g / count %g)\n", sum/count, sum, count)
	fmt.Fprintln(out, "prometheus-adapter's rule turns the same two series into kong_upstream_latency_ms_60s_average.")
	return nil
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

// Command loadtest measures the sidecar as a process on loopback and
// prints a report: scrape time through the sidecar against a plain GET of
// the same page, Kong's page through the sidecar (/metrics/kong) with the
// sidecar's peak memory against the page's size, the sidecar's idle and
// peak memory, the upstream fetches
// that concurrent scrapes cost, and the injector's admission latency.
//
//	go run ./integration/loadtest/cmd/loadtest -routes 10000
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/loadtest"
)

func main() { os.Exit(run()) }

func run() int {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	routes := fs.Int("routes", 10000, "routes of the simulator's page (10000: about 94 MB)")
	rounds := fs.Int("rounds", 5, "timed rounds of each scrape; the median counts")
	concurrent := fs.Int("concurrent", 50, "simultaneous scrapes of the fan-in check")
	interval := fs.String("interval", "30s", "SIDECAR_MIN_FETCH_INTERVAL of the fan-in check")
	rate := fs.Int("admission-rate", 200, "admission requests per second; 0 skips the injector")
	admissionFor := fs.Duration("admission-duration", 10*time.Second, "how long to send admission requests")
	verbose := fs.Bool("v", false, "report every round")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	if err := measure(ctx, os.Stdout, *routes, *rounds, *concurrent, *interval, *rate, *admissionFor, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		return 1
	}
	return 0
}

func measure(ctx context.Context, w io.Writer, routes, rounds, concurrent int, interval string, rate int, admissionFor time.Duration, verbose bool) error {
	logf := func(string, ...any) {}
	if verbose {
		logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
	dir, err := os.MkdirTemp("", "loadtest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(w, "# Load test: %d-route page, %s, %d cores, %s\n\n", routes, runtime.Version(), runtime.NumCPU(), time.Now().UTC().Format(time.DateOnly))
	stack, err := loadtest.StartSimulator(ctx, routes, dir, logf)
	if err != nil {
		return err
	}
	defer stack.Stop()

	fmt.Fprintf(w, "Scrapes (median of %d rounds; each client discards the body):\n\n", rounds)
	fmt.Fprintln(w, "| selection | page | plain GET | sidecar | ratio | sidecar gzip | ratio | answer | gzip answer | idle RSS | peak RSS |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, sel := range []struct{ name, file string }{
		{"typical (5 Services)", loadtest.TypicalSelection(routes)},
		{"all Services", loadtest.AllSelection(routes)},
	} {
		r, err := stack.MeasureScrapes(ctx, sel.name, sel.file, rounds)
		if err != nil {
			return fmt.Errorf("%s: %w", sel.name, err)
		}
		fmt.Fprintf(w, "| %s | %s | %v | %v | %.2f× | %v | %.2f× | %s | %s | %s | %s |\n",
			r.Selection, mb(r.PageBytes), ms(r.Direct), ms(r.Identity), ratio(r.Identity, r.Direct), ms(r.Gzip), ratio(r.Gzip, r.Direct),
			mb(r.IdentityBytes), mb(r.GzipBytes), mib(r.IdleRSS), mib(r.PeakRSS))
	}

	kp, err := stack.MeasureKongPage(ctx, loadtest.TypicalSelection(routes), rounds)
	if err != nil {
		return fmt.Errorf("kong page: %w", err)
	}
	fmt.Fprintf(w, "\nKong's page at /metrics/kong (typical selection; median of %d rounds; the plain answer is the page):\n\n", rounds)
	fmt.Fprintln(w, "| page | plain GET | /metrics/kong | ratio | gzip | ratio | gzip answer | idle RSS | peak RSS | peak RSS ÷ page |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	fmt.Fprintf(w, "| %s | %v | %v | %.2f× | %v | %.2f× | %s | %s | %s | %.2f |\n",
		mb(kp.PageBytes), ms(kp.Direct), ms(kp.Identity), ratio(kp.Identity, kp.Direct), ms(kp.Gzip), ratio(kp.Gzip, kp.Direct),
		mb(kp.GzipBytes), mib(kp.IdleRSS), mib(kp.PeakRSS), float64(kp.PeakRSS)/float64(kp.PageBytes))

	fmt.Fprintf(w, "\nFan-in (typical selection, a fresh sidecar each):\n\n")
	fmt.Fprintln(w, "| SIDECAR_MIN_FETCH_INTERVAL | concurrent scrapes | of which 503, sent again | then one by one | upstream fetches | elapsed |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	for _, iv := range []string{"0s", interval} {
		r, err := stack.MeasureFanIn(ctx, loadtest.TypicalSelection(routes), iv, concurrent)
		if err != nil {
			return fmt.Errorf("fan-in: %w", err)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %.0f | %v |\n", r.Interval, r.Concurrent, r.TurnedAway, r.Sequential, r.Fetches, ms(r.Elapsed))
	}

	if rate > 0 {
		r, err := loadtest.MeasureAdmission(ctx, rate, admissionFor)
		if err != nil {
			return fmt.Errorf("admission: %w", err)
		}
		fmt.Fprintf(w, "\nInjector admission over TLS (in-process inject.NewServer, Helm chart's Kong pod):\n\n")
		fmt.Fprintln(w, "| rate | requests | errors | p50 | p99 | max |")
		fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
		fmt.Fprintf(w, "| %d/s | %d | %d | %v | %v | %v |\n", r.Rate, r.Requests, r.Errors, us(r.P50), us(r.P99), us(r.Max))
	}
	return nil
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
func us(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

func mb(n int64) string  { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

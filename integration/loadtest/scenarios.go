package loadtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/inject"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// Rounds times requests through one sidecar against plain GETs of Kong's
// page from the same simulator, in turn in every round.
type Rounds struct {
	PageBytes int64 // Kong's page, as the plain GET reads it
	// Medians over the rounds: the plain GET, and the sidecar's answers
	// without and with gzip; each client discards the body.
	Direct, Identity, Gzip time.Duration
	// What the sidecar's answers weigh.
	IdentityBytes, GzipBytes int64
	// The sidecar's resident memory: before the first request (VmRSS)
	// and its peak after them all (VmHWM).
	IdleRSS, PeakRSS int64
}

// timeRounds runs rounds of a plain GET of Kong's page and GETs of url
// (one of sc's), identity then gzip; check, when set, sees each round's
// page and identity answer sizes.
func (s *Stack) timeRounds(ctx context.Context, sc *Sidecar, url, label string, rounds int, check func(round int, page, identity int64) error) (Rounds, error) {
	var r Rounds
	time.Sleep(500 * time.Millisecond) // let start-up settle before reading idle memory
	var err error
	if r.IdleRSS, _, err = Memory(sc.Pid()); err != nil {
		return r, err
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true}}
	defer client.CloseIdleConnections()
	var direct, identity, gzipped []time.Duration
	for i := range rounds {
		d, n, err := Get(ctx, client, s.StatusURL, "")
		if err != nil {
			return r, err
		}
		direct, r.PageBytes = append(direct, d), n
		d, n, err = Get(ctx, client, url, "")
		if err != nil {
			return r, err
		}
		if check != nil {
			if err := check(i+1, r.PageBytes, n); err != nil {
				return r, err
			}
		}
		identity, r.IdentityBytes = append(identity, d), n
		d, n, err = Get(ctx, client, url, "gzip")
		if err != nil {
			return r, err
		}
		gzipped, r.GzipBytes = append(gzipped, d), n
		s.logf("%s round %d: direct %v, sidecar %v, sidecar gzip %v", label, i+1, direct[i], identity[i], gzipped[i])
	}
	r.Direct, r.Identity, r.Gzip = median(direct), median(identity), median(gzipped)
	if _, r.PeakRSS, err = Memory(sc.Pid()); err != nil {
		return r, err
	}
	return r, nil
}

// ScrapeReport compares scrapes through one sidecar with plain GETs of the
// same page.
type ScrapeReport struct {
	Selection string
	Rounds
}

// MeasureScrapes starts a sidecar with extension and times rounds of
// scrapes against plain GETs.
func (s *Stack) MeasureScrapes(ctx context.Context, selection, extension string, rounds int) (ScrapeReport, error) {
	r := ScrapeReport{Selection: selection}
	sc, err := s.StartSidecar(selection, extension)
	if err != nil {
		return r, err
	}
	defer sc.Stop(5 * time.Second)
	if r.Rounds, err = s.timeRounds(ctx, sc, sc.URL, selection, rounds, nil); err != nil {
		return r, err
	}
	up, err := ownMetric(ctx, sc.URL, "kong_metrics_sidecar_upstream_up")
	if err != nil {
		return r, fmt.Errorf("%s: reading upstream_up after the rounds: %w", selection, err)
	}
	if up != 1 {
		return r, fmt.Errorf("%s: upstream_up %v after the rounds", selection, up)
	}
	return r, nil
}

// FanInReport counts the upstream fetches that concurrent scrapes cost.
type FanInReport struct {
	Interval   string  // SIDECAR_MIN_FETCH_INTERVAL
	Concurrent int     // scrapes sent at once
	TurnedAway int     // of those, answered 503 by the sidecar's concurrency cap, and sent again after Retry-After
	Sequential int     // scrapes sent one after another after them
	Fetches    float64 // kong_metrics_sidecar_upstream_fetches_total after all of them
	Elapsed    time.Duration
}

// MeasureFanIn sends concurrent scrapes at once, then as many one after
// another, to a fresh sidecar with the given SIDECAR_MIN_FETCH_INTERVAL,
// and reads how many times it fetched Kong's page.
func (s *Stack) MeasureFanIn(ctx context.Context, extension, interval string, concurrent int) (FanInReport, error) {
	r := FanInReport{Interval: interval, Concurrent: concurrent, Sequential: concurrent}
	sc, err := s.StartSidecar("fan-in", extension, "SIDECAR_MIN_FETCH_INTERVAL="+interval)
	if err != nil {
		return r, err
	}
	defer sc.Stop(5 * time.Second)
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true, MaxIdleConnsPerHost: concurrent}}
	defer client.CloseIdleConnections()
	start := time.Now()
	errs := make(chan error, concurrent)
	var turnedAway atomic.Int32
	var wg sync.WaitGroup
	for i := range concurrent {
		wg.Go(func() {
			enc := "gzip"
			if i%2 == 0 {
				enc = "" // half like Prometheus, half plain
			}
			_, _, err := Get(ctx, client, sc.URL, enc)
			if errors.Is(err, errUnavailable) {
				// The sidecar serves a bounded number of scrapes at once.
				turnedAway.Add(1)
				time.Sleep(time.Second) // its Retry-After
				_, _, err = Get(ctx, client, sc.URL, enc)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return r, err
		}
	}
	r.TurnedAway = int(turnedAway.Load())
	for range r.Sequential {
		if _, _, err := Get(ctx, client, sc.URL, "gzip"); err != nil {
			return r, err
		}
	}
	r.Elapsed = time.Since(start)
	// This scrape comes within the interval too, and says how many fetches
	// there were.
	r.Fetches, err = ownMetric(ctx, sc.URL, "kong_metrics_sidecar_upstream_fetches_total")
	return r, err
}

// AdmissionReport is the injector's latency at a fixed request rate.
type AdmissionReport struct {
	Rate          int // requests per second
	Requests      int
	Errors        int
	P50, P99, Max time.Duration
}

// MeasureAdmission serves the injector's webhook (inject.NewServer, TLS
// on loopback) in this process and sends it the Helm chart's Kong pod as
// an AdmissionReview at rate per second for d, open loop, over kept-alive
// connections as an API server does.
func MeasureAdmission(ctx context.Context, rate int, d time.Duration) (_ AdmissionReport, err error) {
	r := AdmissionReport{Rate: rate}
	body, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "inject", "testdata", "admission", "helm-chart.json"))
	if err != nil {
		return r, err
	}
	ca, err := harness.NewCA()
	if err != nil {
		return r, err
	}
	certPEM, keyPEM, err := ca.Issue(0, time.Time{})
	if err != nil {
		return r, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return r, err
	}
	logger := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	metrics := inject.NewMetrics(reg)
	srv, err := inject.NewServer(inject.ServerOptions{
		ListenAddr:  "127.0.0.1:0",
		MetricsAddr: "127.0.0.1:0",
		Mutate: inject.NewHandler(inject.Config{
			Image: "kong-metrics-sidecar:loadtest", Mode: inject.ModeNative, DefaultConfigMap: "kong-metrics-sidecar", Version: "loadtest",
		}, logger, metrics),
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil },
		Gatherer:       reg,
		Logger:         logger,
	})
	if err != nil {
		return r, err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	defer func() {
		stop()
		err = errors.Join(err, <-done)
	}()

	url := "https://" + srv.Addr().String() + "/mutate"
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 64,
	}}
	defer client.CloseIdleConnections()
	// Warm up: the first requests pay for the handshakes.
	for range 20 {
		if _, err := admit(ctx, client, url, body); err != nil {
			return r, err
		}
	}

	var mu sync.Mutex // Protects latencies and r.Errors.
	var latencies []time.Duration
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for n := rate * int(d/time.Second); n > 0; n-- {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return r, ctx.Err()
		}
		wg.Go(func() {
			lat, err := admit(ctx, client, url, body)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.Errors++
				return
			}
			latencies = append(latencies, lat)
		})
	}
	wg.Wait()
	r.Requests = len(latencies) + r.Errors
	if len(latencies) == 0 {
		return r, fmt.Errorf("no admission request succeeded")
	}
	slices.Sort(latencies)
	r.P50 = latencies[len(latencies)/2]
	r.P99 = latencies[len(latencies)*99/100]
	r.Max = latencies[len(latencies)-1]
	return r, nil
}

// admit sends one AdmissionReview and checks the answer allows the pod
// with a patch.
func admit(ctx context.Context, client *http.Client, url string, body []byte) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	elapsed := time.Since(start)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("admission: %s: %s", resp.Status, out)
	}
	var review struct {
		Response struct {
			Allowed bool   `json:"allowed"`
			Patch   []byte `json:"patch"`
		} `json:"response"`
	}
	if err := json.Unmarshal(out, &review); err != nil {
		return 0, fmt.Errorf("admission: decoding the response: %w: %.200s", err, out)
	}
	if !review.Response.Allowed || len(review.Response.Patch) == 0 {
		return 0, fmt.Errorf("admission: not an allowed response with a patch: %.200s", out)
	}
	return elapsed, nil
}

// KongPageReport is Kong's page served through a sidecar at /metrics/kong,
// against plain GETs of the same page: the identity answer weighs the
// page's size, and a PeakRSS below PageBytes means the page was never
// held whole.
type KongPageReport struct {
	Rounds
	Fetches float64 // upstream_fetches_total after the rounds: one per request
}

// MeasureKongPage starts a sidecar with extension and times rounds of
// /metrics/kong against plain GETs of Kong's page.
func (s *Stack) MeasureKongPage(ctx context.Context, extension string, rounds int) (KongPageReport, error) {
	var r KongPageReport
	sc, err := s.StartSidecar("kong-page", extension)
	if err != nil {
		return r, err
	}
	defer sc.Stop(5 * time.Second)
	samePage := func(round int, page, identity int64) error {
		if identity != page {
			return fmt.Errorf("round %d: /metrics/kong answered %d bytes, Kong's page is %d", round, identity, page)
		}
		return nil
	}
	if r.Rounds, err = s.timeRounds(ctx, sc, sc.URL+"/kong", "kong page", rounds, samePage); err != nil {
		return r, err
	}
	if r.Fetches, err = ownMetric(ctx, sc.URL, "kong_metrics_sidecar_upstream_fetches_total"); err != nil {
		return r, fmt.Errorf("kong page: reading upstream_fetches_total after the rounds: %w", err)
	}
	return r, nil
}

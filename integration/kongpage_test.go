//go:build integration

package integration

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kongsim"
)

// countedKong is the Kong simulator's status listener in this process,
// counting the requests for its /metrics: how often Kong was fetched.
type countedKong struct {
	sim     *kongsim.Simulator
	url     string // its /metrics
	fetches atomic.Int64
	// With hold set, each fetch sends on arrived and waits for release.
	hold             atomic.Bool
	arrived, release chan struct{}
}

func startCountedKong(t *testing.T) *countedKong {
	t.Helper()
	sim, err := kongsim.New(kongsim.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for code, n := range map[int]int{200: 40, 404: 3} {
		for range n {
			sim.Record(kongsim.Request{Service: "kong.command.80", Route: "kong.command.command.api.example.com.80",
				Code: code, RequestMs: 102, UpstreamMs: 100, KongMs: 1, BytesIn: 120, BytesOut: 310})
		}
	}
	k := &countedKong{sim: sim, arrived: make(chan struct{}, 16), release: make(chan struct{})}
	status := sim.StatusHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			k.fetches.Add(1)
			if k.hold.Load() {
				k.arrived <- struct{}{}
				select {
				case <-k.release:
				case <-r.Context().Done():
					return
				}
			}
		}
		status.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	k.url = srv.URL + "/metrics"
	return k
}

// page is what the simulator serves now.
func (k *countedKong) page(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := k.sim.WriteMetrics(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// startSidecarFor starts the real sidecar on Kong's /metrics with the
// tutorial's extension and SIDECAR_MIN_FETCH_INTERVAL=interval.
func startSidecarFor(t *testing.T, kongURL, interval string) string {
	t.Helper()
	bins, err := harness.Binaries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(harness.TutorialExtension), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := harness.Start("kong-metrics-sidecar", bins["kong-metrics-sidecar"], nil, []string{
		"SIDECAR_LISTEN_ADDR=" + harness.AnyPort,
		"SIDECAR_UPSTREAM_URL=" + kongURL,
		"SIDECAR_CONFIG_FILE=" + cfg,
		"SIDECAR_MIN_FETCH_INTERVAL=" + interval,
		"SIDECAR_LOG_FORMAT=text",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAndReport(t, p) })
	addr, err := p.LoggedAddr(time.Minute, "msg", "serving")
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.WaitHTTP("http://"+addr+"/readyz", p, time.Minute); err != nil {
		t.Fatal(err)
	}
	return addr
}

// get GETs url and returns the status, the Content-Type and the body
// (decompressed by the transport when it asked for gzip).
func get(ctx context.Context, client *http.Client, url string) (int, string, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), body, err
}

// TestKongPageOneFetch: the real sidecar serves the Kong simulator's page
// at /metrics/kong byte for byte with Kong's Content-Type, and concurrent
// scrapes of /metrics and /metrics/kong within SIDECAR_MIN_FETCH_INTERVAL
// cost Kong exactly one fetch, counted at the simulator.
func TestKongPageOneFetch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kong := startCountedKong(t)
	addr := startSidecarFor(t, kong.url, "1h")
	want := kong.page(t)

	// Both transports: one asks for gzip (and the transport decompresses),
	// one does not.
	clients := []*http.Client{
		{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 32}},
		{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 32, DisableCompression: true}},
	}
	for _, c := range clients {
		defer c.CloseIdleConnections()
	}
	type answer struct {
		path, ct string
		code     int
		body     []byte
		err      error
	}
	const n = 40
	answers := make([]answer, n)
	var wg sync.WaitGroup
	var written sync.WaitGroup // the requests on the wire
	scrape := func(i int) {
		path := "/metrics"
		if i%2 == 0 {
			path = "/metrics/kong"
		}
		trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { written.Done() }}
		code, ct, body, err := get(httptrace.WithClientTrace(ctx, trace), clients[i/2%2], "http://"+addr+path)
		answers[i] = answer{path, ct, code, body, err}
	}
	// The first page request starts the fetch, which Kong holds; every
	// other scrape, of either endpoint, arrives while it runs.
	kong.hold.Store(true)
	written.Add(n)
	wg.Go(func() { scrape(0) })
	select {
	case <-kong.arrived:
	case <-ctx.Done():
		t.Fatal("the sidecar did not fetch Kong")
	}
	for i := 1; i < n; i++ {
		wg.Go(func() { scrape(i) })
	}
	written.Wait()
	close(kong.release)
	wg.Wait()
	for i, a := range answers {
		switch {
		case a.err != nil:
			t.Fatalf("scrape %d of %s: %v", i, a.path, a.err)
		case a.code != http.StatusOK:
			t.Fatalf("scrape %d of %s: status %d\n%s", i, a.path, a.code, a.body)
		case a.path == "/metrics" && !bytes.Contains(a.body, []byte(`kong_upstream_latency_ms_count{kong_service="kong.command.80"`)):
			t.Errorf("scrape %d of /metrics lacks the enriched series:\n%s", i, a.body)
		case a.path == "/metrics/kong" && !bytes.Equal(a.body, want):
			t.Errorf("scrape %d of /metrics/kong is not the simulator's page byte for byte (%d bytes, the page %d)", i, len(a.body), len(want))
		case a.path == "/metrics/kong" && a.ct != "text/plain; charset=UTF-8":
			t.Errorf("scrape %d of /metrics/kong: Content-Type %q, want Kong's", i, a.ct)
		}
	}
	if got := kong.fetches.Load(); got != 1 {
		t.Errorf("%d concurrent scrapes of both endpoints made %d fetches of Kong, want 1", n, got)
	}
	before := kong.fetches.Load()
	for i := range 2 * n {
		path := "/metrics"
		if i%2 == 0 {
			path = "/metrics/kong"
		}
		if code, _, _, err := get(ctx, clients[i%2], "http://"+addr+path); err != nil || code != http.StatusOK {
			t.Fatalf("scrape of %s: %d %v", path, code, err)
		}
	}
	if got := kong.fetches.Load() - before; got != 0 {
		t.Errorf("%d more scrapes of both within the interval made %d fetches of Kong, want 0", 2*n, got)
	}
}

package kongsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
)

func newDefault(t *testing.T) *Simulator {
	t.Helper()
	s, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newParser() expfmt.TextParser { return expfmt.NewTextParser(model.UTF8Validation) }

func parseMetrics(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	parser := newParser()
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the body does not parse: %v", err)
	}
	return fams
}

// findSeries returns the metric of family name whose labels include want, or
// nil.
func findSeries(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	for _, m := range fams[name].GetMetric() {
		lv := labelValues(m)
		match := true
		for k, v := range want {
			match = match && lv[k] == v
		}
		if match {
			return m
		}
	}
	return nil
}

// fakeSleeps is a Config.Sleep that returns at once and keeps what it was
// asked to sleep.
type fakeSleeps struct {
	mu    sync.Mutex // Protects asked.
	asked []time.Duration
}

func (f *fakeSleeps) sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, d)
	return ctx.Err()
}

func (f *fakeSleeps) got() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.asked)
}

// TestProxySleep runs the tutorial's request through a real HTTP server
// and checks that the simulator sleeps the 100ms asked for and records
// exactly that as the upstream latency.
func TestProxySleep(t *testing.T) {
	cfg := DefaultConfig()
	var sleeps fakeSleeps
	cfg.Sleep = sleeps.sleep
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.ProxyHandler())
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/command/shell?cmd=sleep%200.1")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %s", resp.StatusCode, body)
	}
	if got := sleeps.got(); !slices.Equal(got, []time.Duration{100 * time.Millisecond}) {
		t.Errorf("slept %v, want [100ms]", got)
	}

	fams := parseMetrics(t, writeMetrics(t, s))
	cmd := map[string]string{"service": "kong.command.80", "route": "kong.command.command.api.example.com.80", "workspace": "default"}
	up := findSeries(fams, "kong_upstream_latency_ms", cmd).GetHistogram()
	if up.GetSampleCount() != 1 {
		t.Fatalf("upstream latency count %d, want 1", up.GetSampleCount())
	}
	upMs := up.GetSampleSum()
	if upMs != 100 {
		t.Errorf("upstream latency %v ms, want the 100 ms slept", upMs)
	}
	if h := resp.Header.Get("X-Kong-Upstream-Latency"); h != strconv.Itoa(int(upMs)) {
		t.Errorf("X-Kong-Upstream-Latency %q, recorded %v", h, upMs)
	}
	if got := findSeries(fams, "kong_request_latency_ms", cmd).GetHistogram().GetSampleSum(); got != upMs+1 {
		t.Errorf("request latency %v ms, want upstream + 1ms of Kong latency = %v", got, upMs+1)
	}
	if got := findSeries(fams, "kong_kong_latency_ms", cmd).GetHistogram().GetSampleSum(); got != 1 {
		t.Errorf("kong latency %v ms, want 1", got)
	}
	ok := findSeries(fams, "kong_http_requests_total", map[string]string{"service": "kong.command.80", "code": "200", "source": "service", "consumer": ""})
	if ok.GetCounter().GetValue() != 1 {
		t.Errorf("kong_http_requests_total for 200 is %v, want 1", ok.GetCounter().GetValue())
	}
	for _, dir := range []string{"ingress", "egress"} {
		b := findSeries(fams, "kong_bandwidth_bytes", map[string]string{"service": "kong.command.80", "direction": dir})
		if b.GetCounter().GetValue() < 50 {
			t.Errorf("%s bytes %v, want at least the request or response line", dir, b.GetCounter().GetValue())
		}
	}
}

// TestProxyResponses covers the upstream's answers and what each records.
func TestProxyResponses(t *testing.T) {
	for _, tc := range []struct {
		name       string
		path       string
		wantCode   int
		recorded   bool // whether kong_http_requests_total counts it
		wantSource string
	}{
		{"no command", "/command/shell", 200, true, SourceService},
		{"sleep 0", "/command/shell?cmd=sleep%200", 200, true, SourceService},
		{"other command", "/command/shell?cmd=ls%20-l", 400, true, SourceService},
		{"bad interval", "/command/shell?cmd=sleep%20soon", 400, true, SourceService},
		{"negative interval", "/command/shell?cmd=sleep%20-1", 400, true, SourceService},
		{"too long", "/command/shell?cmd=sleep%2061", 400, true, SourceService},
		{"prefix without boundary, as Kong matches", "/commander", 200, true, SourceService},
		{"no route", "/billing/x", 404, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newDefault(t)
			rec := httptest.NewRecorder()
			s.ProxyHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if rec.Code != tc.wantCode {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.wantCode, rec.Body)
			}
			fams := parseMetrics(t, writeMetrics(t, s))
			m := findSeries(fams, "kong_http_requests_total", map[string]string{"code": strconv.Itoa(tc.wantCode)})
			switch {
			case !tc.recorded && len(fams["kong_http_requests_total"].GetMetric()) > 0:
				t.Errorf("recorded %v, Kong records nothing without a service", fams["kong_http_requests_total"])
			case tc.recorded && m.GetCounter().GetValue() != 1:
				t.Errorf("kong_http_requests_total{code=%d} is %v, want 1", tc.wantCode, m.GetCounter().GetValue())
			case tc.recorded && labelValues(m)["source"] != tc.wantSource:
				t.Errorf("source %q, want %q", labelValues(m)["source"], tc.wantSource)
			}
		})
	}
}

// TestProxyClientGone checks that a client leaving during the sleep is
// recorded as nginx's 499, with no upstream latency.
func TestProxyClientGone(t *testing.T) {
	cfg := DefaultConfig()
	sleeping := make(chan struct{})
	recorded := make(chan struct{})
	cfg.Sleep = func(ctx context.Context, d time.Duration) error {
		close(sleeping)
		<-ctx.Done() // the sleep outlasts the client, however slow the machine
		return ctx.Err()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	proxy := s.ProxyHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(recorded)
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-sleeping
		cancel()
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/command/shell?cmd=sleep%205", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := http.DefaultClient.Do(req); !errors.Is(err, context.Canceled) {
		if err == nil {
			resp.Body.Close()
		}
		t.Fatalf("got %v, want the client's cancellation", err)
	}
	select {
	case <-recorded:
	case <-time.After(time.Minute): // only turns a hang into a failure
		t.Fatal("the proxy handler has not returned a minute after the client left")
	}
	fams := parseMetrics(t, writeMetrics(t, s))
	m := findSeries(fams, "kong_http_requests_total", map[string]string{"code": "499"})
	if m == nil {
		t.Fatalf("the abandoned request was not recorded as 499: %v", fams["kong_http_requests_total"])
	}
	if _, ok := fams["kong_upstream_latency_ms"]; ok {
		t.Errorf("a 499 recorded upstream latency")
	}
	if got := labelValues(m)["source"]; got != SourceService {
		t.Errorf("source %q, want %q", got, SourceService)
	}
}

// TestMetricsEndpoint checks /metrics as a client sees it.
func TestMetricsEndpoint(t *testing.T) {
	s := fixtureSimulator(t)
	srv := httptest.NewServer(s.StatusHandler())
	defer srv.Close()

	req, err := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Setting Accept-Encoding ourselves turns off the client's transparent
	// decompression, so a compressed body would show.
	req.Header.Set("Accept-Encoding", "gzip, deflate, br")
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,application/vnd.google.protobuf;q=0.9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Type"); got != "text/plain; charset=UTF-8" {
		t.Errorf("Content-Type %q", got)
	}
	if got := resp.Header.Get("Content-Encoding"); got != "" {
		t.Errorf("Content-Encoding %q, Kong never compresses", got)
	}
	if resp.ContentLength != -1 || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("Content-Length %d, Transfer-Encoding %v; want chunked", resp.ContentLength, resp.TransferEncoding)
	}
	if want := readFixture(t); !bytes.Equal(body, want) {
		t.Errorf("body differs from the fixture: %s", golden.FirstDiff(want, body))
	}
}

func TestStatusEndpoints(t *testing.T) {
	s := newDefault(t)
	for _, tc := range []struct {
		method, path string
		wantCode     int
		wantBody     string // a substring
	}{
		{http.MethodGet, "/status", 200, `"database":{"reachable":true}`},
		{http.MethodGet, "/status/ready", 200, `{"message":"ready"}`},
		{http.MethodHead, "/metrics", 200, ""},
		{http.MethodPost, "/metrics", 405, `"Method not allowed"`},
		{http.MethodGet, "/nothing", 404, `"Not found"`},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			s.StatusHandler().ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.wantCode {
				t.Fatalf("status %d, want %d", rec.Code, tc.wantCode)
			}
			if !strings.Contains(rec.Body.String(), tc.wantBody) {
				t.Errorf("body %q lacks %q", rec.Body, tc.wantBody)
			}
			if tc.wantCode == 200 && tc.path != "/metrics" && !json.Valid(rec.Body.Bytes()) {
				t.Errorf("body %q is not JSON", rec.Body)
			}
			if tc.method == http.MethodHead && rec.Body.Len() != 0 {
				t.Errorf("HEAD returned a body of %d bytes", rec.Body.Len())
			}
		})
	}
}

// TestMetricsFetches counts every GET /metrics, and nothing else: not a
// HEAD, a refused POST, /status, nor the stats themselves.
func TestMetricsFetches(t *testing.T) {
	s := newDefault(t)
	status, stats := s.StatusHandler(), s.StatsHandler()
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, "/metrics"}, {http.MethodHead, "/metrics"}, {http.MethodPost, "/metrics"},
		{http.MethodGet, "/status"}, {http.MethodGet, "/metrics"},
	} {
		status.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(r.method, r.path, nil))
	}
	for range 2 { // reading the stats counts no fetch
		rec := httptest.NewRecorder()
		stats.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stats", nil))
		if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != `{"metrics_fetches":2}` {
			t.Fatalf("GET /stats: %d %q, want 200 {\"metrics_fetches\":2}", rec.Code, rec.Body)
		}
	}
	if got := s.MetricsFetches(); got != 2 {
		t.Errorf("MetricsFetches() = %d, want 2", got)
	}
	rec := httptest.NewRecorder()
	stats.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/stats", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /stats: %d, want 405", rec.Code)
	}
}

// TestConcurrentRecording scrapes while requests are recorded, for -race.
func TestConcurrentRecording(t *testing.T) {
	s := newDefault(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			s.Record(Request{Service: "kong.command.80", Route: "r", Code: 200, RequestMs: 3, UpstreamMs: 2, KongMs: 1, BytesIn: 1, BytesOut: 1})
		}
	}()
	for range 20 {
		if err := s.WriteMetrics(io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	fams := parseMetrics(t, writeMetrics(t, s))
	if got := findSeries(fams, "kong_http_requests_total", map[string]string{"route": "r"}).GetCounter().GetValue(); got != 200 {
		t.Errorf("counted %v requests, want 200", got)
	}
}

// TestRealSleepEndsWithTheClient: without Config.Sleep the sleep is a
// real timer, and a client already gone ends it at once (a minute's sleep
// would otherwise outlast the test's timeout) as a 499.
func TestRealSleepEndsWithTheClient(t *testing.T) {
	s := newDefault(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequest(http.MethodGet, "/command/shell?cmd=sleep%2060", nil).WithContext(ctx)
	s.ProxyHandler().ServeHTTP(httptest.NewRecorder(), req)
	fams := parseMetrics(t, writeMetrics(t, s))
	if m := findSeries(fams, "kong_http_requests_total", map[string]string{"code": "499"}); m.GetCounter().GetValue() != 1 {
		t.Errorf("kong_http_requests_total{code=\"499\"} = %v, want 1", m.GetCounter().GetValue())
	}
}

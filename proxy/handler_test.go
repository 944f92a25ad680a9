package proxy_test

import (
	"bytes"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/proxy"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// TestScrapeFixture is the tutorial's case end to end: Kong's sample page,
// kong/command with latency on.
func TestScrapeFixture(t *testing.T) {
	fixture := readFixture(t)
	up := newUpstream(t, serveKong(fixture))
	h := newHandler(t, proxy.Options{UpstreamURL: up.URL})

	s := scrape(t, h, nil)
	checkGolden(t, s.kong)

	const added = `kubernetes_namespace="kong",kubernetes_name="command",kubernetes_kind="Service",exported_namespace="kong",exported_service="command"`
	for _, want := range []string{
		`kong_upstream_latency_ms_sum{kong_service="kong.command.80",route="kong.command.command.api.example.com.80",workspace="default",` + added + "} 52221\n",
		`kong_upstream_latency_ms_count{kong_service="kong.command.80",route="kong.command.command.api.example.com.80",workspace="default",` + added + "} 1800\n",
	} {
		if !bytes.Contains(s.kong, []byte(want)) {
			t.Errorf("Kong part lacks %s", want)
		}
	}
	for _, unwanted := range []string{"billing", "echo", `{service="`, `,service="`} {
		if bytes.Contains(s.kong, []byte(unwanted)) {
			t.Errorf("Kong part contains %q:\n%s", unwanted, s.kong)
		}
	}

	// Exactly the three latency families of kong/command, each a histogram
	// with the labels the tutorial's queries use.
	wantLabels := map[string]string{
		"kong_service":         "kong.command.80",
		"route":                "kong.command.command.api.example.com.80",
		"workspace":            "default",
		"kubernetes_namespace": "kong",
		"kubernetes_name":      "command",
		"kubernetes_kind":      "Service",
		"exported_namespace":   "kong",
		"exported_service":     "command",
	}
	var kongFamilies []string
	for name := range s.families {
		if !strings.HasPrefix(name, ownPrefix) {
			kongFamilies = append(kongFamilies, name)
		}
	}
	slices.Sort(kongFamilies)
	if want := []string{"kong_kong_latency_ms", "kong_request_latency_ms", "kong_upstream_latency_ms"}; !slices.Equal(kongFamilies, want) {
		t.Errorf("Kong families %v, want %v", kongFamilies, want)
	}
	for _, name := range kongFamilies {
		mf := s.families[name]
		if mf.GetType() != dto.MetricType_HISTOGRAM || len(mf.GetMetric()) != 1 {
			t.Errorf("%s: type %v with %d series, want one histogram", name, mf.GetType(), len(mf.GetMetric()))
			continue
		}
		if got := labelMap(mf.GetMetric()[0]); !maps.Equal(got, wantLabels) {
			t.Errorf("%s labels\n got %v\nwant %v", name, got, wantLabels)
		}
	}
	if hist := s.families["kong_upstream_latency_ms"].GetMetric()[0].GetHistogram(); hist.GetSampleCount() != 1800 || hist.GetSampleSum() != 52221 {
		t.Errorf("kong_upstream_latency_ms count %d sum %v, want 1800 and 52221", hist.GetSampleCount(), hist.GetSampleSum())
	}

	s.checkUp(t, 1, nil)
	s.checkKept(t)
	if got := s.value(t, ownPrefix+"series_kept"); got == 0 {
		t.Error("series_kept = 0 for the tutorial's selection")
	}
	// The fixture's httproute.default.echo.0 names an HTTPRoute rule, as
	// its Kong service and its upstream: one name no rule resolves.
	if got := s.value(t, ownPrefix+"unresolved_kong_services"); got != 1 {
		t.Errorf("unresolved_kong_services = %v, want 1 (httproute.default.echo.0)", got)
	}
	if got := s.value(t, ownPrefix+"upstream_fetches_total"); got != 1 {
		t.Errorf("upstream_fetches_total = %v, want 1", got)
	}
	if got := s.value(t, ownPrefix+"upstream_response_bytes"); got != float64(len(fixture)) {
		t.Errorf("upstream_response_bytes = %v, want %d", got, len(fixture))
	}
	// Every series line of the page is either kept or dropped for a reason.
	total := s.value(t, ownPrefix+"series_kept")
	for _, r := range relabel.DropReasons {
		total += s.value(t, ownPrefix+"series_dropped", "reason", r.String())
	}
	if want := float64(seriesLines(fixture)); total != want {
		t.Errorf("series_kept + series_dropped = %v, the page has %v series lines", total, want)
	}
	if hist := s.families[ownPrefix+"upstream_fetch_duration_seconds"].GetMetric(); len(hist) != 1 || hist[0].GetHistogram().GetSampleCount() != 1 {
		t.Errorf("upstream_fetch_duration_seconds: %v, want one histogram with one observation", hist)
	}
}

func TestGzip(t *testing.T) {
	up := newUpstream(t, serveKong(readFixture(t)))
	h := newHandler(t, proxy.Options{UpstreamURL: up.URL})
	plain := scrape(t, h, nil)

	tests := []struct {
		acceptEncoding string
		gzip           bool
	}{
		{"gzip", true},
		{"gzip, deflate, br", true},
		{"br;q=1.0, gzip;q=0.8", true},
		{"GZIP", true},
		{"gzip;q=0", false},
		{"gzip; q=0", false},
		{"gzip;q=0.000", false},
		{"deflate, br", false},
		{"identity", false},
		{"", false},
	}
	for _, tc := range tests {
		t.Run(tc.acceptEncoding, func(t *testing.T) {
			rec := serve(h, http.MethodGet, "/metrics", http.Header{"Accept-Encoding": {tc.acceptEncoding}})
			gzipped := bytes.HasPrefix(rec.Body.Bytes(), []byte{0x1f, 0x8b})
			if ce := rec.Header().Get("Content-Encoding"); (ce == "gzip") != tc.gzip || gzipped != tc.gzip {
				t.Fatalf("Content-Encoding %q, gzip magic %v; want gzip %v", ce, gzipped, tc.gzip)
			}
			if !slices.Contains(rec.Header().Values("Vary"), "Accept-Encoding") {
				t.Errorf("Vary %q lacks Accept-Encoding", rec.Header().Values("Vary"))
			}
			s := checkAnswer(t, rec)
			if got, want := stable(s.body), stable(plain.body); got != want {
				t.Errorf("answer differs from the uncompressed one\n got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// stable drops the own metrics that change from one fetch to the next.
func stable(body []byte) string {
	var b strings.Builder
	for line := range bytes.Lines(body) {
		if !bytes.Contains(line, []byte("upstream_fetch_duration_seconds")) && !bytes.Contains(line, []byte("upstream_fetches_total")) {
			b.Write(line)
		}
	}
	return b.String()
}

func TestMethods(t *testing.T) {
	up := newUpstream(t, serveKong(readFixture(t)))
	h := newHandler(t, proxy.Options{UpstreamURL: up.URL})

	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		t.Run(method, func(t *testing.T) {
			rec := serve(h, method, "/metrics", nil)
			if rec.Code != http.StatusMethodNotAllowed {
				t.Errorf("status %d, want 405", rec.Code)
			}
			if got := rec.Header().Get("Allow"); got != "GET, HEAD" {
				t.Errorf("Allow %q, want \"GET, HEAD\"", got)
			}
		})
	}
	if n := up.requests.Load(); n != 0 {
		t.Errorf("refused methods made %d upstream requests", n)
	}

	for _, acceptEncoding := range []string{"", "gzip"} {
		t.Run("HEAD Accept-Encoding="+acceptEncoding, func(t *testing.T) {
			rec := serve(h, http.MethodHead, "/metrics", http.Header{"Accept-Encoding": {acceptEncoding}})
			if rec.Code != http.StatusOK {
				t.Errorf("status %d, want 200", rec.Code)
			}
			if ct := rec.Header().Get("Content-Type"); ct != proxy.ContentType {
				t.Errorf("Content-Type %q, want %q", ct, proxy.ContentType)
			}
			if rec.Body.Len() != 0 {
				t.Errorf("HEAD answered with a %d-byte body: %q", rec.Body.Len(), rec.Body.Bytes())
			}
		})
	}
}

// TestHealthWhileUpstreamDown: the probes never depend on Kong.
func TestHealthWhileUpstreamDown(t *testing.T) {
	h := newHandler(t, proxy.Options{UpstreamURL: closedURL(t)})
	mux := proxy.NewMux(h)

	for _, path := range []string{"/healthz", "/readyz"} {
		t.Run(path, func(t *testing.T) {
			rec := serve(mux, http.MethodGet, path, nil)
			if rec.Code != http.StatusOK || rec.Body.String() != "ok\n" {
				t.Errorf("GET %s: %d %q, want 200 \"ok\\n\"", path, rec.Code, rec.Body)
			}
		})
	}
	if rec := serve(mux, http.MethodGet, "/nothing", nil); rec.Code != http.StatusNotFound {
		t.Errorf("GET /nothing: status %d, want 404", rec.Code)
	}
	// Kong's page through the mux: down, and the probes above fetched nothing.
	s := checkAnswer(t, serve(mux, http.MethodGet, "/metrics", nil))
	s.checkNoKong(t)
	s.checkUp(t, 0, map[string]float64{"connect": 1})
	if got := s.value(t, ownPrefix+"upstream_fetches_total"); got != 1 {
		t.Errorf("upstream_fetches_total = %v after the probes and one scrape, want 1", got)
	}
}

// TestConfigChange: each scrape uses the rewriter of the configuration in
// use when it arrives.
func TestConfigChange(t *testing.T) {
	up := newUpstream(t, serveKong(readFixture(t)))
	var current atomic.Pointer[relabel.Rewriter]
	h := newHandler(t, proxy.Options{UpstreamURL: up.URL, Rewriter: current.Load})

	latency := commandLatency()
	steps := []struct {
		rw   *relabel.Rewriter
		want []string // the Kong families of the answer
	}{
		{latency, []string{"kong_kong_latency_ms", "kong_request_latency_ms", "kong_upstream_latency_ms"}},
		{billingBandwidth(), []string{"kong_bandwidth_bytes"}},
		{relabel.New(relabel.Selection{}), nil},
		{latency, []string{"kong_kong_latency_ms", "kong_request_latency_ms", "kong_upstream_latency_ms"}},
	}
	for i, step := range steps {
		current.Store(step.rw)
		s := scrape(t, h, nil)
		var got []string
		for name, mf := range s.families {
			if strings.HasPrefix(name, ownPrefix) {
				continue
			}
			got = append(got, name)
			for _, m := range mf.GetMetric() {
				if want := step.rw.Selection(); want.Services[relabel.Service{
					Namespace: labelValue(m, "kubernetes_namespace"),
					Name:      labelValue(m, "kubernetes_name"),
				}] == 0 {
					t.Errorf("step %d: %s has a series of an unselected Service: %v", i, name, labelMap(m))
				}
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, step.want) {
			t.Errorf("step %d: Kong families %v, want %v", i, got, step.want)
		}
		s.checkUp(t, 1, nil)
		s.checkKept(t)
	}
}

// TestConfigChangeDuringFetch: a scrape that arrives after a configuration
// change, while a fetch for the old one is still running, does not get a
// page rewritten for the old selection.
func TestConfigChangeDuringFetch(t *testing.T) {
	fixture := readFixture(t)
	arrived := make(chan struct{}, 8)
	release := make(chan struct{})
	var fetches atomic.Int32
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if fetches.Add(1) == 1 {
			arrived <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		serveKong(fixture)(w, r)
	})
	var current atomic.Pointer[relabel.Rewriter]
	current.Store(commandLatency())
	h := newHandler(t, proxy.Options{UpstreamURL: up.URL, Rewriter: current.Load})

	before, during := make(chan []byte, 1), make(chan []byte, 1)
	go func() { before <- serve(h, http.MethodGet, "/metrics", nil).Body.Bytes() }()
	waitFor(t, arrived, "the first fetch")
	current.Store(billingBandwidth())
	go func() { during <- serve(h, http.MethodGet, "/metrics", nil).Body.Bytes() }()
	// Both scrapes wait in the handler; one that started a fetch of its
	// own shows in the count below.
	waitForScrapes(2)
	close(release)

	check := func(name string, body []byte, want string) {
		t.Helper()
		parseStrictly(t, body)
		lines := kongLines(splitKong(t, body))
		if len(lines) == 0 {
			t.Errorf("%s: no Kong series", name)
		}
		for _, l := range lines {
			if !strings.Contains(l, want) {
				t.Errorf("%s: got %q, want only %s: one configuration per answer", name, l, want)
				break
			}
		}
	}
	for _, tc := range []struct {
		name string
		body chan []byte
	}{{"scrape before the change", before}, {"scrape joining the fetch after the change", during}} {
		select {
		case body := <-tc.body:
			check(tc.name, body, "_latency_ms")
		case <-time.After(time.Minute): // only turns a hang into a failure
			t.Fatalf("%s: no answer", tc.name)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("%d upstream fetches while one was under way, want 1: Kong is never fetched twice at once", n)
	}
	// The next scrape uses the new configuration.
	check("scrape after the fetch", serve(h, http.MethodGet, "/metrics", nil).Body.Bytes(), "kong_bandwidth_bytes")
}

// waitFor receives from ch, or fails after a deadline.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute): // only turns a hang into a failure
		t.Fatalf("timed out waiting for %s", what)
	}
}

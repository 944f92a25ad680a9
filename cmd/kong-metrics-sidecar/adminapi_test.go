package main

import (
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

const adminKongPage = `# HELP kong_http_requests_total HTTP status codes per consumer/service/route in Kong
# TYPE kong_http_requests_total counter
kong_http_requests_total{service="httproute.kong.command.0",route="httproute.kong.command.0.0",code="200",source="service",workspace="default",consumer=""} 5
kong_http_requests_total{service="httproute.kong.multi.0",route="httproute.kong.multi.0.0",code="200",source="service",workspace="default",consumer=""} 7
`

const adminServices = `{"data":[
{"name":"httproute.kong.command.0","tags":["k8s-name:command","k8s-namespace:kong","k8s-kind:Service","k8s-version:v1"]},
{"name":"httproute.kong.multi.0","tags":["k8s-name:multi","k8s-namespace:kong","k8s-kind:HTTPRoute","k8s-version:v1"]}
],"next":null}`

const adminExtension = `kind: DataPlaneMetricsExtension
apiVersion: gateway-operator.konghq.com/v1alpha1
metadata:
  name: kong
  namespace: kong
spec:
  serviceSelector:
    matchNames:
    - name: command
    - name: multi
  config:
    statusCode: true
`

// fakeAdmin is an Admin API the test switches between states.
type fakeAdmin struct {
	state     atomic.Value // "down", "up" or "slow"
	requests  atomic.Int32
	slowEnded atomic.Int32  // slow requests that have ended, released or given up on
	release   chan struct{} // closed to end slow requests
}

func (a *fakeAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.requests.Add(1)
	switch a.state.Load() {
	case "up":
		_, _ = io.WriteString(w, adminServices)
	case "slow":
		defer a.slowEnded.Add(1)
		select {
		case <-a.release:
		case <-r.Context().Done():
		}
		http.Error(w, "gave up", http.StatusServiceUnavailable)
	default:
		http.Error(w, "down", http.StatusServiceUnavailable)
	}
}

// TestAdminAPIDownSlowAndUp runs the sidecar against an Admin API that is
// down at start, comes up, turns slow and goes down again: /metrics keeps
// answering throughout without waiting for it, the error counter moves, the tags resolve
// httproute.kong.command.0 once known and survive the outage, and the
// multi-backend service is dropped as multi_backend.
func TestAdminAPIDownSlowAndUp(t *testing.T) {
	bin := buildSidecar(t)
	kong := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = io.WriteString(w, adminKongPage)
	}))
	defer kong.Close()
	admin := &fakeAdmin{release: make(chan struct{})}
	admin.state.Store("down")
	adminSrv := httptest.NewServer(admin)
	defer adminSrv.Close()
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(admin.release) })

	configFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(configFile, []byte(adminExtension), 0o644); err != nil {
		t.Fatal(err)
	}
	addr, p := startSidecar(t, bin,
		"SIDECAR_UPSTREAM_URL="+kong.URL+"/metrics",
		"SIDECAR_CONFIG_FILE="+configFile,
		"SIDECAR_KONG_ADMIN_URL="+adminSrv.URL,
		"SIDECAR_KONG_ADMIN_REFRESH_INTERVAL=100ms",
		"SIDECAR_LOG_FORMAT=text",
	)
	if err := harness.WaitHTTP("http://"+addr+"/readyz", p, hangTimeout); err != nil {
		t.Fatal(err)
	}
	// The client's timeout only turns a hang into a failure; that scrapes
	// do not wait for the Admin API is checked by events below.
	client := &http.Client{Timeout: time.Minute}
	scrape := func() string {
		t.Helper()
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("scrape: %v, %s", err, resp.Status)
		}
		return string(body)
	}
	// waitFor scrapes until cond holds, with a deadline.
	waitFor := func(what string, cond func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(time.Minute) // only turns a hang into a failure
		for {
			body := scrape()
			if cond(body) {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not in time; last scrape:\n%s\nsidecar output:\n%s", what, body, p.Output())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	resolved := func(b string) bool { return strings.Contains(b, `kong_service="httproute.kong.command.0"`) }

	// Down at start: metrics flow, nothing resolves, errors are counted.
	body := waitFor("status errors counted", func(b string) bool {
		return metricValue(b, `kong_metrics_sidecar_admin_api_refresh_errors_total{kind="status"}`) >= 1
	})
	if resolved(body) || metricValue(body, "kong_metrics_sidecar_upstream_up") != 1 || metricValue(body, "kong_metrics_sidecar_admin_api_up") != 0 {
		t.Fatalf("down at start:\n%s", body)
	}

	// Up: the HTTPRoute rule resolves through its tags, the multi-backend one is dropped.
	admin.state.Store("up")
	body = waitFor("resolved through tags", resolved)
	if !strings.Contains(body, `kubernetes_name="command"`) || strings.Contains(body, `kong_service="httproute.kong.multi.0"`) {
		t.Fatalf("after the Admin API came up:\n%s", body)
	}
	body = waitFor("multi_backend counted", func(b string) bool {
		return metricValue(b, `kong_metrics_sidecar_series_dropped{reason="multi_backend"}`) == 1 && metricValue(b, "kong_metrics_sidecar_admin_api_up") == 1
	})
	if metricValue(body, "kong_metrics_sidecar_admin_api_services") != 2 {
		t.Errorf("admin_api_services:\n%s", body)
	}

	// Slow: with a refresh hanging on the Admin API, scrapes keep the last
	// mapping and do not wait for it. A slow request ends only when the
	// refresh gives up on it (kongadmin's 10 s) or at release, so a scrape
	// that waited for the refresh would see one end while it ran; a scrape
	// that does not wait sees none end, unless the refresh's own timeout
	// happens to fall inside it, which cannot happen to all of five.
	admin.state.Store("slow")
	before := admin.requests.Load()
	for admin.requests.Load() == before {
		if !resolved(scrape()) {
			t.Fatal("the mapping was lost while the Admin API is slow")
		}
	}
	waited := 0
	for range 5 {
		ended := admin.slowEnded.Load()
		if !resolved(scrape()) {
			t.Fatal("the mapping was lost while the Admin API is slow")
		}
		if admin.slowEnded.Load() != ended {
			waited++
		}
	}
	if waited == 5 {
		t.Error("every scrape lasted until a hanging Admin API request ended: scrapes wait for the refresh")
	}

	// Down later: the counter moves on, the last mapping stays.
	admin.state.Store("down")
	releaseOnce.Do(func() { close(admin.release) })
	errs := metricValue(scrape(), `kong_metrics_sidecar_admin_api_refresh_errors_total{kind="status"}`)
	body = waitFor("errors move on", func(b string) bool {
		return metricValue(b, `kong_metrics_sidecar_admin_api_refresh_errors_total{kind="status"}`) > errs
	})
	if !resolved(body) || metricValue(body, "kong_metrics_sidecar_admin_api_up") != 0 {
		t.Fatalf("down later:\n%s", body)
	}
}

// metricValue returns the value of the series written exactly as series
// in body, or -1.
func metricValue(body, series string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

// TestAdminAPICAFileFollowed: the sidecar follows the Admin API's CA file
// (main starts the Client's FollowFiles): missing at start, every refresh
// fails as tls; once written, the Admin API is read without a restart.
func TestAdminAPICAFileFollowed(t *testing.T) {
	bin := buildSidecar(t)
	kong := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = io.WriteString(w, adminKongPage)
	}))
	defer kong.Close()
	adminSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, adminServices)
	}))
	defer adminSrv.Close()
	dir := t.TempDir()
	configFile, caFile := filepath.Join(dir, "config.yaml"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(configFile, []byte(adminExtension), 0o644); err != nil {
		t.Fatal(err)
	}
	addr, p := startSidecar(t, bin,
		"SIDECAR_UPSTREAM_URL="+kong.URL+"/metrics",
		"SIDECAR_CONFIG_FILE="+configFile,
		"SIDECAR_KONG_ADMIN_URL="+adminSrv.URL,
		"SIDECAR_KONG_ADMIN_CA_FILE="+caFile,
		"SIDECAR_KONG_ADMIN_REFRESH_INTERVAL=100ms",
		"SIDECAR_LOG_FORMAT=text",
	)
	waitMetric := func(what, series string, cond func(float64) bool) {
		t.Helper()
		deadline := time.Now().Add(hangTimeout)
		for {
			body, err := harness.Get(t.Context(), "http://"+addr+"/metrics")
			if err == nil && cond(metricValue(string(body), series)) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not in time (%v); sidecar output:\n%s", what, err, p.Output())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitMetric("tls errors while the CA file is missing", `kong_metrics_sidecar_admin_api_refresh_errors_total{kind="tls"}`, func(v float64) bool { return v >= 1 })
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: adminSrv.Certificate().Raw})
	if err := os.WriteFile(caFile, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	waitMetric("the Admin API read once the CA file is there", "kong_metrics_sidecar_admin_api_up", func(v float64) bool { return v == 1 })
}

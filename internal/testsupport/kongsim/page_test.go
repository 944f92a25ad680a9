package kongsim

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
)

// TestPageSize checks the page against the sizes the fixture README gives
// for Kong with every toggle on.
func TestPageSize(t *testing.T) {
	for _, tc := range []struct {
		routes    int
		wantLines int
		wantBytes int
	}{
		{100, 6_000, 900_000},
		{1000, 61_000, 9_400_000},
	} {
		var b bytes.Buffer
		if err := WritePage(&b, tc.routes); err != nil {
			t.Fatal(err)
		}
		lines := bytes.Count(b.Bytes(), []byte("\n"))
		if !within(lines, tc.wantLines, 0.05) {
			t.Errorf("%d routes: %d lines, want %d ± 5%%", tc.routes, lines, tc.wantLines)
		}
		if !within(b.Len(), tc.wantBytes, 0.07) {
			t.Errorf("%d routes: %d bytes, want %d ± 7%%", tc.routes, b.Len(), tc.wantBytes)
		}
	}
}

func within(got, want int, tolerance float64) bool {
	d := float64(got - want)
	return d >= -tolerance*float64(want) && d <= tolerance*float64(want)
}

// countingWriter records how the page reaches its writer.
type countingWriter struct {
	writes, bytes, largest int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	w.bytes += len(p)
	w.largest = max(w.largest, len(p))
	return len(p), nil
}

// TestPageStreams checks that the page goes out in pieces of 100 lines
// instead of being assembled in memory first.
func TestPageStreams(t *testing.T) {
	var w countingWriter
	if err := WritePage(&w, 1000); err != nil {
		t.Fatal(err)
	}
	if w.largest > 64<<10 {
		t.Errorf("largest write %d bytes, want pieces of 100 lines", w.largest)
	}
	if w.writes < 600 {
		t.Errorf("%d writes for %d bytes, want one per 100 lines", w.writes, w.bytes)
	}
}

func TestPageDeterministic(t *testing.T) {
	var a, b bytes.Buffer
	if err := WritePage(&a, 200); err != nil {
		t.Fatal(err)
	}
	if err := WritePage(&b, 200); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Errorf("two pages of 200 routes differ: %s", golden.FirstDiff(b.Bytes(), a.Bytes()))
	}
	// Route i does not depend on the page's size.
	small, large := PageServices(10), PageServices(20)
	for i := range small {
		if small[i].Name != large[i].Name || !slices.Equal(small[i].Targets, large[i].Targets) {
			t.Errorf("service %d differs between pages of 10 and 20 routes", i)
		}
	}
}

// TestPageServices checks the Kong Ingress Controller's naming.
func TestPageServices(t *testing.T) {
	ingress := regexp.MustCompile(`^(ns\d+)\.(svc-\d+)\.(\d+)$`)
	httproute := regexp.MustCompile(`^httproute\.(ns\d+)\.route-\d+\.\d$`)
	svcs := PageServices(1000)
	if len(svcs) != 1000 {
		t.Fatalf("%d services, want 1000", len(svcs))
	}
	routes := 0
	names := map[string]bool{}
	for _, svc := range svcs {
		if names[svc.Name] {
			t.Errorf("service name %q twice", svc.Name)
		}
		names[svc.Name] = true
		if svc.Namespace == "" || svc.ServiceName == "" || len(svc.Targets) == 0 {
			t.Errorf("service %q lacks a namespace, Service name or target", svc.Name)
		}
		if m := ingress.FindStringSubmatch(svc.Name); m != nil {
			if m[1] != svc.Namespace || m[2] != svc.ServiceName {
				t.Errorf("service %q is not for %s/%s", svc.Name, svc.Namespace, svc.ServiceName)
			}
			if want := m[2] + "." + m[1] + "." + m[3] + ".svc"; svc.Upstream != want {
				t.Errorf("service %q has upstream %q, want %q", svc.Name, svc.Upstream, want)
			}
			if !strings.HasPrefix(svc.Route, m[1]+"."+m[2]+"."+m[2]+".") || !strings.HasSuffix(svc.Route, "."+m[3]) {
				t.Errorf("service %q has route %q", svc.Name, svc.Route)
			}
			continue
		}
		if m := httproute.FindStringSubmatch(svc.Name); m == nil || m[1] != svc.Namespace || svc.Upstream != svc.Name {
			t.Errorf("service %q (upstream %q) follows no naming rule", svc.Name, svc.Upstream)
		}
		routes++
	}
	if routes != 250 {
		t.Errorf("%d HTTPRoute services of 1000, want 250", routes)
	}
}

// TestPageContent checks that the page has what makes Kong's pages hard:
// never-hit low buckets, fewer upstream than request latencies, responses
// from Kong itself, and targets in more than one state.
func TestPageContent(t *testing.T) {
	var b bytes.Buffer
	if err := WritePage(&b, 100); err != nil {
		t.Fatal(err)
	}
	fams := parseMetrics(t, b.Bytes())
	lowMissing, fewerUpstream := 0, 0
	for _, m := range fams["kong_upstream_latency_ms"].GetMetric() {
		h := m.GetHistogram()
		if h.GetBucket()[0].GetUpperBound() > 25 {
			lowMissing++
		}
		req := findSeries(fams, "kong_request_latency_ms", labelValues(m))
		if h.GetSampleCount() < req.GetHistogram().GetSampleCount() {
			fewerUpstream++
		}
	}
	if lowMissing == 0 || lowMissing > 50 {
		t.Errorf("%d of 100 upstream latency series miss their lowest bucket, want some", lowMissing)
	}
	if fewerUpstream == 0 {
		t.Errorf("no series has fewer upstream than request latencies")
	}
	if findSeries(fams, "kong_http_requests_total", map[string]string{"code": "401", "source": "kong"}) == nil {
		t.Errorf("no 401 answered by Kong")
	}
	states := map[string]bool{}
	for _, m := range fams["kong_upstream_target_health"].GetMetric() {
		if m.GetGauge().GetValue() == 1 {
			states[labelValues(m)["state"]] = true
		}
	}
	if len(states) < 2 {
		t.Errorf("targets are in states %v, want more than one", states)
	}
}

func TestNewPageKeepsConfiguredServices(t *testing.T) {
	s, err := NewPage(DefaultConfig(), 3)
	if err != nil {
		t.Fatal(err)
	}
	svcs := s.Services()
	if len(svcs) != 4 || svcs[0].Name != "kong.command.80" {
		t.Fatalf("services %v, want the command service and 3 generated", svcs)
	}
	// No traffic is generated for the configured service.
	fams := parseMetrics(t, writeMetrics(t, s))
	if findSeries(fams, "kong_http_requests_total", map[string]string{"service": "kong.command.80"}) != nil {
		t.Errorf("traffic recorded for a configured service")
	}
	if len(fams["kong_bandwidth_bytes"].GetMetric()) != 6 {
		t.Errorf("%d bandwidth series, want 2 per generated route", len(fams["kong_bandwidth_bytes"].GetMetric()))
	}
}

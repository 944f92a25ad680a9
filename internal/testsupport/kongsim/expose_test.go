package kongsim

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// TestOutputParses checks that bodies without a stream block parse with
// prometheus/common's strict text parser, and hold what was recorded.
func TestOutputParses(t *testing.T) {
	page := &bytes.Buffer{}
	if err := WritePage(page, 100); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		body         []byte
		wantFamilies int
		wantRequests int // series of kong_http_requests_total
	}{
		{"fixture traffic", writeMetrics(t, fixtureSimulator(t)), 15, 12},
		{"recorded golden case", goldenOutput(t, "recorded"), 15, 10},
		{"toggles-off golden case", goldenOutput(t, "toggles-off"), 9, 0},
		{"100-route page", page.Bytes(), 15, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fams := parseMetrics(t, tc.body)
			if len(fams) != tc.wantFamilies {
				t.Errorf("%d families, want %d", len(fams), tc.wantFamilies)
			}
			if got := len(fams["kong_http_requests_total"].GetMetric()); tc.wantRequests > 0 && got != tc.wantRequests {
				t.Errorf("%d kong_http_requests_total series, want %d", got, tc.wantRequests)
			}
		})
	}
}

// TestStreamBlock checks the stream listener's second block: it follows the
// http block unchanged and repeats # HELP and # TYPE of the families both
// subsystems have, which is why the strict parser rejects the body.
func TestStreamBlock(t *testing.T) {
	body := goldenOutput(t, "stream")
	s, err := New(Config{Services: FixtureServices()[:1], Toggles: AllToggles})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range goldenRequests(t, "stream") {
		s.Record(r)
	}
	httpOnly := writeMetrics(t, s)
	if !bytes.HasPrefix(body, httpOnly) {
		t.Fatalf("the body does not start with the http block")
	}
	stream := string(body[len(httpOnly):])
	for _, f := range []string{
		"kong_memory_lua_shared_dict_bytes",
		"kong_memory_lua_shared_dict_total_bytes",
		"kong_memory_workers_lua_vms_bytes",
		"kong_nginx_connections_total",
		"kong_nginx_metric_errors_total",
		"kong_nginx_requests_total",
		"kong_node_info",
		"kong_upstream_target_health",
	} {
		for _, kind := range []string{"# HELP ", "# TYPE "} {
			if n := bytes.Count(body, []byte(kind+f+" ")); n != 2 {
				t.Errorf("%s%s appears %d times, want 2", kind, f, n)
			}
		}
	}
	for _, f := range []string{"kong_datastore_reachable", "kong_nginx_timers", "kong_http_requests_total", "kong_kong_latency_ms"} {
		if strings.Contains(stream, f) {
			t.Errorf("the stream block has %s, which only the http subsystem sets", f)
		}
	}
	for _, want := range []string{
		`kong_nginx_connections_total{node_id="` + DefaultNodeID + `",subsystem="stream",state="total"} 7569`,
		`state="healthchecks_off",subsystem="stream"} 1`,
		`shared_dict="prometheus_metrics",kong_subsystem="stream"}`,
	} {
		if !strings.Contains(stream, want) {
			t.Errorf("the stream block lacks %s", want)
		}
	}
	if strings.Contains(stream, `subsystem="http"`) {
		t.Errorf("the stream block has http lines")
	}
	parser := newParser()
	_, err = parser.TextToMetricFamilies(bytes.NewReader(body))
	if err == nil || !strings.Contains(err.Error(), "second HELP line") {
		t.Errorf("the strict parser said %v, want it to reject the second # HELP line", err)
	}
}

func TestAppendLabelValue(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := string(appendLabelValue(nil, in)); got != want {
			t.Errorf("appendLabelValue(%q) = %q, want %q", in, got, want)
		}
	}
	f(`plain.name-1`, `plain.name-1`)
	f(`a"b`, `a\"b`)      // quote escaped
	f(`a\b`, `a\\b`)      // backslash escaped
	f("a\nb", "a\nb")     // newline left raw, as Kong does
	f("a\tb", "a\tb")     // so is any other control byte
	f("café", "café")     // valid UTF-8 kept
	f("ab\xffcd", "ab")   // cut at the first invalid byte
	f("ab\xc3", "ab")     // a truncated sequence is invalid too
	f("\xed\xa0\x80", "") // an encoded surrogate is invalid
	f("", "")
}

func TestAppendValue(t *testing.T) {
	f := func(in float64, want string) {
		t.Helper()
		if got := string(appendValue(nil, in)); got != want {
			t.Errorf("appendValue(%v) = %q, want %q", in, got, want)
		}
	}
	f(0, "0")
	f(2379975, "2379975")
	f(99999999999999, "99999999999999") // the largest plain integer
	f(1e14, "1e+14")                    // exponent form from 1e14, as %.14g
	f(123456789012345, "1.2345678901234e+14")
	f(0.5, "0.5")
	f(0.1+0.2, "0.3") // 14 significant digits hide the binary error
	f(math.Inf(1), "inf")
	f(math.NaN(), "nan")
}

func TestHistogramObserve(t *testing.T) {
	h := newHistogram(upstreamLatencyBuckets)
	h.observe(90, 1)
	h.observe(25, 2)
	h.observe(70000, 1)
	want := []float64{2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4}
	for i, c := range h.counts {
		if c != want[i] {
			t.Fatalf("counts %v, want %v", h.counts, want)
		}
	}
	if h.count != 4 || h.sum != 90+50+70000 {
		t.Errorf("count %v sum %v", h.count, h.sum)
	}
}

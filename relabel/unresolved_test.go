package relabel

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// TestRouteMappingAndUnresolved: the route mapping's multi-backend names
// and combined-services names with several backends drop as
// multi_backend, a mapping wins over both, each unresolved name is
// reported once per Rewriter and key kind and counted once per page, and the weight
// form of the tutorial's route resolves.
func TestRouteMappingAndUnresolved(t *testing.T) {
	sel := Selection{
		Services: map[Service]Metrics{command: StatusCode | UpstreamHealth, billing: StatusCode},
		Mappings: map[string]Service{"httproute.kong.command.0": command, "httproute.kong.both.0": billing},
		MultiBackend: map[string]struct{}{
			"httproute.kong.split.0": {},
			"httproute.kong.both.0":  {}, // the mapping wins
		},
	}
	var mu sync.Mutex
	var reported []string
	sel.OnUnresolved = func(name string) { mu.Lock(); reported = append(reported, name); mu.Unlock() }
	rw := New(sel)
	page := []byte(`kong_http_requests_total{service="httproute.kong.svc.kong.command.80.1",code="200"} 1
kong_http_requests_total{service="httproute.kong.command.0",code="200"} 1
kong_http_requests_total{service="httproute.kong.both.0",code="200"} 1
kong_http_requests_total{service="httproute.kong.split.0",code="200"} 1
kong_http_requests_total{service="httproute.kong.svc.kong.a.80.1_kong.b.80.1",code="200"} 1
kong_http_requests_total{service="httproute.kong.lost.0",code="200"} 1
kong_http_requests_total{service="httproute.kong.lost.0",code="404"} 1
kong_http_requests_total{code="500",service="httproute.kong.lost.0"} 1
kong_http_requests_total{service="mystery",code="200"} 1
kong_upstream_target_health{upstream="httproute.kong.svc.kong.command.80.1",target="10.0.0.1:80",address="10.0.0.1:80",state="healthy",subsystem="http"} 1
kong_upstream_target_health{upstream="mystery",target="10.0.0.1:80",address="10.0.0.1:80",state="healthy",subsystem="http"} 1
`)
	for pass := range 2 {
		out, stats := rewriteAll(rw, page)
		if stats.Kept != 4 || stats.Dropped[DropMultiBackend] != 2 || stats.Dropped[DropUnresolved] != 5 || stats.Unresolved != 2 {
			t.Errorf("pass %d: stats %+v, want 4 kept, 2 multi_backend, 5 unresolved lines of 2 distinct names\n%s", pass, stats, out)
		}
		fams := mustParseStrictly(t, out)
		var names []string
		for _, m := range fams["kong_http_requests_total"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kong_service" {
					names = append(names, l.GetValue())
				}
			}
		}
		slices.Sort(names)
		if want := []string{"httproute.kong.both.0", "httproute.kong.command.0", "httproute.kong.svc.kong.command.80.1"}; !slices.Equal(names, want) {
			t.Errorf("pass %d: kept Kong services %v, want %v", pass, names, want)
		}
		if n := len(fams["kong_upstream_target_health"].GetMetric()); n != 1 {
			t.Errorf("pass %d: %d upstream health series kept, want the HTTPRoute upstream's 1", pass, n)
		}
	}
	slices.Sort(reported)
	// mystery once as a service name and once as an upstream name.
	if want := []string{"httproute.kong.lost.0", "mystery", "mystery"}; !slices.Equal(reported, want) {
		t.Errorf("OnUnresolved got %q over two pages, want each unresolved name once per key kind: %q", reported, want)
	}
}

// TestResolveAndSeriesKey: what -check-config prints comes from the same
// resolution as a scrape's.
func TestResolveAndSeriesKey(t *testing.T) {
	rw := New(Selection{Services: map[Service]Metrics{command: Latency}, MultiBackend: map[string]struct{}{"httproute.kong.split.0": {}}})
	keys := []struct {
		line     string
		name     string
		upstream bool
		ok       bool
	}{
		{`kong_upstream_latency_ms_bucket{service="httproute.kong.svc.kong.command.80.1",route="r",workspace="default",le="25"} 1`, "httproute.kong.svc.kong.command.80.1", false, true},
		{`kong_upstream_target_health{upstream="command.kong.80.svc",target="t",address="a",state="healthy",subsystem="http"} 1`, "command.kong.80.svc", true, true},
		{`kong_http_requests_total{code="200",service="a\"b"} 1`, `a"b`, false, true},
		{`kong_nginx_connections_total{node_id="n",subsystem="http",state="active"} 1`, "", false, false},
		{`kong_http_requests_total 1`, "", false, false},
		{`kong_http_requests_total{code="200"} 1`, "", false, false},
	}
	for _, k := range keys {
		name, upstream, ok := SeriesKey([]byte(k.line))
		if name != k.name || upstream != k.upstream || ok != k.ok {
			t.Errorf("SeriesKey(%s) = %q, %v, %v; want %q, %v, %v", k.line, name, upstream, ok, k.name, k.upstream, k.ok)
		}
	}
	resolutions := []struct {
		name     string
		upstream bool
		svc      Service
		kept     Metrics
		drop     DropReason
	}{
		{"httproute.kong.svc.kong.command.80.1", false, command, Latency, 0},
		{"httproute.kong.svc.kong.command.80.1", true, command, Latency, 0},
		{"default.billing.80", false, billing, 0, 0},
		{"httproute.kong.split.0", false, Service{}, 0, DropMultiBackend},
		{"httproute.kong.other.0", false, Service{}, 0, DropUnresolved},
	}
	for _, r := range resolutions {
		svc, kept, drop, ok := rw.Resolve(r.name, r.upstream)
		if svc != r.svc || kept != r.kept || drop != r.drop || ok != (r.svc != Service{}) {
			t.Errorf("Resolve(%q, %v) = %v, %v, %v, %v", r.name, r.upstream, svc, kept, drop, ok)
		}
	}
}

// TestUnresolvedAllocations: counting a page's distinct unresolved names
// allocates no more for a thousand names than for one, once a released
// page of the same Rewriter has left its set behind.
func TestUnresolvedAllocations(t *testing.T) {
	rw := New(Selection{Services: map[Service]Metrics{command: StatusCode}})
	page := func(names int) []byte {
		var b []byte
		for i := range names {
			b = fmt.Appendf(b, "kong_http_requests_total{service=\"httproute.kong.lost-%d.0\",code=\"200\"} 1\n", i)
		}
		return b
	}
	allocs := func(names int) float64 {
		pg := page(names)
		if _, stats := rewriteAll(rw, pg); stats.Unresolved != names {
			t.Fatalf("%d names: %d unresolved, want %d", names, stats.Unresolved, names)
		}
		return testing.AllocsPerRun(20, func() { rewriteAll(rw, pg) })
	}
	one, thousand := allocs(1), allocs(1000)
	if thousand > one+1 {
		t.Errorf("a page of 1,000 unresolved names makes %.1f allocations, one of 1 name %.1f: the set of names is made anew each page", thousand, one)
	}
}

package relabel

import (
	"bytes"
	"strings"
	"testing"
)

// otherAdditions is a list of added labels unlike addedLabels: a Rewriter
// built from it must add these labels, in this order, on every path, and
// treat these names (not the default ones) as reserved.
var otherAdditions = newAdditions([]addedLabel{
	{"cluster", func(Service) string { return "c1" }},
	{"svc", func(s Service) string { return s.Namespace + "/" + s.Name }},
	{"note", func(Service) string { return `say "hi"` }},
})

const (
	defaultAdded = `,kubernetes_namespace="kong",kubernetes_name="command",kubernetes_kind="Service",exported_namespace="kong",exported_service="command"`
	otherAdded   = `,cluster="c1",svc="kong/command",note="say \"hi\""`
)

// TestAddedLabelsFromOneList checks that both paths write the labels of the
// one list a Rewriter is built from: the same page, rewritten by a Rewriter
// of addedLabels and one of otherAdditions, differs only in the added
// labels, on the fast path (Kong's shape, the next bucket of a run, again on
// a second page) and on the slow path (escaped and non-ASCII values) alike.
func TestAddedLabelsFromOneList(t *testing.T) {
	const page = `kong_http_requests_total{service="kong.command.80",route="r",code="200",source="service",workspace="default",consumer=""} 5
kong_upstream_latency_ms_bucket{service="kong.command.80",route="r",workspace="default",le="1"} 1
kong_upstream_latency_ms_bucket{service="kong.command.80",route="r",workspace="default",le="2"} 2
kong_upstream_latency_ms_bucket{service="kong.command.80",route="r",workspace="default",le="+Inf"} 3
kong_upstream_latency_ms_count{service="kong.command.80",route="r",workspace="default"} 3
kong_upstream_latency_ms_sum{service="kong.command.80",route="r",workspace="default"} 10
kong_http_requests_total{service="kong.command.80",route="r\"q",code="200"} 1
kong_http_requests_total{service="kong.command.80",route="é",code="200"} 1
kong_kong_latency_ms_bucket{route="r",service="kong.command.80",le="1"} 1
`
	sel := Selection{Services: map[Service]Metrics{command: Latency | StatusCode}}
	def, other := New(sel), newRewriter(sel, otherAdditions)
	for pass := range 2 { // the second pass with the targets the first resolved
		wantOut, wantStats := rewriteAll(def, []byte(page))
		gotOut, gotStats := rewriteAll(other, []byte(page))
		if wantStats.Kept != 9 || gotStats != wantStats {
			t.Fatalf("pass %d: got %+v, want %+v, with 9 kept", pass, gotStats, wantStats)
		}
		if n := bytes.Count(wantOut, []byte(defaultAdded)); n != wantStats.Kept {
			t.Fatalf("pass %d: the default labels are in %d lines, want %d:\n%s", pass, n, wantStats.Kept, wantOut)
		}
		if want := strings.ReplaceAll(string(wantOut), defaultAdded, otherAdded); string(gotOut) != want {
			t.Errorf("pass %d: got\n%s\nwant\n%s", pass, gotOut, want)
		}
	}
}

// TestReservedFromOneList checks that both paths drop a line that already
// carries a label the Rewriter adds, by the names of the list it is built
// from: a name of that list is malformed, in Kong's shape (the fast path)
// and with an escaped value (the slow path), while a name only the other
// list adds is a label like any other.
func TestReservedFromOneList(t *testing.T) {
	sel := Selection{Services: map[Service]Metrics{command: StatusCode}}
	f := func(added *additions, line string, want DropReason, kept bool) {
		t.Helper()
		out, stats := rewriteAll(newRewriter(sel, added), []byte(line+"\n"))
		if kept {
			if stats.Kept != 1 || len(out) == 0 {
				t.Errorf("%q: got %+v, want it kept", line, stats)
			}
			return
		}
		if stats.Kept != 0 || stats.Dropped[want] != 1 {
			t.Errorf("%q: got %+v and %q, want it dropped as %s", line, stats, out, want)
		}
	}
	const (
		fast = `kong_http_requests_total{service="kong.command.80",route="r",%s="x",code="200"} 1`
		slow = `kong_http_requests_total{service="kong.command.80",route="r\\q",%s="x",code="200"} 1`
	)
	for _, shape := range []string{fast, slow} {
		line := func(name string) string { return strings.Replace(shape, "%s", name, 1) }
		for _, name := range []string{"cluster", "svc", "note", RenamedServiceLabel} {
			f(otherAdditions, line(name), DropMalformed, false)
			f(defaultAdditions, line(name), DropMalformed, name != RenamedServiceLabel)
		}
		for _, name := range AddedLabels {
			f(defaultAdditions, line(name), DropMalformed, false)
			f(otherAdditions, line(name), 0, true)
		}
	}
}

// TestAddedLabelNames checks AddedLabels against the list it comes from.
func TestAddedLabelNames(t *testing.T) {
	if len(defaultAdditions.labels) != len(AddedLabels) {
		t.Fatalf("defaultAdditions has %d labels, AddedLabels %d", len(defaultAdditions.labels), len(AddedLabels))
	}
	for i, l := range defaultAdditions.labels {
		if l.name != AddedLabels[i] || !defaultAdditions.reserved.has([]byte(l.name)) {
			t.Errorf("label %d: %q, AddedLabels has %q", i, l.name, AddedLabels[i])
		}
	}
}

// TestNameSet checks the set's length filter against plain membership.
func TestNameSet(t *testing.T) {
	s := newNameSet([]string{"a", "kong_service", "exported_service"})
	for name, want := range map[string]bool{
		"a": true, "kong_service": true, "exported_service": true,
		"": false, "b": false, "kong_servicf": false, "exported_servicex": false,
		strings.Repeat("a", 64): false, strings.Repeat("a", 70): false,
	} {
		if got := s.has([]byte(name)); got != want {
			t.Errorf("has(%q) = %v, want %v", name, got, want)
		}
	}
}
